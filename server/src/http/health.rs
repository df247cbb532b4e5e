//! Server liveness and readiness (the Open Inference Protocol's health routes).

use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;

#[utoipa::path(get, path = "/v2/health/live", tag = "Health",
    responses((status = 200, description = "the server answers")))]
pub async fn live() -> StatusCode {
    StatusCode::OK
}

#[utoipa::path(get, path = "/v2/health/ready", tag = "Health", responses(
    (status = 200, description = "every model of the repository has been loaded"),
    (status = 503, description = "still loading, or shutting down")))]
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
