//! Training code. Compiled only with the `train` feature, which brings in autodiff and
//! optimisers; the serving path never needs them.

pub mod captioner;
pub mod encoder;
pub mod heap;
pub mod lenet;
pub mod lm;
