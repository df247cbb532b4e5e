//! The `model.toml` file that describes one model folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_zoo::BackendKind;
use kiln_zoo::classifier::ClassifierArchitecture;
use kiln_zoo::image_input::ImageSpec;
use serde::{Deserialize, Serialize};

/// Name of the config file inside each model folder.
pub const CONFIG_FILE: &str = "model.toml";

/// What a model does for its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Image → top-k labels.
    Classify,
}

/// One model folder's `model.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub task: Task,
    /// Version reported by the API.
    #[serde(default = "default_version")]
    pub version: String,
    /// Weights file, relative to the model folder (Burn burnpack format).
    pub weights: PathBuf,
    /// Class names, one per line, relative to the model folder.
    pub labels: PathBuf,
    /// Executor threads, each with its own copy of the model.
    #[serde(default = "default_instances")]
    pub instances: usize,
    /// Overrides the server's `--backend` for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    pub architecture: ClassifierArchitecture,
    pub input: ImageSpec,
    #[serde(default)]
    pub batching: BatchingConfig,
}

/// How requests are grouped into batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Largest batch handed to the model.
    pub max_batch_size: usize,
    /// Longest a request waits for others to join its batch, counted from its arrival.
    pub max_queue_delay_us: u64,
    /// Sizes at which a batch is dispatched at once, without waiting for the delay.
    #[serde(default)]
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests queued or running beyond which new ones are refused (HTTP 429).
    pub max_queue_size: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_queue_delay_us: 2_000,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1_024,
        }
    }
}

impl BatchingConfig {
    pub fn max_queue_delay(&self) -> Duration {
        Duration::from_micros(self.max_queue_delay_us)
    }
}

fn default_version() -> String {
    "1".to_string()
}

fn default_instances() -> usize {
    1
}

impl ModelConfig {
    /// Read and check `dir/model.toml`.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: ModelConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Write the config as `dir/model.toml`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let text = toml::to_string_pretty(self).map_err(|e| e.to_string())?;
        let path = dir.join(CONFIG_FILE);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn validate(&self) -> Result<(), String> {
        self.input.validate().map_err(|e| e.to_string())?;
        if self.input.channels != self.architecture.in_channels() {
            return Err(format!(
                "input has {} channels but {} takes {}",
                self.input.channels,
                self.architecture.name(),
                self.architecture.in_channels()
            ));
        }
        if let Some((h, w)) = self.architecture.fixed_input_size()
            && (self.input.height, self.input.width) != (h, w)
        {
            return Err(format!(
                "{} needs {h}×{w} input, not {}×{}",
                self.architecture.name(),
                self.input.height,
                self.input.width
            ));
        }
        let b = &self.batching;
        if b.max_batch_size == 0 || b.max_queue_size == 0 || self.instances == 0 {
            return Err("max_batch_size, max_queue_size and instances must be positive".into());
        }
        if let Some(p) = b
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > b.max_batch_size)
        {
            return Err(format!(
                "preferred batch size {p} is not within 1..=max_batch_size"
            ));
        }
        Ok(())
    }
}

/// Read a labels file: one class name per line, blank lines ignored at the end.
pub fn read_labels(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read labels {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim_end)
        .map(String::from)
        .filter(|l| !l.is_empty())
        .collect())
}
