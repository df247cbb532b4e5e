//! Middleware that decides whether a request may proceed: API keys, shutdown, and the
//! global limit on requests in flight.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
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
    let keys = &state.settings.api_keys;
    if keys.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if key_matches(keys, token) => next.run(request).await,
        Some(_) => {
            KilnError::new(ErrorKind::Unauthorized, "the API key is not valid").into_response()
        }
        None => KilnError::new(
            ErrorKind::Unauthorized,
            "this route needs an API key: send `Authorization: Bearer <key>`",
        )
        .into_response(),
    }
}

/// Compare against every key in constant time per key, so timing tells nothing about how
/// much of a key was right.
pub(crate) fn key_matches(keys: &[String], token: &str) -> bool {
    keys.iter().fold(false, |found, key| {
        found | bool::from(key.as_bytes().ct_eq(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_keys_match() {
        let keys = vec!["alpha".to_string(), "beta-key".to_string()];
        assert!(key_matches(&keys, "beta-key"));
        assert!(!key_matches(&keys, "beta"));
        assert!(!key_matches(&keys, "alpha "));
        assert!(!key_matches(&keys, ""));
    }
}
