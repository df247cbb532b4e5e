//! The HTTP API (axum): the Open Inference Protocol (KServe V2) under `/v2`, task routes
//! under `/v1`, and Prometheus metrics at `/metrics`.

mod classify;
mod deadline;
mod error;
pub(crate) mod guard;
mod health;
pub mod input;
mod language;
pub mod text_input;
mod v2;
pub mod v2_codec;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::error::{ErrorKind, KilnError};
pub use crate::state::AppState;

/// The whole HTTP API. Inference routes pass the shutdown and concurrency guard; with API
/// keys configured, everything but the public health and metrics routes needs one.
pub fn app(state: AppState) -> Router {
    let inference = Router::new()
        .route("/v1/models/{model}/classify", post(classify::classify))
        .route("/v1/models/{model}/next-word", post(language::next_word))
        .route("/v1/models/{model}/generate", post(language::generate))
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer),
        )
        .route_layer(from_fn_with_state(state.clone(), guard::admit));
    let metadata = Router::new()
        .route("/v2", get(v2::server_metadata))
        .route("/v2/models/stats", get(v2::all_stats))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(v2::model_metadata),
        )
        .route("/v2/models/{model}/config", get(v2::model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(v2::model_config),
        )
        .route("/v2/models/{model}/stats", get(v2::model_stats))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(v2::model_stats),
        )
        .route("/v2/repository/index", post(v2::repository_index))
        .route(
            "/v2/repository/models/{model}/load",
            post(v2::repository_load),
        )
        .route(
            "/v2/repository/models/{model}/unload",
            post(v2::repository_unload),
        );
    let health = Router::new()
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(v2::model_ready),
        );
    let metrics = Router::new().route("/metrics", get(metrics));

    let mut protected = inference.merge(metadata);
    let mut public = Router::new();
    if state.settings.auth_health {
        protected = protected.merge(health);
    } else {
        public = public.merge(health);
    }
    if state.settings.auth_metrics {
        protected = protected.merge(metrics);
    } else {
        public = public.merge(metrics);
    }
    let protected = protected.route_layer(from_fn_with_state(state.clone(), guard::authorize));

    protected
        .merge(public)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

async fn not_found() -> KilnError {
    KilnError::new(ErrorKind::NotFound, "no such route")
}
