//! The `kiln` sub-commands other than `serve`.

pub mod eval;
pub mod export;
pub mod health;
pub mod language_presets;
pub mod train;
#[cfg(feature = "train")]
mod train_captioner;
#[cfg(feature = "train")]
mod train_language;
