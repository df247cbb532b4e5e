//! Text generation: sampling ([`sampling`]) and the per-model continuous-batching loop
//! ([`scheduler`]), with the events a caller receives and the metrics the loop records.

pub mod sampling;
pub mod scheduler;

use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

pub use sampling::SamplingParams;
pub use scheduler::{GenerationJob, Generator, SchedulerPolicy};

use crate::batching::BatchObserver;
use crate::metrics::ModelMetrics;

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// `max_tokens` generated, or the model's context is full.
    Length,
    /// The model ended the text (`<eos>`).
    EndOfText,
    /// A stop string would have appeared.
    StopSequence,
}

impl FinishReason {
    /// The name clients see (OpenAI's: "length" or "stop").
    pub fn label(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EndOfText | FinishReason::StopSequence => "stop",
        }
    }
}

/// What the loop sends a caller, in order: tokens, then one `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    Token {
        id: u32,
        text: String,
        logprob: f32,
    },
    Finished {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        text: String,
    },
    Failed(String),
}

/// Per-model generation metrics, labels bound.
pub struct GenerationMetrics {
    pub tokens: IntCounter,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub queue_duration: Histogram,
    pub prefill_duration: Histogram,
    pub active_sequences: IntGauge,
    pub canceled: IntCounter,
    pub failed: IntCounter,
    pub finished: IntCounterVec,
    pub labels: [String; 3],
    /// Decoding steps also count as batches of the model (throughput and energy share).
    pub model: std::sync::Arc<ModelMetrics>,
}

impl GenerationMetrics {
    fn step(&self, sequences: usize, compute: Duration) {
        self.model.executed(sequences, compute);
        self.model.record_tokens(sequences as u64);
    }

    fn token(&self) {
        self.tokens.inc();
    }

    fn finished(&self, reason: FinishReason) {
        let [m, v, b] = &self.labels;
        self.finished
            .with_label_values(&[m, v, b, reason.label()])
            .inc();
    }
}
