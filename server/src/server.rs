//! Starting and stopping a server: bind, serve HTTP at once (liveness), load the model
//! repository in the background, then report ready.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::http::{AppState, app};
use crate::registry::{ModelState, load_model};
use crate::repository::ModelRepository;
use crate::settings::ServeSettings;

/// A server running on the current tokio runtime.
pub struct RunningServer {
    http_addr: SocketAddr,
    state: AppState,
    ready: watch::Receiver<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Bind the HTTP address, start serving, and begin loading the models.
    pub async fn start(settings: ServeSettings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.http_addr).await?;
        let http_addr = listener.local_addr()?;
        let state = AppState::new();
        let (ready_tx, ready) = watch::channel(false);
        tokio::spawn(load_repository(settings.clone(), state.clone(), ready_tx));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let router = app(state.clone(), settings.max_body_bytes);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await
        });
        Ok(Self {
            http_addr,
            state,
            ready,
            shutdown: Some(shutdown_tx),
            task,
        })
    }

    /// The address HTTP listens on (with the real port when port 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Wait until every model has been loaded or has failed to load.
    pub async fn wait_ready(&mut self) {
        let _ = self.ready.wait_for(|ready| *ready).await;
    }

    /// Stop accepting connections, let in-flight requests finish, and return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Serve until `signal` completes, then shut down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// Load every model folder, one after another, each on a blocking thread.
async fn load_repository(settings: ServeSettings, state: AppState, ready: watch::Sender<bool>) {
    let repository = ModelRepository::new(&settings.model_repository);
    let entries = match repository.scan() {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!("{e}");
            Vec::new()
        }
    };
    if entries.is_empty() {
        tracing::warn!(repository = %settings.model_repository.display(), "no models found");
    }
    for entry in &entries {
        state.registry.set(&entry.name, ModelState::Loading);
    }
    for entry in entries {
        let metrics = state.metrics.clone();
        let backend = settings.backend;
        let name = entry.name.clone();
        let loaded = tokio::task::spawn_blocking(move || load_model(&entry, backend, &metrics))
            .await
            .unwrap_or_else(|e| Err(format!("loader crashed: {e}")));
        match loaded {
            Ok(handle) => {
                tracing::info!(model = %name, backend = %handle.backend, "model ready");
                state
                    .registry
                    .set(&name, ModelState::Ready(Arc::new(handle)));
            }
            Err(reason) => {
                tracing::error!(model = %name, %reason, "model failed to load");
                state.registry.set(&name, ModelState::Failed(reason));
            }
        }
    }
    state.ready.store(true, Ordering::Release);
    let _ = ready.send(true);
}
