//! A request's way through a batcher: the job that waits in the queue with its admission
//! permit, and the batch of jobs an executor runs.

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use super::InferError;
use super::admission::Permit;

/// A request admitted to a model's queue.
pub(super) struct Job<I, O> {
    pub input: I,
    pub reply: oneshot::Sender<Result<O, InferError>>,
    pub enqueued: Instant,
    /// After this the request is answered with `DeadlineExceeded` instead of being run.
    pub deadline: Option<Instant>,
    /// The job's place in the queue, given back when the job is dropped.
    pub permit: Permit,
}

impl<I, O> Job<I, O> {
    /// The caller stopped waiting for the answer.
    pub fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// A batch ready to run, with the permit that marks one executor as busy.
pub(super) struct Batch<I, O> {
    pub jobs: Vec<Job<I, O>>,
    pub _busy: OwnedSemaphorePermit,
    /// When the batch left the queue.
    pub formed: std::time::Instant,
}
