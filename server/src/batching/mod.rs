//! Admission and batching, whatever the task. Every queue admits through an [`Admission`],
//! whose RAII [`Permit`] travels inside the request's job. Batch models have one
//! [`Batcher`]: an actor task that owns the model's queue, forms batches (up to
//! `max_batch_size`, waiting at most `max_queue_delay` from the oldest request's arrival, or
//! less when a preferred size is reached) and hands them to executor threads, one per model
//! instance, which own the model. With a latency target instead of fixed settings, a
//! [`Controller`] chooses the batch size and delay and refuses what it could not answer in
//! time. Sequence models run on a [`StepLoop`], which advances all
//! their requests one step at a time, as many together as its [`StepController`] allows
//! under a step target. Callers get their answers on channels.

mod admission;
mod batcher;
mod compute_times;
mod config;
mod controller;
mod executor;
mod job;
mod latency_feedback;
mod observer;
#[cfg(test)]
mod simulation;
mod step_loop;
mod step_target;

use std::time::Duration;

pub use admission::{Admission, Permit, Refused};
pub use batcher::{Batcher, Submitted};
pub use config::{BatchingConfig, BatchingConfigError};
pub use controller::{Choice, Controller, LatencyTarget, Objective, OverTarget};
pub use executor::{BatchExecutor, ExecutorError, panic_message};
pub use step_loop::{Running, StepLoop, StepModel, Waiting};
pub use step_target::{StepController, StepTarget};

/// Batching limits of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPolicy {
    pub max_batch_size: usize,
    pub max_queue_delay: Duration,
    /// Batch sizes that are dispatched as soon as they are reached.
    pub preferred_batch_sizes: Vec<usize>,
    /// A latency goal: with it, batch size (up to `max_batch_size`) and delay are chosen by
    /// the batcher itself, and `max_queue_delay` and the preferred sizes are not used.
    pub target: Option<LatencyTarget>,
}

/// Why a request got no answer from its model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    #[error("the model's queue is full ({0} requests); retry later")]
    Overloaded(usize),
    #[error("the model is shutting down")]
    ShuttingDown,
    #[error("the model failed on this batch: {0}")]
    Backend(String),
    #[error("the request's deadline passed before it could run")]
    DeadlineExceeded,
    #[error(
        "the model cannot answer more requests within its latency target now; retry in {} ms",
        retry_after.as_millis().max(1)
    )]
    OverTarget { retry_after: Duration },
}

impl From<OverTarget> for InferError {
    fn from(refused: OverTarget) -> Self {
        InferError::OverTarget {
            retry_after: refused.retry_after,
        }
    }
}

impl From<Refused> for InferError {
    fn from(refused: Refused) -> Self {
        InferError::Overloaded(refused.limit)
    }
}

/// Hooks through which the batcher reports what it does (metrics, tests).
pub trait BatchObserver: Send + Sync + 'static {
    /// A request was taken out of the queue for a batch after waiting `waited`.
    fn dequeued(&self, _waited: Duration) {}
    /// A batch of `size` items ran for `compute`.
    fn executed(&self, _size: usize, _compute: Duration) {}
    /// A batch of `size` items was answered `since_formed` after it left the queue.
    fn answered(&self, _size: usize, _since_formed: Duration) {}
    /// The batcher now uses `choice` (at start, and whenever its controller changes it).
    fn chose(&self, _choice: Choice) {}
    /// Under a latency target, the share of it the batching decisions may spend is now
    /// `share` (at start, and whenever answered requests' latencies correct it).
    fn target_share(&self, _share: f64) {}
}
