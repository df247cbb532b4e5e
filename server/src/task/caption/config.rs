//! A captioner's `model.toml`: the network, how images become its input, and the limits and
//! scheduling of caption search.

use std::path::PathBuf;

use kiln_zoo::BackendKind;
use kiln_zoo::captioning::captioner::{CaptionOptions, CaptionerArchitecture, MAX_BEAM_SIZE};
use kiln_zoo::image_input::ImageSpec;
use serde::{Deserialize, Serialize};

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
