//! The HTTP side of a request: the caller's deadline from `kiln-timeout-ms` (or the server
//! default), and reading the body, with its failures as errors.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};

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

/// The whole body, within the size limit.
pub async fn read_body(request: Request) -> Result<Bytes, KilnError> {
    Bytes::from_request(request, &()).await.map_err(body_error)
}

fn body_error(rejection: BytesRejection) -> KilnError {
    read_error(rejection.status(), rejection.body_text())
}

/// A failure to read a body (or a part of one): 413 past the size limit, else 400.
pub fn read_error(status: axum::http::StatusCode, detail: String) -> KilnError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        KilnError::new(
            ErrorKind::TooLarge,
            "the request body exceeds the size limit",
        )
    } else {
        KilnError::bad_input(detail)
    }
}
