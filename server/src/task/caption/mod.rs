//! Image captioning: an image in, a sentence describing it out. Entry point:
//! [`CaptionerRunner::caption`], for every protocol. Images are prepared here, whatever form
//! they arrived in, and captioned on the model's step loop, which batches the encoder over
//! concurrent requests and their decoder steps together.

mod config;
mod decoding;
mod load;
mod metrics;

use std::sync::Arc;

use kiln_zoo::captioning::captioner::{Caption, CaptionOptions};
use kiln_zoo::image_input::ImageSpec;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use self::metrics::CaptionMetrics;
pub use config::{CaptionDecodingConfig, CaptionerModelConfig};
pub use decoding::CaptionJob;
pub use load::load;

use super::image::{ImageInput, prepare_all};
use crate::batching::{InferError, StepLoop, StepTarget};
use crate::error::KilnError;
use crate::metrics::ModelMetrics;

/// Search options a request may set; the model's defaults fill the rest.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CaptionRequestOptions {
    pub beam_size: Option<usize>,
    pub max_tokens: Option<usize>,
}

/// A captioner behind its captioning loop.
pub struct CaptionerRunner {
    pub config: CaptionerModelConfig,
    /// Most words a caption can have with this decoder.
    pub max_tokens_limit: usize,
    decoding: StepLoop<CaptionJob>,
    metrics: Arc<ModelMetrics>,
}

impl CaptionerRunner {
    pub fn input_spec(&self) -> &ImageSpec {
        &self.config.input
    }

    pub fn metrics(&self) -> &Arc<ModelMetrics> {
        &self.metrics
    }

    /// The captioning loop's step target and the width it allows now, when it has one.
    pub fn step_target(&self) -> Option<(StepTarget, usize)> {
        self.decoding.step_target()
    }

    /// Caption every image with the same search options. A request still waiting at
    /// `deadline` is dropped before it is encoded.
    pub async fn caption(
        &self,
        images: Vec<ImageInput>,
        options: CaptionRequestOptions,
        deadline: Instant,
    ) -> Result<Vec<Caption>, KilnError> {
        let options = self.options(options)?;
        let inputs = prepare_all(self.input_spec(), images).await?;
        let answers = inputs
            .into_iter()
            .map(|image| {
                let (reply, answer) = oneshot::channel();
                let job = CaptionJob {
                    image,
                    options,
                    reply,
                };
                self.decoding.submit(job, Some(deadline))?;
                Ok(answer)
            })
            .collect::<Result<Vec<_>, InferError>>()?;
        let captions = futures_util::future::try_join_all(
            answers
                .into_iter()
                .map(|answer| async { answer.await.unwrap_or(Err(InferError::ShuttingDown)) }),
        )
        .await?;
        Ok(captions)
    }

    /// A request's search options: its own, else the model's defaults, within the limits.
    fn options(&self, request: CaptionRequestOptions) -> Result<CaptionOptions, KilnError> {
        let defaults = &self.config.decoding;
        let options = CaptionOptions {
            beam_size: request.beam_size.unwrap_or(defaults.default_beam_size),
            max_tokens: request
                .max_tokens
                .unwrap_or(defaults.default_max_tokens.min(self.max_tokens_limit)),
        };
        options
            .check(self.max_tokens_limit)
            .map_err(|e| KilnError::bad_input(e.to_string()))?;
        Ok(options)
    }
}
