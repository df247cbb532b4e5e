//! The tasks Kiln serves, each in its own module with everything it needs: its section of
//! `model.toml`, loading and warm-up, the runner that owns its batcher or step loop, and one
//! protocol-neutral entry point that HTTP, the Open Inference Protocol and gRPC all call.
//! Protocol modules only translate their wire forms to and from these calls.
//!
//! Here too: what every request shares whatever its task — its deadline and the outcome
//! recorded in its model's metrics ([`run_request`]), and decoding input off the async
//! workers when it is large ([`decode_off_thread_if_large`]).

pub mod caption;
pub mod classify;
pub mod image;
pub mod language;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{ErrorKind, KilnError};
use crate::metrics::{FailureReason, ModelMetrics};

/// Run `work` (given its deadline) under the request's deadline, and record the outcome in
/// the model's request metrics.
pub async fn run_request<T, Fut>(
    metrics: &std::sync::Arc<ModelMetrics>,
    timeout: Result<Duration, KilnError>,
    work: impl FnOnce(Instant) -> Fut,
) -> Result<T, KilnError>
where
    Fut: Future<Output = Result<T, KilnError>>,
{
    let record = metrics.start_request();
    let outcome = async {
        let timeout = timeout?;
        let deadline = Instant::now() + timeout;
        tokio::time::timeout_at(deadline, work(deadline))
            .await
            .unwrap_or_else(|_| Err(deadline_error(timeout)))
    }
    .await;
    record.finish(outcome.as_ref().err().map(|e| failure_reason(e.kind)));
    outcome
}

pub fn deadline_error(timeout: Duration) -> KilnError {
    KilnError::new(
        ErrorKind::DeadlineExceeded,
        format!(
            "the request did not finish within its {} ms deadline",
            timeout.as_millis()
        ),
    )
}

/// The failure metric's reason for an error.
pub fn failure_reason(kind: ErrorKind) -> FailureReason {
    match kind {
        ErrorKind::Overloaded => FailureReason::Rejected,
        ErrorKind::DeadlineExceeded => FailureReason::Timeout,
        ErrorKind::Internal | ErrorKind::NotReady => FailureReason::Backend,
        _ => FailureReason::Invalid,
    }
}

/// Decoding inputs this large takes long enough to stall an async worker.
const INLINE_DECODE_LIMIT: usize = 256 * 1024;

/// Decode `input_bytes` worth of input with `decode`: inline when small, on the blocking
/// pool when large.
pub async fn decode_off_thread_if_large<T: Send + 'static>(
    input_bytes: usize,
    decode: impl FnOnce() -> Result<T, KilnError> + Send + 'static,
) -> Result<T, KilnError> {
    if input_bytes <= INLINE_DECODE_LIMIT {
        return decode();
    }
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|_| KilnError::new(ErrorKind::Internal, "decoding the request failed"))?
}

/// A task section of `model.toml` that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Batching(#[from] crate::batching::BatchingConfigError),
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    fn invalid(cause: impl std::fmt::Display) -> Self {
        Self::Invalid(cause.to_string())
    }
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] kiln_zoo::ZooError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Mismatch(String),
    #[error("warm-up failed: {0}")]
    WarmUp(String),
    #[error("{0}")]
    DeviceMemory(String),
    #[error("cannot start the model's threads: {0}")]
    Threads(std::io::Error),
}

/// What loading a model folder needs to know.
pub struct LoadContext<'a> {
    /// The model's name: its folder's name.
    pub name: &'a str,
    pub dir: &'a std::path::Path,
    /// The server's default backend and device; a model may name its own.
    pub placement: &'a crate::placement::Placement,
    pub metrics: &'a crate::metrics::Metrics,
}

/// A loaded model's runner, with where it runs and the metrics it records into.
pub struct Loaded<R> {
    pub backend: kiln_zoo::BackendKind,
    pub metrics: std::sync::Arc<ModelMetrics>,
    pub runner: R,
}

/// The version a model reports when its `model.toml` names none.
fn default_version() -> String {
    "1".to_string()
}

/// Executor threads of a model that asks for no more.
fn default_instances() -> usize {
    1
}
