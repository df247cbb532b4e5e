//! The `model.toml` file that describes one model folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_zoo::BackendKind;
use kiln_zoo::Device;
use kiln_zoo::captioning::captioner::{CaptionOptions, CaptionerArchitecture, MAX_BEAM_SIZE};
use kiln_zoo::classifier::{ClassifierArchitecture, ImageClassifier};
use kiln_zoo::image_input::ImageSpec;
use kiln_zoo::language_model::LanguageModelArchitecture;
use kiln_zoo::precision::Precision;
use kiln_zoo::weights::KeyRemap;
use serde::{Deserialize, Serialize};

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

    /// Lower the largest batch to `max` (a device memory limit), dropping preferred sizes
    /// above it.
    pub fn cap_max_batch_size(&mut self, max: usize) {
        self.max_batch_size = self.max_batch_size.min(max);
        let cap = self.max_batch_size;
        self.preferred_batch_sizes.retain(|&p| p <= cap);
    }
}

fn default_version() -> String {
    "1".to_string()
}

fn default_instances() -> usize {
    1
}

fn is_f32(precision: &Precision) -> bool {
    *precision == Precision::F32
}

/// A language model's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageModelConfig {
    #[serde(default = "default_version")]
    pub version: String,
    /// Weights file, relative to the model folder (Burn burnpack format).
    pub weights: PathBuf,
    /// Vocabulary, one token per line in id order, relative to the model folder.
    pub vocab: PathBuf,
    /// Language of the training text (an ISO 639-1 code), reported in metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The SWORD module the model was trained on, which `kiln eval` scores it against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<String>,
    /// Executor threads for next-word batches, each with its own copy of the model.
    #[serde(default = "default_instances")]
    pub instances: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<usize>,
    pub architecture: LanguageModelArchitecture,
    /// Batching of next-word requests.
    #[serde(default)]
    pub batching: BatchingConfig,
    #[serde(default)]
    pub generation: GenerationConfig,
}

/// Limits and scheduling of text generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationConfig {
    /// Longest prompt accepted, in tokens (HTTP 400 beyond).
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for (HTTP 400 beyond).
    pub max_new_tokens: usize,
    /// `max_tokens` of a request that sets none.
    pub default_max_tokens: usize,
    /// Sequences decoded together in one step.
    pub max_active_sequences: usize,
    /// Let new requests join the running batch between steps (iteration-level batching);
    /// when false a batch runs until all its sequences finish before the next one starts.
    pub continuous_batching: bool,
    /// Generations waiting or running beyond which new ones are refused (HTTP 429).
    pub max_queue_size: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_prompt_tokens: 256,
            max_new_tokens: 256,
            default_max_tokens: 32,
            max_active_sequences: 64,
            continuous_batching: true,
            max_queue_size: 1_024,
        }
    }
}

/// An image captioner's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionerModelConfig {
    #[serde(default = "default_version")]
    pub version: String,
    /// Weights file, relative to the model folder (Burn burnpack format).
    pub weights: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<usize>,
    pub architecture: CaptionerArchitecture,
    /// How request images become the 3×64×64 input.
    #[serde(default = "kiln_zoo::data::scenes::image_spec")]
    pub input: ImageSpec,
    #[serde(default)]
    pub decoding: CaptionDecodingConfig,
}

/// Limits and scheduling of caption search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptionDecodingConfig {
    /// Search width of a request that sets no `beam_size` (1 is greedy).
    pub default_beam_size: usize,
    /// Words at most in a caption of a request that sets no `max_tokens`.
    pub default_max_tokens: usize,
    /// Most images encoded in one batch.
    pub max_encoder_batch_size: usize,
    /// Hypotheses decoded together in one step (a request holds up to its `beam_size`).
    pub max_active_hypotheses: usize,
    /// Requests waiting or running beyond which new ones are refused (HTTP 429).
    pub max_queue_size: usize,
}

impl Default for CaptionDecodingConfig {
    fn default() -> Self {
        Self {
            default_beam_size: 1,
            default_max_tokens: CaptionOptions::default().max_tokens,
            max_encoder_batch_size: 32,
            max_active_hypotheses: 128,
            max_queue_size: 1_024,
        }
    }
}

impl CaptionerModelConfig {
    fn validate(&self) -> Result<(), String> {
        self.input.validate().map_err(|e| e.to_string())?;
        let side = kiln_zoo::models::captioner::IMAGE_SIDE;
        if (self.input.channels, self.input.height, self.input.width) != (3, side, side) {
            return Err(format!(
                "a captioner takes 3×{side}×{side} input, not {}×{}×{}",
                self.input.channels, self.input.height, self.input.width
            ));
        }
        let d = &self.decoding;
        if d.max_encoder_batch_size == 0 || d.max_queue_size == 0 || d.default_max_tokens == 0 {
            return Err(
                "max_encoder_batch_size, max_queue_size and default_max_tokens must be positive"
                    .into(),
            );
        }
        if !(1..=MAX_BEAM_SIZE).contains(&d.default_beam_size) {
            return Err(format!(
                "default_beam_size must be within 1..={MAX_BEAM_SIZE}"
            ));
        }
        if d.max_active_hypotheses < MAX_BEAM_SIZE {
            return Err(format!(
                "max_active_hypotheses must be at least {MAX_BEAM_SIZE}, the largest beam"
            ));
        }
        Ok(())
    }
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
        match self {
            ModelConfig::Classify(c) => c.validate(),
            ModelConfig::LanguageModel(c) => c.validate(),
            ModelConfig::Caption(c) => c.validate(),
        }
    }
}

impl BatchingConfig {
    fn validate(&self, instances: usize) -> Result<(), String> {
        if self.max_batch_size == 0 || self.max_queue_size == 0 || instances == 0 {
            return Err("max_batch_size, max_queue_size and instances must be positive".into());
        }
        if let Some(p) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch_size)
        {
            return Err(format!(
                "preferred batch size {p} is not within 1..=max_batch_size"
            ));
        }
        Ok(())
    }
}

impl LanguageModelConfig {
    fn validate(&self) -> Result<(), String> {
        self.architecture.validate()?;
        self.batching.validate(self.instances)?;
        let g = &self.generation;
        if g.max_prompt_tokens == 0 || g.max_active_sequences == 0 || g.max_queue_size == 0 {
            return Err(
                "max_prompt_tokens, max_active_sequences and max_queue_size must be positive"
                    .into(),
            );
        }
        if g.default_max_tokens == 0 || g.default_max_tokens > g.max_new_tokens {
            return Err("default_max_tokens must be within 1..=max_new_tokens".into());
        }
        Ok(())
    }
}

impl ClassifierConfig {
    /// The network of the folder `dir` this config describes, its weights loaded onto
    /// `device`, in f32.
    pub fn load_classifier(&self, dir: &Path, device: &Device) -> Result<ImageClassifier, String> {
        ImageClassifier::load(
            &self.architecture,
            &dir.join(&self.weights),
            &self.key_remap,
            self.input.shape(),
            device,
        )
        .map_err(|e| e.to_string())
    }

    fn validate(&self) -> Result<(), String> {
        self.input.validate().map_err(|e| e.to_string())?;
        self.architecture.validate().map_err(|e| e.to_string())?;
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
        self.batching.validate(self.instances)
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
