//! Starting and stopping a server: bind, serve HTTP and gRPC at once (liveness), load the
//! model repository in the background, then report ready; on shutdown, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::energy::PowerMeter;
use crate::grpc::{self, set_health};
use crate::http::{AppState, app};
use crate::metrics::Metrics;
use crate::net::{ClosableListener, ListenerGate};
use crate::registry::{Lifecycle, Phase};
use crate::settings::ServeSettings;
use crate::tls::{self, TlsError};

/// After the drain, how long the last connections get to be answered and to close before
/// the server stops anyway.
const CONNECTION_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How often histogram samples are folded into their buckets when nobody scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// A server running on the current tokio runtime.
pub struct RunningServer {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    state: AppState,
    listeners: ListenerGate,
    http: Serving,
    grpc: Serving,
    background: Vec<JoinHandle<()>>,
}

/// One protocol's serving task and the signal that stops it.
struct Serving {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Bind the HTTP and gRPC addresses (TLS when a certificate is configured), start
    /// serving, and begin loading the models.
    pub async fn start(settings: ServeSettings) -> Result<Self, StartError> {
        let tls_config = |protocol| match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => tls::load_config(cert, key, protocol).map(Some),
            _ => Ok(None),
        };
        let (http_tls, grpc_tls) = (tls_config(tls::HTTP1)?, tls_config(tls::HTTP2)?);
        let listeners = ListenerGate::default();
        let http_listener = ClosableListener::new(
            TcpListener::bind(settings.http_addr).await?,
            listeners.clone(),
        )?;
        let grpc_listener = ClosableListener::new(
            TcpListener::bind(settings.grpc_addr).await?,
            listeners.clone(),
        )?;
        let (http_addr, grpc_addr) = (http_listener.local_addr(), grpc_listener.local_addr());
        let state = AppState::new(settings.clone());
        let meter = PowerMeter::detect(settings.estimated_watts_per_core);
        let interval = Duration::from_millis(settings.power_sample_ms.max(1));
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, false).await;
        // Marked before this returns, so loads and unloads asked for from now on are
        // ordered with the start-up's.
        let startup = state.registry.begin_startup();
        let registry = state.registry.clone();
        let lifecycle = state.lifecycle.clone();
        let background = vec![
            tokio::spawn(meter.run(state.metrics.clone(), interval)),
            tokio::spawn(upkeep(state.metrics.clone())),
            tokio::spawn(follow_health(state.lifecycle.clone(), health)),
            tokio::spawn(async move {
                registry.load_startup(startup).await;
                lifecycle.serve();
            }),
        ];
        let http = serve(
            http_listener,
            http_tls,
            app(state.clone(), other_apis(&state)),
        );
        let grpc = serve(
            grpc_listener,
            grpc_tls,
            grpc::router(state.clone(), health_service),
        );
        Ok(Self {
            http_addr,
            grpc_addr,
            state,
            listeners,
            http,
            grpc,
            background,
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
        self.state.lifecycle.loaded().await;
    }

    /// Graceful shutdown: readiness fails and new inference requests are refused at once;
    /// requests already accepted are answered (for up to the drain timeout); connections the
    /// kernel accepted meanwhile are answered 503 with `Connection: close`; then the
    /// listeners and connections close.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.state.lifecycle.drain();
        let drain = Duration::from_secs(self.state.settings.drain_timeout_secs);
        tracing::info!(in_flight = self.state.requests_in_flight(), "draining");
        match tokio::time::timeout(drain, self.state.in_flight.emptied()).await {
            Ok(()) => tracing::info!("drained"),
            Err(_) => tracing::warn!(
                left = self.state.requests_in_flight(),
                "drain timeout reached; closing with requests in flight"
            ),
        }
        self.listeners.close();
        if tokio::time::timeout(CONNECTION_CLOSE_GRACE, self.listeners.closed())
            .await
            .is_err()
        {
            tracing::warn!("connections taken while closing were not all answered in time");
        }
        for task in &self.background {
            task.abort();
        }
        // gRPC streams the caller keeps open must not hold the process up.
        let _ = self.grpc.stop().await;
        // Idle connections close at once; give busy ones a moment, then stop regardless.
        self.http.stop().await
    }

    /// Serve until `signal` completes, then shut down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        signal.await;
        tracing::info!("shutdown signal received");
        self.shutdown().await
    }
}

impl Serving {
    /// Stop accepting, let open connections finish within the grace period, then stop.
    async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(CONNECTION_CLOSE_GRACE, &mut self.task).await {
            Ok(result) => result.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                self.task.abort();
                Ok(())
            }
        }
    }
}

/// Serve `router` on `listener` (over TLS with a config) until stopped.
fn serve(
    listener: ClosableListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    router: axum::Router,
) -> Serving {
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let task = match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config);
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
        None => tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        }),
    };
    Serving {
        stop: Some(stop),
        task,
    }
}

/// gRPC health reports the lifecycle: serving only while the server is.
async fn follow_health(lifecycle: Lifecycle, health: tonic_health::server::HealthReporter) {
    let mut phase = lifecycle.watch();
    loop {
        let serving = *phase.borrow_and_update() == Phase::Serving;
        set_health(&health, serving).await;
        if phase.changed().await.is_err() {
            return;
        }
    }
}

/// Fold histogram samples into their buckets every few seconds, whether or not anyone
/// scrapes `/metrics`.
async fn upkeep(metrics: Arc<Metrics>) {
    let mut ticker = tokio::time::interval(METRICS_UPKEEP);
    loop {
        ticker.tick().await;
        metrics.run_upkeep();
    }
}

/// The APIs served beside the HTTP API on its port: OpenAI's, and the playground unless it
/// is turned off.
fn other_apis(state: &AppState) -> axum::Router<AppState> {
    let apis = crate::openai::router(state);
    if state.settings.no_playground {
        apis
    } else {
        apis.merge(crate::playground::router(state))
    }
}
