//! Server liveness and readiness (the Open Inference Protocol's health routes).

use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;

pub async fn live() -> StatusCode {
    StatusCode::OK
}

pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
