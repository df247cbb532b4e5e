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
    /// Folder with one sub-folder per model.
    #[arg(long, env = "KILN_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,
    /// Backend that runs the models (flex, ndarray, wgpu), as compiled in.
    #[arg(long, env = "KILN_BACKEND", default_value = "flex")]
    pub backend: BackendKind,
    /// Largest request body accepted, in bytes (HTTP 413 beyond).
    #[arg(long, env = "KILN_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
}

impl ServeSettings {
    /// Settings for a server on a free loopback port serving `model_repository`.
    pub fn for_tests(model_repository: impl Into<PathBuf>) -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            model_repository: model_repository.into(),
            backend: BackendKind::default(),
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}
