//! A captioner's `model.toml`: the network, how images become its input, and the limits and
//! scheduling of caption search.

use std::path::PathBuf;

use kiln_zoo::BackendKind;
use kiln_zoo::captioning::captioner::{CaptionOptions, CaptionerArchitecture, MAX_BEAM_SIZE};
use kiln_zoo::image_input::ImageSpec;
use serde::{Deserialize, Serialize};

use crate::batching::StepTarget;
use crate::task::{ConfigError, default_version};

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
    /// While captions are being decoded, waiting images are encoded only once this many
    /// have gathered (or `max_encoder_wait_ms` has passed): the encoder costs about a third
    /// more per image in batches of four than of eight or more.
    pub min_encoder_batch_size: usize,
    /// Longest an image waits for `min_encoder_batch_size` to gather (ms).
    pub max_encoder_wait_ms: f64,
    /// Hypotheses decoded together in one step (a request holds up to its `beam_size`).
    pub max_active_hypotheses: usize,
    /// Requests waiting or running beyond which new ones are refused (HTTP 429).
    pub max_queue_size: usize,
    /// Let new requests join the running step between steps (iteration-level batching);
    /// when false a batch of requests runs until all of them finish before the next starts.
    pub continuous_batching: bool,
    /// A goal for the time between two words of a running caption (p99, ms): the loop lets
    /// at most as many hypotheses share a step as keep it, up to `max_active_hypotheses`
    /// (a request always runs when nothing else does); the others wait in the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_step_p99_ms: Option<f64>,
}

impl CaptionDecodingConfig {
    /// The step target, when one is set (validated at load).
    pub fn step_target(&self) -> Option<StepTarget> {
        self.target_step_p99_ms.and_then(StepTarget::from_ms)
    }
}

impl Default for CaptionDecodingConfig {
    fn default() -> Self {
        Self {
            default_beam_size: 1,
            default_max_tokens: CaptionOptions::default().max_tokens,
            max_encoder_batch_size: 32,
            min_encoder_batch_size: 8,
            max_encoder_wait_ms: 5.0,
            max_active_hypotheses: 128,
            max_queue_size: 1_024,
            continuous_batching: true,
            target_step_p99_ms: None,
        }
    }
}

impl CaptionerModelConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.input.validate().map_err(ConfigError::invalid)?;
        let side = kiln_zoo::models::captioner::IMAGE_SIDE;
        if (self.input.channels, self.input.height, self.input.width) != (3, side, side) {
            return Err(ConfigError::Invalid(format!(
                "a captioner takes 3×{side}×{side} input, not {}×{}×{}",
                self.input.channels, self.input.height, self.input.width
            )));
        }
        let d = &self.decoding;
        if d.max_encoder_batch_size == 0 || d.max_queue_size == 0 || d.default_max_tokens == 0 {
            return Err(ConfigError::invalid(
                "max_encoder_batch_size, max_queue_size and default_max_tokens must be positive",
            ));
        }
        if d.target_step_p99_ms
            .is_some_and(|ms| StepTarget::from_ms(ms).is_none())
        {
            return Err(ConfigError::invalid(
                "target_step_p99_ms must be a positive number of milliseconds, at most an hour",
            ));
        }
        if d.min_encoder_batch_size == 0 || d.min_encoder_batch_size > d.max_encoder_batch_size {
            return Err(ConfigError::invalid(
                "min_encoder_batch_size must be within 1..=max_encoder_batch_size",
            ));
        }
        if !(0.0..=3_600_000.0).contains(&d.max_encoder_wait_ms) {
            return Err(ConfigError::invalid(
                "max_encoder_wait_ms must be between 0 and an hour",
            ));
        }
        if !(1..=MAX_BEAM_SIZE).contains(&d.default_beam_size) {
            return Err(ConfigError::Invalid(format!(
                "default_beam_size must be within 1..={MAX_BEAM_SIZE}"
            )));
        }
        if d.max_active_hypotheses < MAX_BEAM_SIZE {
            return Err(ConfigError::Invalid(format!(
                "max_active_hypotheses must be at least {MAX_BEAM_SIZE}, the largest beam"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::repository::ModelConfig;
    use kiln_zoo::captioning::captioner::CaptionerArchitecture;

    fn encoder_norm(config: &ModelConfig) -> Option<bool> {
        let ModelConfig::Caption(caption) = config else {
            panic!("a captioner's config: {config:?}");
        };
        caption.architecture.config().encoder_norm
    }

    /// Folders written before the encoder could be batch-normed still read, as without;
    /// `kiln train --encoder-norm` writes it, and it reads back.
    #[test]
    fn the_encoder_norm_is_optional_and_written_only_when_set() {
        let bundled = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/captioner-lstm/model.toml"
        );
        let text = std::fs::read_to_string(bundled).unwrap();
        let bundled: ModelConfig = toml::from_str(&text).unwrap();
        assert_eq!(encoder_norm(&bundled), Some(true));
        // The same folder as written before: no `encoder_norm` line.
        let older: String = text
            .lines()
            .filter(|line| !line.starts_with("encoder_norm"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_ne!(older, text);
        let mut config: ModelConfig = toml::from_str(&older).unwrap();
        assert_eq!(encoder_norm(&config), None);
        let written = toml::to_string_pretty(&config).unwrap();
        assert!(!written.contains("encoder_norm"), "{written}");

        if let ModelConfig::Caption(caption) = &mut config
            && let CaptionerArchitecture::Lstm(c) = &mut caption.architecture
        {
            c.encoder_norm = Some(true);
        }
        let written = toml::to_string_pretty(&config).unwrap();
        assert!(written.contains("encoder_norm = true"), "{written}");
        let read: ModelConfig = toml::from_str(&written).unwrap();
        assert_eq!(encoder_norm(&read), Some(true));
    }

    /// Grid layers are read from `encoder_grid_layers`; folders without the line have none.
    #[test]
    fn the_encoder_grid_layers_are_optional() {
        let grid_layers = |text: &str| {
            let ModelConfig::Caption(caption) = toml::from_str(text).unwrap() else {
                panic!("a captioner's config");
            };
            caption.architecture.config().encoder_shape().grid_layers
        };
        let bundled = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/captioner-transformer/model.toml"
        ))
        .unwrap();
        let without: String = bundled
            .lines()
            .filter(|line| !line.starts_with("encoder_grid_layers"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(grid_layers(&without), 0);
        let with = without.replace(
            "encoder_norm = true",
            "encoder_norm = true\nencoder_grid_layers = 2",
        );
        assert_ne!(with, without);
        assert_eq!(grid_layers(&with), 2);
    }
}
