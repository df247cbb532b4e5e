//! Errors in OpenAI's shape — `{"error": {"message", "type", "param", "code"}}` — with the
//! status code every other protocol gives the same failure.

use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::{ErrorKind, KilnError};

/// A failed OpenAI-style request: the failure, and the request field it is about.
#[derive(Debug)]
pub struct OpenAiError {
    pub error: KilnError,
    pub param: Option<&'static str>,
}

impl OpenAiError {
    /// A failure caused by one field of the request.
    pub fn invalid(kind: ErrorKind, param: &'static str, message: impl Into<String>) -> Self {
        Self {
            error: KilnError::new(kind, message),
            param: Some(param),
        }
    }

    /// The JSON body OpenAI's clients read (also a streamed `data:` event).
    pub fn body(self) -> Value {
        let error = self.error.for_caller();
        let (kind, code) = names(error.kind);
        json!({ "error": {
            "message": error.message,
            "type": kind,
            "param": self.param,
            "code": code,
        }})
    }
}

impl From<KilnError> for OpenAiError {
    fn from(error: KilnError) -> Self {
        Self { error, param: None }
    }
}

/// OpenAI's error `type` and `code` for a kind of failure.
fn names(kind: ErrorKind) -> (&'static str, Option<&'static str>) {
    match kind {
        ErrorKind::BadInput | ErrorKind::UnsupportedMediaType | ErrorKind::Unprocessable => {
            ("invalid_request_error", None)
        }
        ErrorKind::TooLarge => ("invalid_request_error", Some("request_too_large")),
        ErrorKind::NotFound => ("invalid_request_error", Some("model_not_found")),
        ErrorKind::Unauthorized => ("authentication_error", Some("invalid_api_key")),
        ErrorKind::Overloaded => ("rate_limit_error", Some("rate_limit_exceeded")),
        ErrorKind::DeadlineExceeded => ("timeout_error", Some("timeout")),
        ErrorKind::NotReady => ("server_error", Some("model_not_ready")),
        ErrorKind::Internal => ("server_error", None),
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let kind = self.error.kind;
        let status = kind.http_status();
        let retry_after = self.error.retry_after_secs();
        let body = Json(self.body());
        match kind {
            ErrorKind::Overloaded => {
                let seconds = retry_after.unwrap_or(1).to_string();
                (status, [(RETRY_AFTER, seconds)], body).into_response()
            }
            ErrorKind::Unauthorized => {
                (status, [(WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_type_param_and_code() {
        let body = OpenAiError::invalid(ErrorKind::Unprocessable, "n", "n must be 1..=8").body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "n");
        assert_eq!(body["error"]["message"], "n must be 1..=8");
        let body = OpenAiError::from(KilnError::unknown_model("x")).body();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert!(body["error"]["param"].is_null());
        let internal = OpenAiError::from(KilnError::new(ErrorKind::Internal, "secret detail"));
        let message = internal.body()["error"]["message"].to_string();
        assert!(!message.contains("secret"), "{message}");
    }
}
