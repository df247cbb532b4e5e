//! Middleware that decides whether a request may proceed: API keys, shutdown, and the
//! global limit on requests in flight.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::check_api_key;
use crate::error::{ErrorKind, KilnError};

/// Refuse inference while draining (503) or beyond the global concurrency limit (429),
/// at once rather than after a slow timeout.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.is_draining() {
        return KilnError::new(ErrorKind::NotReady, "the server is shutting down").into_response();
    }
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        return KilnError::new(
            ErrorKind::Overloaded,
            format!(
                "the server is at its limit of {} requests in flight; retry later",
                state.settings.max_concurrent_requests
            ),
        )
        .into_response();
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

/// With API keys configured, require `Authorization: Bearer <key>` matching one of them.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match check_api_key(&state.settings.api_keys, authorization) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
