//! The HTTP API (axum): health and metadata under `/v2` (KServe V2 style), task routes under
//! `/v1`, and Prometheus metrics at `/metrics`.

mod classify;
mod deadline;
mod error;
mod guard;
mod health;
pub mod input;
mod language;
pub mod text_input;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::Semaphore;

use crate::error::{ErrorKind, KilnError};
use crate::metrics::Metrics;
use crate::registry::{ModelHandle, ModelRegistry, ModelState};
use crate::settings::ServeSettings;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<ModelRegistry>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<ServeSettings>,
    /// Set once every model of the repository has been loaded (or has failed to).
    pub ready: Arc<AtomicBool>,
    /// Set when shutdown begins: readiness fails and new inference requests are refused.
    pub draining: Arc<AtomicBool>,
    /// One permit per inference request in flight, across all models.
    pub in_flight: Arc<Semaphore>,
}

impl AppState {
    pub fn new(settings: ServeSettings) -> Self {
        Self {
            registry: Arc::new(ModelRegistry::default()),
            metrics: Arc::new(Metrics::new()),
            in_flight: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
            settings: Arc::new(settings),
            ready: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Inference requests in flight across all models.
    pub fn requests_in_flight(&self) -> usize {
        self.settings.max_concurrent_requests - self.in_flight.available_permits()
    }

    /// Deadline for requests that set none.
    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms)
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

/// The whole HTTP API. Inference routes pass the shutdown and concurrency guard; with API
/// keys configured, everything but the public health and metrics routes needs one.
pub fn app(state: AppState) -> Router {
    let inference = Router::new()
        .route("/v1/models/{model}/classify", post(classify::classify))
        .route("/v1/models/{model}/next-word", post(language::next_word))
        .route("/v1/models/{model}/generate", post(language::generate))
        .route_layer(from_fn_with_state(state.clone(), guard::admit));
    let metadata = Router::new()
        .route("/v2", get(health::server_metadata))
        .route("/v2/models/{model}", get(health::model_metadata));
    let health = Router::new()
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/v2/models/{model}/ready", get(health::model_ready));
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
