//! What every inference route shares: the caller's deadline (`kiln-timeout-ms` or the
//! server default), the outcome recorded in the model's metrics, and the mapping of body
//! and deadline failures to errors.

use std::future::Future;
use std::time::Duration;

use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
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

/// Header through which a caller sets its own deadline, in milliseconds.
pub const TIMEOUT_HEADER: &str = "kiln-timeout-ms";

pub fn request_timeout(request: &Request, default: Duration) -> Result<Duration, KilnError> {
    let Some(value) = request.headers().get(TIMEOUT_HEADER) else {
        return Ok(default);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| {
            KilnError::bad_input(format!(
                "{TIMEOUT_HEADER} must be a positive number of milliseconds"
            ))
        })
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

pub fn body_error(rejection: BytesRejection) -> KilnError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        KilnError::new(
            ErrorKind::TooLarge,
            "the request body exceeds the size limit",
        )
    } else {
        KilnError::bad_input(rejection.body_text())
    }
}
