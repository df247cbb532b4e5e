//! Turning a [`KilnError`] into an HTTP response: the mapped status and `{"error": "…"}`.

use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorKind, KilnError};

impl IntoResponse for KilnError {
    fn into_response(self) -> Response {
        let this = self.for_caller();
        let status = this.kind.http_status();
        let retry_after = this.retry_after_secs();
        let body = Json(serde_json::json!({ "error": this.message }));
        match this.kind {
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
