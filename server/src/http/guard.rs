//! What decides whether a request may proceed: API keys, the shutdown, and the global limit
//! on requests in flight.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::check_http_api_key;
use crate::batching::Permit;
use crate::error::KilnError;

/// An inference request admitted ([`AppState::admit`]): in flight until the permit is
/// dropped. A handler keeps it while it answers, or hands it to what outlives it (a
/// generation stream).
pub struct Admitted(pub Permit);

impl FromRequestParts<AppState> for Admitted {
    type Rejection = KilnError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, KilnError> {
        state.admit().map(Admitted)
    }
}

/// With API keys configured, require `Authorization: Bearer <key>` matching one of them.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check_http_api_key(&state.settings.api_keys, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// While the server drains, every answer closes its connection, so clients move on before
/// the listener closes instead of finding their kept-alive connection gone.
pub async fn close_when_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if state.is_draining() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
