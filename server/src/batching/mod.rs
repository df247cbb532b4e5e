//! Dynamic batching. Each model has one [`Batcher`]: an actor task that owns the model's
//! queue, forms batches (up to `max_batch_size`, waiting at most `max_queue_delay` from the
//! oldest request's arrival, or less when a preferred size is reached) and hands them to
//! executor threads, one per model instance, which own the model. Callers get their answer
//! on a oneshot channel.

mod executor;
mod queue;
mod slots;

use std::time::Duration;

pub use executor::{BatchExecutor, ExecutorError};
pub use queue::{Batcher, Submitted};
pub use slots::QueueSlots;

/// Batching limits of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPolicy {
    pub max_batch_size: usize,
    pub max_queue_delay: Duration,
    /// Batch sizes that are dispatched as soon as they are reached.
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests queued or running beyond which new ones are refused.
    pub max_queue_size: usize,
    /// Executor threads, each owning one copy of the model.
    pub instances: usize,
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
}

/// Hooks through which the batcher reports what it does (metrics, tests).
pub trait BatchObserver: Send + Sync + 'static {
    /// A request was admitted to the queue.
    fn admitted(&self) {}
    /// An admitted request left the system (answered or dropped).
    fn released(&self) {}
    /// A request was taken out of the queue for a batch after waiting `waited`.
    fn dequeued(&self, _waited: Duration) {}
    /// A request was dropped before compute because its caller went away.
    fn abandoned(&self) {}
    /// A request was dropped before compute because its deadline had passed.
    fn expired(&self) {}
    /// A batch of `size` items ran for `compute`.
    fn executed(&self, _size: usize, _compute: Duration) {}
}

/// An observer that records nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl BatchObserver for NoObserver {}
