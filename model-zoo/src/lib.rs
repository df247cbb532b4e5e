//! Kiln's model zoo: the networks Kiln serves and everything that turns user data into
//! their inputs and their outputs into answers.
//!
//! Data enters as encoded images or raw pixels ([`image_input`]) and dataset files
//! ([`data`]); it leaves as class probabilities from an [`classifier::ImageClassifier`].
//! Networks live in [`models`]; weights load from Burn's burnpack files, PyTorch checkpoints
//! or safetensors ([`weights`]); the backend (device) is chosen at run time through
//! [`backend::BackendKind`]. Training code sits behind
//! the `train` feature so inference builds carry no autodiff.

pub mod backend;
pub mod captioning;
pub mod classifier;
pub mod data;
pub mod decode_batch;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod image_input;
pub mod language_model;
pub mod models;
pub mod precision;
pub mod text;
#[cfg(feature = "train")]
pub mod train;
pub mod weights;

pub use backend::BackendKind;
pub use burn::prelude::Device;
pub use error::{Result, ZooError};
