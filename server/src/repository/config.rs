//! The `model.toml` file that describes one model folder: its `task` key picks the task,
//! whose module owns the rest of the file's shape.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::task::ConfigError;
use crate::task::caption::CaptionerModelConfig;
use crate::task::classify::ClassifierConfig;
use crate::task::language::LanguageModelConfig;

/// Name of the config file inside each model folder.
pub const CONFIG_FILE: &str = "model.toml";

/// What a model does for its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Image → top-k labels.
    Classify,
    /// Text → next-word distribution and generated continuations.
    LanguageModel,
    /// Image → a sentence describing it.
    Caption,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Classify => "classify",
            Task::LanguageModel => "language-model",
            Task::Caption => "caption",
        }
    }
}

/// One model folder's `model.toml`; the `task` key says which kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
pub enum ModelConfig {
    Classify(ClassifierConfig),
    LanguageModel(LanguageModelConfig),
    Caption(CaptionerModelConfig),
}

/// A `model.toml` that cannot be read, parsed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

impl ModelConfig {
    /// Read and check `dir/model.toml`.
    pub fn read(dir: &Path) -> Result<Self, ConfigFileError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigFileError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let config: ModelConfig = toml::from_str(&text).map_err(|e| ConfigFileError::Parse {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        config
            .validate()
            .map_err(|source| ConfigFileError::Invalid { path, source })?;
        Ok(config)
    }

    /// Write the config as `dir/model.toml`.
    pub fn write(&self, dir: &Path) -> Result<(), ConfigFileError> {
        let path = dir.join(CONFIG_FILE);
        let write_error = |reason: String| ConfigFileError::Write {
            path: path.clone(),
            reason,
        };
        let text = toml::to_string_pretty(self).map_err(|e| write_error(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| write_error(e.to_string()))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match self {
            ModelConfig::Classify(c) => c.validate(),
            ModelConfig::LanguageModel(c) => c.validate(),
            ModelConfig::Caption(c) => c.validate(),
        }
    }
}
