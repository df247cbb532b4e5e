use std::path::PathBuf;

/// Everything that can go wrong inside the model zoo.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid {format} file: {reason}")]
    Format {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("cannot load weights from {path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("backend '{0}' is unknown; choose one of: {1}")]
    UnknownBackend(String, String),
    #[error("backend '{0}' is not compiled into this binary; rebuild with `--features {0}`")]
    BackendNotCompiled(String),
    #[error("no such device: {0}")]
    NoDevice(String),
    #[error("invalid image: {0}")]
    InvalidImage(String),
    #[error("image of {width}x{height} pixels exceeds the limit of {limit} pixels")]
    ImageTooLarge { width: u32, height: u32, limit: u64 },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("CPU kernels: {0}")]
    Kernel(#[from] kiln_kernels::KernelError),
}

impl ZooError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ZooError> = std::result::Result<T, E>;
