//! Network definitions. Each is a Burn `Module` with a `Config` that builds it.

pub mod elman;
pub mod lenet;
pub mod recurrent_lm;
pub mod transformer_lm;
