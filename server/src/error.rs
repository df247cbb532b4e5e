//! Error kinds shared by every protocol, and the one place that maps them to HTTP status
//! codes and gRPC codes.

use std::time::Duration;

use axum::http::StatusCode;
use tonic::Code;

use crate::batching::InferError;

/// The class of a failed request; decides its status code and failure metric.
/// gRPC has no 413/415/422: those are INVALID_ARGUMENT or RESOURCE_EXHAUSTED there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request: 400.
    BadInput,
    /// Missing or wrong API key: 401.
    Unauthorized,
    /// Unknown model: 404.
    NotFound,
    /// Body over the size limit: 413.
    TooLarge,
    /// Unsupported media type: 415.
    UnsupportedMediaType,
    /// Well-formed but the wrong shape or type for the model: 422.
    Unprocessable,
    /// Queue full: 429.
    Overloaded,
    /// Model failed while computing: 500.
    Internal,
    /// Model or server not ready: 503.
    NotReady,
    /// Deadline passed: 504.
    DeadlineExceeded,
}

impl ErrorKind {
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::BadInput | ErrorKind::UnsupportedMediaType | ErrorKind::Unprocessable => {
                Code::InvalidArgument
            }
            ErrorKind::Unauthorized => Code::Unauthenticated,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::TooLarge | ErrorKind::Overloaded => Code::ResourceExhausted,
            ErrorKind::Internal => Code::Internal,
            ErrorKind::NotReady => Code::Unavailable,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        }
    }
}

/// A failed request: what kind of failure and a message safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KilnError {
    pub kind: ErrorKind,
    pub message: String,
    /// For a refusal under load: when a retry may be admitted.
    pub retry_after: Option<Duration>,
}

impl KilnError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The `Retry-After` value for this error: whole seconds, at least one (HTTP allows no
    /// finer), for refusals under load only.
    pub fn retry_after_secs(&self) -> Option<u64> {
        (self.kind == ErrorKind::Overloaded).then(|| {
            let after = self.retry_after.unwrap_or(Duration::from_secs(1));
            after.as_secs_f64().ceil().max(1.0) as u64
        })
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, message)
    }

    pub fn unknown_model(name: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("model '{name}' is not in the model repository"),
        )
    }

    /// The error as the caller may see it. A failure inside the server (500) is logged with
    /// its detail under a new request id, and the caller gets a generic message naming that
    /// id: panics and model errors are internal detail.
    pub fn for_caller(self) -> Self {
        if self.kind != ErrorKind::Internal {
            return self;
        }
        let request_id = format!("{:016x}", rand::random::<u64>());
        tracing::error!(%request_id, detail = %self.message, "request failed inside the server");
        Self::new(
            ErrorKind::Internal,
            format!("the server failed to answer this request (request id {request_id})"),
        )
    }
}

impl From<InferError> for KilnError {
    fn from(e: InferError) -> Self {
        let kind = match e {
            InferError::Overloaded(_) => ErrorKind::Overloaded,
            InferError::ShuttingDown => ErrorKind::NotReady,
            InferError::Backend(_) => ErrorKind::Internal,
            InferError::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            InferError::OverTarget { .. } => ErrorKind::Overloaded,
        };
        let retry_after = match e {
            InferError::OverTarget { retry_after } => Some(retry_after),
            _ => None,
        };
        Self {
            retry_after,
            ..Self::new(kind, e.to_string())
        }
    }
}

impl From<kiln_zoo::ZooError> for KilnError {
    fn from(e: kiln_zoo::ZooError) -> Self {
        use kiln_zoo::ZooError;
        let kind = match &e {
            ZooError::ImageTooLarge { .. } => ErrorKind::TooLarge,
            ZooError::InvalidImage(_) => ErrorKind::BadInput,
            ZooError::InvalidInput(_) => ErrorKind::Unprocessable,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}
