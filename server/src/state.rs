//! What every request handler can reach, whatever the protocol: the model registry, the
//! metrics, the settings, readiness and the global limit on requests in flight; and the
//! loading of one model folder into the registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::error::{ErrorKind, KilnError};
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::registry::{ModelHandle, ModelRegistry, ModelState, load_model};
use crate::repository::ModelEntry;
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
    /// Held while a model is loaded or unloaded, so those happen one at a time.
    pub repository_changes: Arc<Mutex<()>>,
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
            repository_changes: Arc::new(Mutex::new(())),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Admit one inference request, whatever its protocol: refused while draining (503) or
    /// beyond the global concurrency limit (429), at once rather than after a slow timeout.
    /// The request is in flight until the permit is dropped.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, KilnError> {
        if self.is_draining() {
            return Err(KilnError::new(
                ErrorKind::NotReady,
                "the server is shutting down",
            ));
        }
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            KilnError::new(
                ErrorKind::Overloaded,
                format!(
                    "the server is at its limit of {} requests in flight; retry later",
                    self.settings.max_concurrent_requests
                ),
            )
        })
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

    /// The named model if it can take requests and serves `version` (any, when empty).
    pub fn ready_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Arc<ModelHandle>, KilnError> {
        let handle = self.ready_model(name)?;
        if !version.is_empty() && version != handle.version {
            return Err(KilnError::new(
                ErrorKind::NotFound,
                format!(
                    "model '{name}' has no version '{version}'; it serves version '{}'",
                    handle.version
                ),
            ));
        }
        Ok(handle)
    }

    /// Every model that can take requests, by name.
    pub fn ready_models(&self) -> Vec<Arc<ModelHandle>> {
        self.registry
            .all()
            .into_iter()
            .filter_map(|(_, state)| match state {
                ModelState::Ready(handle) => Some(handle),
                _ => None,
            })
            .collect()
    }

    /// Load one model folder on a blocking thread and put it in the registry. A model that
    /// is already serving keeps serving until its replacement is ready, and keeps serving
    /// if the replacement fails to load.
    pub async fn load_entry(&self, entry: ModelEntry) -> Result<(), String> {
        let name = entry.name.clone();
        let previous = self.registry.get(&name);
        if !matches!(previous, Some(ModelState::Ready(_))) {
            self.registry.set(&name, ModelState::Loading);
        }
        let metrics = self.metrics.clone();
        let placement = Placement::from_settings(&self.settings);
        let loaded = tokio::task::spawn_blocking(move || load_model(&entry, &placement, &metrics))
            .await
            .unwrap_or_else(|e| Err(format!("loader crashed: {e}")));
        match loaded {
            Ok(handle) => {
                tracing::info!(model = %name, backend = %handle.backend, "model ready");
                self.registry
                    .set(&name, ModelState::Ready(Arc::new(handle)));
                Ok(())
            }
            Err(reason) => {
                tracing::error!(model = %name, %reason, "model failed to load");
                if !matches!(previous, Some(ModelState::Ready(_))) {
                    self.registry.set(&name, ModelState::Failed(reason.clone()));
                }
                Err(reason)
            }
        }
    }
}
