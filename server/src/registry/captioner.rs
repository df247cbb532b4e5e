//! A captioner behind its scheduler: requests' images are encoded in shared batches and
//! their captions decoded in shared steps.

use kiln_zoo::captioning::captioner::{Caption, CaptionOptions, MAX_BEAM_SIZE};
use kiln_zoo::image_input::ImageSpec;
use tokio::time::Instant;

use crate::batching::InferError;
use crate::captioning::CaptionScheduler;
use crate::error::KilnError;
use crate::repository::CaptionerModelConfig;

pub struct CaptionerRunner {
    pub config: CaptionerModelConfig,
    /// Most words a caption can have with this decoder.
    pub max_tokens_limit: usize,
    pub(super) scheduler: CaptionScheduler,
}

impl CaptionerRunner {
    pub fn input_spec(&self) -> &ImageSpec {
        &self.config.input
    }

    /// A request's search options: its own, else the model's defaults, within the limits.
    pub fn options(
        &self,
        beam_size: Option<usize>,
        max_tokens: Option<usize>,
    ) -> Result<CaptionOptions, KilnError> {
        let defaults = &self.config.decoding;
        let beam_size = beam_size.unwrap_or(defaults.default_beam_size);
        let max_tokens =
            max_tokens.unwrap_or(defaults.default_max_tokens.min(self.max_tokens_limit));
        if !(1..=MAX_BEAM_SIZE).contains(&beam_size) {
            return Err(KilnError::bad_input(format!(
                "beam_size must be between 1 and {MAX_BEAM_SIZE}, not {beam_size}"
            )));
        }
        if !(1..=self.max_tokens_limit).contains(&max_tokens) {
            return Err(KilnError::bad_input(format!(
                "max_tokens must be between 1 and {}, not {max_tokens}",
                self.max_tokens_limit
            )));
        }
        Ok(CaptionOptions {
            beam_size,
            max_tokens,
        })
    }

    /// Caption one preprocessed image. A request still waiting at `deadline` is dropped
    /// before it is encoded.
    pub async fn caption(
        &self,
        image: Vec<f32>,
        options: CaptionOptions,
        deadline: Option<Instant>,
    ) -> Result<Caption, InferError> {
        self.scheduler.caption(image, options, deadline).await
    }
}
