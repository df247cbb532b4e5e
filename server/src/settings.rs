//! Server settings, built from flags and their environment-variable twins, or directly in
//! tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use kiln_zoo::BackendKind;

/// Everything `kiln serve` needs to know.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeSettings {
    /// Address for HTTP (REST API and /metrics). Port 0 picks a free port.
    #[arg(long, env = "KILN_HTTP_ADDR", default_value = "0.0.0.0:8000")]
    pub http_addr: SocketAddr,
    /// Address for gRPC (the Open Inference Protocol, kiln.v1, health, reflection). Port 0
    /// picks a free port.
    #[arg(long, env = "KILN_GRPC_ADDR", default_value = "0.0.0.0:8001")]
    pub grpc_addr: SocketAddr,
    /// Folder with one sub-folder per model.
    #[arg(long, env = "KILN_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,
    /// Backend that runs the models (flex, ndarray, wgpu, cuda), as compiled in.
    #[arg(long, env = "KILN_BACKEND", default_value = "flex")]
    pub backend: BackendKind,
    /// Device index for the backend: the CUDA device number, or the wgpu adapter's place in
    /// wgpu's list. The backend's default device when unset.
    #[arg(long, env = "KILN_DEVICE")]
    pub device: Option<usize>,
    /// Device memory a GPU backend may fill, in MiB: each classifier's largest batch is
    /// lowered until its warm-up stays within it. Defaults to 90% of the card's memory
    /// where NVML can tell (CUDA); unlimited otherwise.
    #[arg(long, env = "KILN_DEVICE_MEMORY_LIMIT_MB")]
    pub device_memory_limit_mb: Option<u64>,
    /// Where GPU backends keep compiled kernels and autotune results across restarts.
    /// `$XDG_CACHE_HOME/kiln` (or `~/.cache/kiln`) when unset.
    #[arg(long, env = "KILN_KERNEL_CACHE_DIR")]
    pub kernel_cache_dir: Option<PathBuf>,
    /// Largest request body (or gRPC message) accepted, in bytes (HTTP 413 beyond).
    #[arg(long, env = "KILN_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Inference requests in flight across all models beyond which new ones get HTTP 429.
    #[arg(long, env = "KILN_MAX_CONCURRENT_REQUESTS", default_value_t = 4096)]
    pub max_concurrent_requests: usize,
    /// Deadline for a request that sets none (header `kiln-timeout-ms`); HTTP 504 after it.
    #[arg(long, env = "KILN_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take before the process exits.
    #[arg(long, env = "KILN_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// API keys accepted as `Authorization: Bearer <key>` (comma-separated in the env var).
    /// With none, the API is open.
    #[arg(
        long = "api-key",
        env = "KILN_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Require the API key for the health routes too (public by default, for probes).
    #[arg(long, env = "KILN_AUTH_HEALTH")]
    pub auth_health: bool,
    /// Require the API key for /metrics too (public by default, for scrapers).
    #[arg(long, env = "KILN_AUTH_METRICS")]
    pub auth_metrics: bool,
    /// Serve no web playground at `/` (and no stats feed for it).
    #[arg(long, env = "KILN_NO_PLAYGROUND")]
    pub no_playground: bool,
    /// How often power is sampled, in milliseconds.
    #[arg(long, env = "KILN_POWER_SAMPLE_MS", default_value_t = 1000)]
    pub power_sample_ms: u64,
    /// Watts one CPU core draws at full load, for the power estimate used when neither NVML
    /// nor RAPL can be read (reported with `source="estimate"`).
    #[arg(long, env = "KILN_ESTIMATED_WATTS_PER_CORE", default_value_t = 10.0)]
    pub estimated_watts_per_core: f64,
    /// PEM certificate chain; with --tls-key, HTTP and gRPC are served over TLS.
    #[arg(long, env = "KILN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "KILN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ServeSettings {
    /// Settings for a server on a free loopback port serving `model_repository`.
    pub fn for_tests(model_repository: impl Into<PathBuf>) -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            model_repository: model_repository.into(),
            backend: BackendKind::default(),
            device: None,
            device_memory_limit_mb: None,
            kernel_cache_dir: None,
            max_body_bytes: 16 * 1024 * 1024,
            max_concurrent_requests: 4096,
            request_timeout_ms: 30_000,
            drain_timeout_secs: 30,
            api_keys: Vec::new(),
            auth_health: false,
            auth_metrics: false,
            no_playground: false,
            tls_cert: None,
            tls_key: None,
            power_sample_ms: 1000,
            estimated_watts_per_core: 10.0,
        }
    }
}
