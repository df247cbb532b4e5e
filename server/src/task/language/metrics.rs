//! The metric families of text generation, per model.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::events::FinishReason;
use crate::metrics::ModelMetrics;

/// Per-model generation metrics, labels bound.
pub struct GenerationMetrics {
    pub tokens: Counter,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub queue_duration: Histogram,
    pub prefill_duration: Histogram,
    pub active_sequences: Gauge,
    /// The most sequences a step may hold now (its step target's choice, or the setting).
    pub max_active_sequences: Gauge,
    pub canceled: Counter,
    pub failed: Counter,
    /// Decoding steps also count as batches of the model (throughput and energy share).
    pub model: Arc<ModelMetrics>,
}

impl GenerationMetrics {
    /// Register the generation families under `model`'s labels.
    pub fn new(model: &Arc<ModelMetrics>) -> Self {
        let scope = model.scope();
        Self {
            tokens: scope.counter("kiln_generated_tokens_total", "Tokens generated"),
            time_to_first_token: scope.histogram(
                "kiln_time_to_first_token_seconds",
                "Time from a generation's arrival to its first token",
            ),
            inter_token_latency: scope.histogram(
                "kiln_inter_token_latency_seconds",
                "Time between two tokens of one generation",
            ),
            queue_duration: scope.histogram(
                "kiln_generation_queue_duration_seconds",
                "Time a generation waited before joining the decode batch",
            ),
            prefill_duration: scope.histogram(
                "kiln_generation_prefill_duration_seconds",
                "Time to run a prompt through the model",
            ),
            active_sequences: scope.gauge(
                "kiln_generation_active_sequences",
                "Sequences in the running decode batch",
            ),
            max_active_sequences: scope.gauge(
                "kiln_generation_max_active_sequences",
                "Most sequences a decode step may hold now",
            ),
            canceled: scope.counter(
                "kiln_generation_canceled_total",
                "Generations stopped because their caller went away",
            ),
            failed: scope.counter(
                "kiln_generation_failed_total",
                "Generations ended by a model error",
            ),
            model: model.clone(),
        }
    }

    pub(super) fn step(&self, sequences: usize, compute: Duration) {
        self.model.record_batch(sequences, compute);
        self.model.record_tokens(sequences as u64);
    }

    pub(super) fn finished(&self, reason: FinishReason) {
        self.model
            .scope()
            .with_labels(&[("reason", reason.label())])
            .counter(
                "kiln_generation_finished_total",
                "Generations completed, by finish reason",
            )
            .increment(1);
    }
}
