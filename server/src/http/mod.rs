//! The HTTP API (axum): the Open Inference Protocol (KServe V2) under `/v2`, task routes
//! under `/v1`, and Prometheus metrics at `/metrics`.

mod caption;
mod classify;
mod error;
mod guard;
mod health;
mod image_body;
pub mod input;
mod language;
mod openapi;
pub(crate) mod request;
mod v2;
pub mod v2_codec;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::decompression::RequestDecompressionLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorKind, KilnError};
pub use crate::state::AppState;
pub use guard::authorize;

/// The whole HTTP API. Inference handlers are admitted through [`guard::Admitted`] (the
/// shutdown and the concurrency limit); with API keys configured, everything but the public
/// health, metrics and OpenAPI routes needs one. `more` holds the routes of other APIs served
/// on the same port (the OpenAI-compatible API), which get the same limits and fallback.
pub fn app(state: AppState, more: Router<AppState>) -> Router {
    let inference = OpenApiRouter::new()
        .routes(routes!(classify::classify))
        .routes(routes!(caption::caption))
        .routes(routes!(language::next_word))
        .routes(routes!(language::generate))
        .routes(routes!(v2::infer))
        .routes(routes!(v2::version_infer));
    let metadata = OpenApiRouter::new()
        .routes(routes!(v2::server_metadata))
        .routes(routes!(v2::all_stats))
        .routes(routes!(v2::model_metadata))
        .routes(routes!(v2::version_metadata))
        .routes(routes!(v2::model_config))
        .routes(routes!(v2::version_config))
        .routes(routes!(v2::model_stats))
        .routes(routes!(v2::version_stats))
        .routes(routes!(v2::repository_index))
        .routes(routes!(v2::repository_load))
        .routes(routes!(v2::repository_unload));
    let health = OpenApiRouter::new()
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(v2::model_ready))
        .routes(routes!(v2::version_ready));
    let metrics = OpenApiRouter::new().routes(routes!(metrics));

    let mut protected = inference.merge(metadata);
    let mut public = OpenApiRouter::new();
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

    let (router, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(protected)
        .merge(public)
        .split_for_parts();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    let document = document.to_json().expect("the OpenAPI document serialises");
    router
        .route(
            "/openapi.json",
            get(move || async move { ([(CONTENT_TYPE, "application/json")], document) }),
        )
        .merge(more)
        .fallback(not_found)
        // Bodies sent with `Content-Encoding: gzip` or `deflate` (tritonclient's request
        // compression); the size limit applies to the decompressed body.
        .layer(RequestDecompressionLayer::new())
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(from_fn_with_state(
            state.clone(),
            guard::close_when_draining,
        ))
        .with_state(state)
}

#[utoipa::path(get, path = "/metrics", tag = "Metrics", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

async fn not_found() -> KilnError {
    KilnError::new(ErrorKind::NotFound, "no such route")
}
