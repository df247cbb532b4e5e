//! The `kiln` sub-commands other than `serve`.

pub mod eval;
pub mod train;
