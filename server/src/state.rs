//! What every request handler can reach, whatever the protocol: the model registry, the
//! metrics, the settings, the lifecycle and the limit on requests in flight.

use std::sync::Arc;
use std::time::Duration;

use crate::batching::{Admission, Permit};
use crate::error::{ErrorKind, KilnError};
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::registry::{Lifecycle, ModelHandle, ModelRegistry};
use crate::repository::ModelRepository;
use crate::settings::ServeSettings;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<ModelRegistry>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<ServeSettings>,
    pub lifecycle: Lifecycle,
    /// One place per inference request in flight, across all models.
    pub in_flight: Admission,
}

impl AppState {
    pub fn new(settings: ServeSettings) -> Self {
        let metrics = Arc::new(Metrics::new());
        let registry = ModelRegistry::new(
            ModelRepository::new(&settings.model_repository),
            Placement::from_settings(&settings),
            metrics.clone(),
        );
        Self {
            registry: Arc::new(registry),
            metrics,
            in_flight: Admission::new(settings.max_concurrent_requests),
            settings: Arc::new(settings),
            lifecycle: Lifecycle::default(),
        }
    }

    /// Ready for traffic: every model loaded (or failed to), and not draining.
    pub fn is_ready(&self) -> bool {
        self.lifecycle.is_ready()
    }

    pub fn is_draining(&self) -> bool {
        self.lifecycle.is_draining()
    }

    /// Admit one inference request, whatever its protocol: refused while draining (503) or
    /// beyond the global concurrency limit (429), at once rather than after a slow timeout.
    /// The request is in flight until the permit is dropped.
    pub fn admit(&self) -> Result<Permit, KilnError> {
        if self.is_draining() {
            return Err(KilnError::new(
                ErrorKind::NotReady,
                "the server is shutting down",
            ));
        }
        self.in_flight.try_admit().map_err(|refused| {
            KilnError::new(
                ErrorKind::Overloaded,
                format!(
                    "the server is at its limit of {} requests in flight; retry later",
                    refused.limit
                ),
            )
        })
    }

    /// Inference requests in flight across all models.
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.taken()
    }

    /// Deadline for requests that set none.
    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms)
    }

    /// The named model if it can take requests, else the error to answer with.
    pub fn ready_model(&self, name: &str) -> Result<Arc<ModelHandle>, KilnError> {
        self.registry.ready(name, "")
    }

    /// Every model that can take requests, by name.
    pub fn ready_models(&self) -> Vec<Arc<ModelHandle>> {
        self.registry.ready_models()
    }

    /// The named model if it can take requests and serves `version` (any, when empty).
    pub fn ready_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Arc<ModelHandle>, KilnError> {
        self.registry.ready(name, version)
    }
}
