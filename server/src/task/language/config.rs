//! A language model's `model.toml`: the network, its vocabulary, next-word batching and the
//! limits of generation.

use std::path::PathBuf;

use kiln_zoo::BackendKind;
use kiln_zoo::language_model::LanguageModelArchitecture;
use serde::{Deserialize, Serialize};

use crate::batching::{BatchingConfig, StepTarget};
use crate::task::{ConfigError, default_instances, default_version};

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
    /// Longest prompt accepted, in tokens (HTTP 422 beyond).
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for (HTTP 422 beyond).
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
    /// A goal for the time between two tokens of a running generation (p99, ms): the loop
    /// lets at most as many sequences share a step as keep it, up to
    /// `max_active_sequences`; the others wait in the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_step_p99_ms: Option<f64>,
}

impl GenerationConfig {
    /// The step target, when one is set (validated at load).
    pub fn step_target(&self) -> Option<StepTarget> {
        self.target_step_p99_ms.and_then(StepTarget::from_ms)
    }
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
            target_step_p99_ms: None,
        }
    }
}

impl LanguageModelConfig {
    /// Longest sequence the network takes, if it has a limit.
    pub fn context_length(&self) -> Option<usize> {
        self.architecture.context_length()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.architecture.validate().map_err(ConfigError::Invalid)?;
        self.batching.validate(self.instances)?;
        let g = &self.generation;
        if g.max_prompt_tokens == 0 || g.max_active_sequences == 0 || g.max_queue_size == 0 {
            return Err(ConfigError::invalid(
                "max_prompt_tokens, max_active_sequences and max_queue_size must be positive",
            ));
        }
        if g.target_step_p99_ms
            .is_some_and(|ms| StepTarget::from_ms(ms).is_none())
        {
            return Err(ConfigError::invalid(
                "target_step_p99_ms must be a positive number of milliseconds, at most an hour",
            ));
        }
        if g.default_max_tokens == 0 || g.default_max_tokens > g.max_new_tokens {
            return Err(ConfigError::invalid(
                "default_max_tokens must be within 1..=max_new_tokens",
            ));
        }
        Ok(())
    }
}
