//! The metric families of captioning, per model and stage.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Gauge, Histogram};

use crate::metrics::ModelMetrics;

/// Per-model captioning metrics, labels bound.
pub struct CaptionMetrics {
    /// Encoder batches count as the model's batches (images are its items); decoder steps
    /// add their compute time, so energy is shared out by both stages.
    pub model: Arc<ModelMetrics>,
    pub active_hypotheses: Gauge,
    /// The most hypotheses a step may hold now (its step target's choice, or the setting).
    pub max_active_hypotheses: Gauge,
    pub encoder_duration: Histogram,
    pub encoder_batch_size: Histogram,
    pub decoder_duration: Histogram,
    pub decoder_batch_size: Histogram,
}

impl CaptionMetrics {
    /// Register the captioning families under `model`'s labels, per stage.
    pub fn new(model: &Arc<ModelMetrics>) -> Self {
        let stage = |name| model.scope().with_labels(&[("stage", name)]);
        let duration = |name| {
            stage(name).histogram(
                "kiln_caption_stage_duration_seconds",
                "Compute time of one captioning batch, by stage (encoder, decoder step)",
            )
        };
        let batch_size = |name| {
            stage(name).histogram(
                "kiln_caption_stage_batch_size",
                "Images per encoder batch, hypotheses per decoder step",
            )
        };
        Self {
            active_hypotheses: model.scope().gauge(
                "kiln_caption_active_hypotheses",
                "Caption hypotheses in the running decoder batch",
            ),
            max_active_hypotheses: model.scope().gauge(
                "kiln_caption_max_active_hypotheses",
                "Most caption hypotheses a decoder step may hold now",
            ),
            encoder_duration: duration("encoder"),
            encoder_batch_size: batch_size("encoder"),
            decoder_duration: duration("decoder"),
            decoder_batch_size: batch_size("decoder"),
            model: model.clone(),
        }
    }

    pub(super) fn encoded(&self, images: usize, compute: Duration) {
        self.model.record_batch(images, compute);
        self.encoder_duration.record(compute.as_secs_f64());
        self.encoder_batch_size.record(images as f64);
    }

    pub(super) fn decoded(&self, hypotheses: usize, compute: Duration) {
        self.model.record_compute(compute);
        self.decoder_duration.record(compute.as_secs_f64());
        self.decoder_batch_size.record(hypotheses as f64);
    }
}
