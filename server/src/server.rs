//! Starting and stopping a server: bind, serve HTTP and gRPC at once (liveness), load the
//! model repository in the background, then report ready.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::energy::PowerMeter;
use crate::grpc::{self, set_health};
use crate::http::{AppState, app};
use crate::registry::ModelState;
use crate::repository::ModelRepository;
use crate::settings::ServeSettings;
use crate::tls;

/// A server running on the current tokio runtime.
pub struct RunningServer {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    state: AppState,
    ready: watch::Receiver<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    grpc_shutdown: Option<oneshot::Sender<()>>,
    grpc_task: JoinHandle<std::io::Result<()>>,
    health: tonic_health::server::HealthReporter,
    power_meter: JoinHandle<()>,
}

impl RunningServer {
    /// Bind the HTTP and gRPC addresses (TLS when a certificate is configured), start
    /// serving, and begin loading the models.
    pub async fn start(settings: ServeSettings) -> std::io::Result<Self> {
        let tls_config = |protocol| match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => tls::load_config(cert, key, protocol)
                .map(Some)
                .map_err(std::io::Error::other),
            _ => Ok(None),
        };
        let (http_tls, grpc_tls) = (tls_config(tls::HTTP1)?, tls_config(tls::HTTP2)?);
        let listener = TcpListener::bind(settings.http_addr).await?;
        let http_addr = listener.local_addr()?;
        let grpc_listener = TcpListener::bind(settings.grpc_addr).await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let state = AppState::new(settings.clone());
        let meter = PowerMeter::detect(settings.estimated_watts_per_core);
        let interval = Duration::from_millis(settings.power_sample_ms.max(1));
        let power_meter = tokio::spawn(meter.run(state.metrics.clone(), interval));
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, false).await;
        let (ready_tx, ready) = watch::channel(false);
        tokio::spawn(load_repository(
            settings,
            state.clone(),
            ready_tx,
            health.clone(),
        ));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (grpc_shutdown, grpc_stop) = oneshot::channel::<()>();
        let task = serve(listener, http_tls, app(state.clone()), shutdown_rx)?;
        let grpc_router = grpc::router(state.clone(), health_service);
        let grpc_task = serve(grpc_listener, grpc_tls, grpc_router, grpc_stop)?;
        Ok(Self {
            http_addr,
            grpc_addr,
            state,
            ready,
            shutdown: Some(shutdown_tx),
            task,
            grpc_shutdown: Some(grpc_shutdown),
            grpc_task,
            health,
            power_meter,
        })
    }

    /// The address HTTP listens on (with the real port when port 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address gRPC listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Wait until every model has been loaded or has failed to load.
    pub async fn wait_ready(&mut self) {
        let _ = self.ready.wait_for(|ready| *ready).await;
    }

    /// Graceful shutdown: readiness fails and new inference requests are refused at once;
    /// requests already accepted are answered (for up to the drain timeout); then the
    /// listener and connections close.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.state.draining.store(true, Ordering::Release);
        set_health(&self.health, false).await;
        let drain = Duration::from_secs(self.state.settings.drain_timeout_secs);
        let in_flight = self.state.requests_in_flight();
        tracing::info!(in_flight, "draining");
        // Holding every permit of the in-flight limiter means no request is left running.
        let all = self.state.settings.max_concurrent_requests as u32;
        match tokio::time::timeout(drain, self.state.in_flight.acquire_many(all)).await {
            Ok(_) => tracing::info!("drained"),
            Err(_) => tracing::warn!(
                left = self.state.requests_in_flight(),
                "drain timeout reached; closing with requests in flight"
            ),
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.grpc_shutdown.take() {
            let _ = tx.send(());
        }
        self.power_meter.abort();
        // gRPC streams the caller keeps open must not hold the process up.
        if tokio::time::timeout(CONNECTION_CLOSE_GRACE, &mut self.grpc_task)
            .await
            .is_err()
        {
            self.grpc_task.abort();
        }
        // Idle connections close at once; give busy ones a moment, then stop regardless.
        match tokio::time::timeout(CONNECTION_CLOSE_GRACE, &mut self.task).await {
            Ok(result) => result.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                self.task.abort();
                Ok(())
            }
        }
    }

    /// Serve until `signal` completes, then shut down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        signal.await;
        tracing::info!("shutdown signal received");
        self.shutdown().await
    }
}

/// Serve `router` on `listener` (over TLS with a config) until `stop` fires.
fn serve(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    router: axum::Router,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<JoinHandle<std::io::Result<()>>> {
    let stop = async {
        let _ = stop.await;
    };
    Ok(match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)?;
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop)
                    .await
            })
        }
        None => tokio::spawn(async move {
            axum::serve(listener.tap_io(no_delay), router)
                .with_graceful_shutdown(stop)
                .await
        }),
    })
}

/// Answers are small and latency-bound: send each write at once. With Nagle's algorithm, an
/// HTTP/2 (gRPC) answer split over several writes waits on the client's delayed ACK, ~40 ms.
pub(crate) fn no_delay(tcp: &mut TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// After the drain, how long connections get to close before the server stops anyway.
const CONNECTION_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Load every model folder, one after another, each on a blocking thread.
async fn load_repository(
    settings: ServeSettings,
    state: AppState,
    ready: watch::Sender<bool>,
    health: tonic_health::server::HealthReporter,
) {
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
        // A failure is logged and shown in the repository index; the others still load.
        let _ = state.load_entry(entry).await;
    }
    state.ready.store(true, Ordering::Release);
    if !state.is_draining() {
        set_health(&health, true).await;
    }
    let _ = ready.send(true);
}
