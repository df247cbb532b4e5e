//! Network definitions. Each is a Burn `Module` with a `Config` that builds it.

pub mod alexnet;
pub mod blocks;
pub mod captioner;
pub mod cpu;
pub mod efficientnet_lite;
pub mod elman;
pub mod gelu;
pub mod googlenet;
pub mod inception_v3;
pub mod lenet;
pub mod recurrent_lm;
pub mod resnet;
pub mod transformer_lm;
pub mod vgg;
