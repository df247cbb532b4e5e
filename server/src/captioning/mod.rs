//! Image captioning as a service: the per-model loop that batches the encoder over
//! concurrent requests and their decoder steps together ([`scheduler`]), and the metrics it
//! records per stage.

pub mod scheduler;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Histogram, IntGauge};

pub use scheduler::{CaptionPolicy, CaptionScheduler};

use crate::batching::BatchObserver;
use crate::metrics::ModelMetrics;

/// Per-model captioning metrics, labels bound.
pub struct CaptionMetrics {
    /// Encoder batches count as the model's batches (images are its items); decoder steps
    /// add their compute time, so energy is shared out by both stages.
    pub model: Arc<ModelMetrics>,
    pub active_hypotheses: IntGauge,
    pub encoder_duration: Histogram,
    pub encoder_batch_size: Histogram,
    pub decoder_duration: Histogram,
    pub decoder_batch_size: Histogram,
}

impl CaptionMetrics {
    fn encoded(&self, images: usize, compute: Duration) {
        self.model.executed(images, compute);
        self.encoder_duration.observe(compute.as_secs_f64());
        self.encoder_batch_size.observe(images as f64);
    }

    fn decoded(&self, hypotheses: usize, compute: Duration) {
        self.model.record_compute(compute);
        self.decoder_duration.observe(compute.as_secs_f64());
        self.decoder_batch_size.observe(hypotheses as f64);
    }
}
