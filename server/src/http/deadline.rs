//! The HTTP side of deadlines and bodies: the caller's deadline from `kiln-timeout-ms` (or
//! the server default), and body read failures as errors.

use std::time::Duration;

use axum::extract::Request;
use axum::extract::rejection::BytesRejection;

use crate::error::{ErrorKind, KilnError};

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
