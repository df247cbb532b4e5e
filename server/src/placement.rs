//! Where a model runs: its backend, the device index on it, and how much device memory its
//! batches may fill. GPU runtimes are prepared here before any device opens.

use std::path::{Path, PathBuf};

use kiln_zoo::{BackendKind, Device, ZooError};

use crate::settings::ServeSettings;

/// Share of a card's memory Kiln fills by default, leaving room for the runtime's own use.
const DEFAULT_MEMORY_SHARE: f64 = 0.9;

/// A backend, a device on it, and the memory budget of that device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub backend: BackendKind,
    pub device: Option<usize>,
    /// Bytes of device memory batches may fill; `None` for no limit.
    pub memory_limit_bytes: Option<u64>,
}

impl Placement {
    /// The server-wide default from `kiln serve`'s flags.
    pub fn from_settings(settings: &ServeSettings) -> Self {
        Self {
            backend: settings.backend,
            device: settings.device,
            memory_limit_bytes: settings.device_memory_limit_mb.map(|mb| mb << 20),
        }
    }

    /// Where one model runs: its `model.toml` may name its own backend and device. The
    /// memory limit, unless given, is a share of the card's memory where NVML reports it.
    pub fn for_model(&self, backend: Option<BackendKind>, device: Option<usize>) -> Self {
        let backend = backend.unwrap_or(self.backend);
        let device = device.or(self.device);
        let memory_limit_bytes = self.memory_limit_bytes.or_else(|| {
            (backend == BackendKind::Cuda)
                .then(|| card_memory_bytes(device.unwrap_or(0)))
                .flatten()
                .map(|bytes| (bytes as f64 * DEFAULT_MEMORY_SHARE) as u64)
        });
        Self {
            backend,
            device,
            memory_limit_bytes,
        }
    }

    pub fn open(&self) -> Result<Device, ZooError> {
        self.backend.device_at(self.device)
    }
}

/// Before any model loads: name the CPU compute threads, point GPU runtimes at the kernel
/// cache (for models that name their own GPU backend too), then open the default device
/// once, so a missing backend, GPU or driver, or a device index that does not exist, stops
/// `kiln serve` with one clear message instead of failing every model.
pub fn prepare(settings: &ServeSettings) -> Result<(), ZooError> {
    // Before any model loads and uses the CPU pool, so its threads carry Kiln's name.
    kiln_kernels::name_compute_threads();
    let cache = settings
        .kernel_cache_dir
        .clone()
        .unwrap_or_else(default_kernel_cache_dir);
    let gpu_compiled = BackendKind::compiled()
        .into_iter()
        .any(BackendKind::compiles_kernels_per_shape);
    if gpu_compiled {
        use_kernel_cache(&cache);
    }
    let device = Placement::from_settings(settings).open()?;
    if settings.backend.compiles_kernels_per_shape() {
        tracing::info!(
            backend = %settings.backend,
            device = %kiln_zoo::gpu::device_name(&device),
            kernel_cache = %cache.display(),
            "GPU device opened"
        );
    }
    Ok(())
}

/// The cache only saves start-up time, so a folder that cannot be used is reported and the
/// GPU runtime keeps its own default place.
fn use_kernel_cache(dir: &Path) {
    match kiln_zoo::gpu::use_kernel_cache_dir(dir) {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                "the GPU runtime was configured earlier; the kernel cache stays where it was"
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "kernel cache folder unusable; using the GPU runtime's default")
        }
    }
}

/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`, else a folder under the temp dir.
fn default_kernel_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kiln")
}

/// Total memory of NVIDIA card `index`, as NVML reports it.
#[cfg(feature = "nvml")]
fn card_memory_bytes(index: usize) -> Option<u64> {
    let nvml = nvml_wrapper::Nvml::init().ok()?;
    let device = nvml.device_by_index(index as u32).ok()?;
    device.memory_info().ok().map(|m| m.total)
}

#[cfg(not(feature = "nvml"))]
fn card_memory_bytes(_index: usize) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_may_override_backend_and_device() {
        let server = Placement {
            backend: BackendKind::Flex,
            device: Some(1),
            memory_limit_bytes: Some(1 << 30),
        };
        let model = server.for_model(Some(BackendKind::Ndarray), Some(0));
        assert_eq!(model.backend, BackendKind::Ndarray);
        assert_eq!(model.device, Some(0));
        assert_eq!(model.memory_limit_bytes, Some(1 << 30));
        assert_eq!(server.for_model(None, None), server);
    }

    #[test]
    fn cpu_backends_have_one_device() {
        let placement = Placement {
            backend: BackendKind::Flex,
            device: Some(3),
            memory_limit_bytes: None,
        };
        let err = placement.open().unwrap_err().to_string();
        assert!(err.contains("no device 3"), "{err}");
    }
}
