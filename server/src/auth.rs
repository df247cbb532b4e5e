//! API keys: the one check that HTTP and gRPC requests both pass when keys are configured.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

use crate::error::{ErrorKind, KilnError};

/// Accept `authorization` (the header or gRPC metadata value) if no keys are configured or
/// it is `Bearer <key>` with one of them.
pub fn check_api_key(keys: &[String], authorization: Option<&str>) -> Result<(), KilnError> {
    if keys.is_empty() {
        return Ok(());
    }
    match authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    {
        Some(token) if key_matches(keys, token) => Ok(()),
        Some(_) => Err(KilnError::new(
            ErrorKind::Unauthorized,
            "the API key is not valid",
        )),
        None => Err(KilnError::new(
            ErrorKind::Unauthorized,
            "an API key is needed: send `authorization: Bearer <key>`",
        )),
    }
}

/// [`check_api_key`] on an HTTP request's `Authorization` header.
pub fn check_http_api_key(keys: &[String], headers: &HeaderMap) -> Result<(), KilnError> {
    check_api_key(
        keys,
        headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()),
    )
}

/// Compare against every key in constant time per key, so timing tells nothing about how
/// much of a key was right.
fn key_matches(keys: &[String], token: &str) -> bool {
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

    #[test]
    fn without_keys_everything_passes() {
        assert!(check_api_key(&[], None).is_ok());
        let keys = vec!["k".to_string()];
        assert!(check_api_key(&keys, Some("Bearer k")).is_ok());
        assert!(check_api_key(&keys, Some("k")).is_err());
        assert!(check_api_key(&keys, None).is_err());
    }
}
