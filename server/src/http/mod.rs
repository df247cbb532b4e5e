//! The HTTP API (axum): health and metadata under `/v2` (KServe V2 style), task routes under
//! `/v1`, and Prometheus metrics at `/metrics`.

mod classify;
mod error;
mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::error::{ErrorKind, KilnError};
use crate::metrics::Metrics;
use crate::registry::{ModelHandle, ModelRegistry, ModelState};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<ModelRegistry>,
    pub metrics: Arc<Metrics>,
    /// Set once every model of the repository has been loaded (or has failed to).
    pub ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn new() -> Self {
        Self {
            registry: Arc::new(ModelRegistry::default()),
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The named model if it can take requests, else the error to answer with.
    pub fn ready_model(&self, name: &str) -> Result<Arc<ModelHandle>, KilnError> {
        match self.registry.get(name) {
            Some(ModelState::Ready(handle)) => Ok(handle),
            Some(ModelState::Loading) => Err(KilnError::new(
                ErrorKind::NotReady,
                format!("model '{name}' is still loading"),
            )),
            Some(ModelState::Failed(_)) => Err(KilnError::new(
                ErrorKind::NotReady,
                format!("model '{name}' failed to load; see the server log"),
            )),
            None => Err(KilnError::unknown_model(name)),
        }
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}

/// The whole HTTP API.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/v2", get(health::server_metadata))
        .route("/v2/models/{model}", get(health::model_metadata))
        .route("/v2/models/{model}/ready", get(health::model_ready))
        .route("/v1/models/{model}/classify", post(classify::classify))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
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
