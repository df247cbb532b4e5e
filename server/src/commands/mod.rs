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

use std::path::PathBuf;

/// Why a sub-command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] crate::repository::ConfigFileError),
    #[error(transparent)]
    Load(#[from] crate::task::LoadError),
    #[error(transparent)]
    Model(#[from] kiln_zoo::ZooError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Probe(#[from] health::ProbeError),
    #[error("{0}")]
    Usage(String),
}

/// Create `path` and its parents, for a model folder to write into.
#[cfg(feature = "train")]
fn create_dir(path: &std::path::Path) -> Result<(), CommandError> {
    std::fs::create_dir_all(path).map_err(|source| CommandError::Write {
        path: path.to_path_buf(),
        source,
    })
}
