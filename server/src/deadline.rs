//! What every inference call shares, whatever the protocol: the request's deadline, the
//! outcome recorded in the model's metrics, and the error for a missed deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{ErrorKind, KilnError};
use crate::metrics::FailureReason;
use crate::registry::ModelHandle;

/// Run `work` (given its deadline) under the request's deadline, and record the outcome in
/// the model's request metrics.
pub async fn within_deadline<T, Fut>(
    handle: &ModelHandle,
    timeout: Result<Duration, KilnError>,
    work: impl FnOnce(Instant) -> Fut,
) -> Result<T, KilnError>
where
    Fut: Future<Output = Result<T, KilnError>>,
{
    let record = handle.metrics.start_request();
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

pub fn failure_reason(kind: ErrorKind) -> FailureReason {
    match kind {
        ErrorKind::Overloaded => FailureReason::Rejected,
        ErrorKind::DeadlineExceeded => FailureReason::Timeout,
        ErrorKind::Internal | ErrorKind::NotReady => FailureReason::Backend,
        _ => FailureReason::Invalid,
    }
}
