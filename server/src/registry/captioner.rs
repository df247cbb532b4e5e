//! A captioner behind its scheduler: requests' images are encoded in shared batches and
//! their captions decoded in shared steps.

use kiln_zoo::captioning::captioner::{Caption, CaptionOptions};
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
        let options = CaptionOptions {
            beam_size: beam_size.unwrap_or(defaults.default_beam_size),
            max_tokens: max_tokens
                .unwrap_or(defaults.default_max_tokens.min(self.max_tokens_limit)),
        };
        options
            .check(self.max_tokens_limit)
            .map_err(|e| KilnError::bad_input(e.to_string()))?;
        Ok(options)
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
