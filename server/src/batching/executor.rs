//! Executor threads: they own a model instance and run batches on it, away from the async
//! runtime's worker threads. A panic fails only its batch, and the executor rebuilds its
//! model before the next one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::job::Batch;
use super::{BatchObserver, InferError};

/// Runs one batch through a model. Implemented per task (classification, ...).
pub trait BatchExecutor<I, O>: Send + 'static {
    /// One output per input, in order.
    fn execute(&mut self, inputs: &[I]) -> Result<Vec<O>, ExecutorError>;

    /// Rebuild the model after `execute` panicked, since its state can no longer be
    /// trusted. The default keeps the executor as it is.
    fn restart(&mut self) -> Result<(), ExecutorError> {
        Ok(())
    }
}

/// A model failure while running a batch or a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecutorError(pub String);

impl ExecutorError {
    pub fn new(cause: impl std::fmt::Display) -> Self {
        Self(cause.to_string())
    }
}

/// Start an executor thread that serves batches from `batches` until the channel closes.
pub(super) fn spawn_executor<I, O>(
    name: String,
    mut executor: Box<dyn BatchExecutor<I, O>>,
    batches: crossbeam_channel::Receiver<Batch<I, O>>,
    observer: Arc<dyn BatchObserver>,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    I: Send + 'static,
    O: Send + 'static,
{
    std::thread::Builder::new().name(name).spawn(move || {
        for batch in batches {
            run_batch(executor.as_mut(), batch, observer.as_ref());
        }
    })
}

fn run_batch<I: Send + 'static, O: Send + 'static>(
    executor: &mut dyn BatchExecutor<I, O>,
    batch: Batch<I, O>,
    observer: &dyn BatchObserver,
) {
    let size = batch.jobs.len();
    let formed = batch.formed;
    // Each permit is held until its answer has been sent.
    let (inputs, replies): (Vec<I>, Vec<_>) = batch
        .jobs
        .into_iter()
        .map(|j| (j.input, (j.reply, j.permit)))
        .unzip();
    let started = Instant::now();
    // A panic inside the model must fail only this batch, not the thread or the server.
    let outcome = catch_unwind(AssertUnwindSafe(|| executor.execute(&inputs)));
    observer.executed(size, started.elapsed());
    let outputs = match outcome {
        Ok(Ok(outputs)) if outputs.len() == size => Ok(outputs),
        Ok(Ok(outputs)) => Err(format!(
            "model returned {} outputs for {size} inputs",
            outputs.len()
        )),
        Ok(Err(e)) => Err(e.0),
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::error!(%message, "executor panicked; reloading its model");
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| executor.restart()))
                .unwrap_or_else(|p| Err(ExecutorError(panic_message(&p))))
            {
                tracing::error!(error = %e, "executor reload failed");
            }
            Err(message)
        }
    };
    match outputs {
        Ok(outputs) => {
            for ((reply, permit), output) in replies.into_iter().zip(outputs) {
                // The place is free by the time the caller has its answer.
                drop(permit);
                let _ = reply.send(Ok(output));
            }
        }
        Err(message) => {
            tracing::error!(%message, size, "batch failed");
            for (reply, permit) in replies {
                drop(permit);
                let _ = reply.send(Err(InferError::Backend(message.clone())));
            }
        }
    }
    observer.answered(size, formed.elapsed());
}

/// What a caught panic says, for the log and the request's error.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    format!("model panicked: {detail}")
}
