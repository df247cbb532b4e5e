//! The model repository: a folder with one sub-folder per model, each holding a
//! `model.toml`, its weights and its labels. Scanning it yields each model's config or the
//! reason that folder cannot be used.

pub mod config;

use std::path::{Path, PathBuf};

pub use crate::batching::BatchingConfig;
pub use crate::task::caption::{CaptionDecodingConfig, CaptionerModelConfig};
pub use crate::task::classify::{ClassifierConfig, read_labels};
pub use crate::task::language::{GenerationConfig, LanguageModelConfig};
pub use config::{CONFIG_FILE, ConfigFileError, ModelConfig, Task};

/// A model folder found in the repository.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// The folder name, which is the model's name in the API.
    pub name: String,
    pub dir: PathBuf,
    pub config: Result<ModelConfig, ConfigFileError>,
}

/// The repository folder cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read model repository {path}: {source}")]
pub struct ScanError {
    path: PathBuf,
    source: std::io::Error,
}

/// The folder that `kiln serve` loads models from.
#[derive(Debug, Clone)]
pub struct ModelRepository {
    root: PathBuf,
}

impl ModelRepository {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every sub-folder with a `model.toml`, sorted by name.
    pub fn scan(&self) -> Result<Vec<ModelEntry>, ScanError> {
        let dir = std::fs::read_dir(&self.root).map_err(|source| ScanError {
            path: self.root.clone(),
            source,
        })?;
        let mut entries: Vec<ModelEntry> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join(CONFIG_FILE).is_file())
            .map(|dir| ModelEntry {
                name: dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                config: ModelConfig::read(&dir),
                dir,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}
