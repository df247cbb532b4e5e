//! Turning a [`KilnError`] into an HTTP response: the mapped status and `{"error": "…"}`.

use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorKind, KilnError};

impl IntoResponse for KilnError {
    fn into_response(self) -> Response {
        let status = self.kind.http_status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), message = %self.message, "request failed");
        }
        let body = Json(serde_json::json!({ "error": self.message }));
        match self.kind {
            ErrorKind::Overloaded => (status, [(RETRY_AFTER, "1")], body).into_response(),
            ErrorKind::Unauthorized => {
                (status, [(WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}
