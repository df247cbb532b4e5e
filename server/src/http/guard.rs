//! Middleware that decides whether a request may proceed: API keys, shutdown, and the
//! global limit on requests in flight.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::AppState;
use crate::auth::check_api_key;

/// Admit an inference request ([`AppState::admit`]) for as long as its answer runs.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let permit = match state.admit() {
        Ok(permit) => permit,
        Err(e) => return e.into_response(),
    };
    let response = next.run(request).await;
    if !is_event_stream(&response) {
        return response;
    }
    // A stream is in flight until its last event: it keeps its permit, so the limit counts
    // it and a drain waits for it, as for a gRPC stream.
    let (parts, body) = response.into_parts();
    let held = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(held))
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
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
