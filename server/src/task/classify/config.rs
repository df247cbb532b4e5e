//! A classifier's `model.toml`.

use std::path::{Path, PathBuf};

use kiln_zoo::BackendKind;
use kiln_zoo::Device;
use kiln_zoo::classifier::{ClassifierArchitecture, ImageClassifier};
use kiln_zoo::image_input::ImageSpec;
use kiln_zoo::precision::Precision;
use kiln_zoo::weights::KeyRemap;
use serde::{Deserialize, Serialize};

use crate::batching::BatchingConfig;
use crate::task::{ConfigError, LoadError, default_instances, default_version};

/// An image classifier's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Version reported by the API.
    #[serde(default = "default_version")]
    pub version: String,
    /// Weights file, relative to the model folder: Burn burnpack (`.bpk`), a PyTorch
    /// checkpoint (`.pt`, `.pth`, `.bin`) or safetensors (`.safetensors`).
    pub weights: PathBuf,
    /// Renamings of checkpoint keys, `[regex, replacement]`, applied before the
    /// architecture's own (e.g. `["^module\\.", ""]` for a DataParallel checkpoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_remap: Vec<KeyRemap>,
    /// Class names, one per line, relative to the model folder.
    pub labels: PathBuf,
    /// Executor threads, each with its own copy of the model.
    #[serde(default = "default_instances")]
    pub instances: usize,
    /// Overrides the server's `--backend` for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    /// Overrides the server's `--device` for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<usize>,
    /// Float type the network computes in: f32, or f16/bf16 where the device computes in
    /// them (`kiln eval` reports top-1 agreement with f32).
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: Precision,
    pub architecture: ClassifierArchitecture,
    pub input: ImageSpec,
    #[serde(default)]
    pub batching: BatchingConfig,
}

fn is_f32(precision: &Precision) -> bool {
    *precision == Precision::F32
}

impl ClassifierConfig {
    /// The network of the folder `dir` this config describes, its weights loaded onto
    /// `device`, in f32.
    pub fn load_classifier(
        &self,
        dir: &Path,
        device: &Device,
    ) -> Result<ImageClassifier, LoadError> {
        Ok(ImageClassifier::load(
            &self.architecture,
            &dir.join(&self.weights),
            &self.key_remap,
            self.input.shape(),
            device,
        )?)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.input.validate().map_err(ConfigError::invalid)?;
        self.architecture.validate().map_err(ConfigError::invalid)?;
        if self.input.channels != self.architecture.in_channels() {
            return Err(ConfigError::Invalid(format!(
                "input has {} channels but {} takes {}",
                self.input.channels,
                self.architecture.name(),
                self.architecture.in_channels()
            )));
        }
        if let Some((h, w)) = self.architecture.fixed_input_size()
            && (self.input.height, self.input.width) != (h, w)
        {
            return Err(ConfigError::Invalid(format!(
                "{} needs {h}×{w} input, not {}×{}",
                self.architecture.name(),
                self.input.height,
                self.input.width
            )));
        }
        Ok(self.batching.validate(self.instances)?)
    }
}

/// Read a labels file: one class name per line, blank lines ignored at the end.
pub fn read_labels(path: &Path) -> Result<Vec<String>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim_end)
        .map(String::from)
        .filter(|l| !l.is_empty())
        .collect())
}
