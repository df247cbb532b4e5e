//! GPU devices (wgpu and CUDA, both run by CubeCL): picking one by index without panicking
//! when it is missing, naming it, and keeping compiled kernels and autotune results on disk.

use std::path::Path;

use burn::prelude::Device;

use crate::error::ZooError;

/// wgpu adapter number `index` in the order wgpu lists them, or wgpu's default adapter.
#[cfg(feature = "wgpu")]
pub(crate) fn wgpu_device(index: Option<usize>) -> Result<Device, ZooError> {
    use burn::tensor::{DeviceKind, DeviceType};
    let device = match index {
        None => Device::wgpu(DeviceKind::DefaultDevice),
        Some(i) => {
            let devices = quietly(|| Device::enumerate(DeviceType::Wgpu).into_vec())
                .map_err(|reason| ZooError::NoDevice(format!("wgpu: {reason}")))?;
            devices.into_iter().nth(i).ok_or_else(|| {
                ZooError::NoDevice(format!("wgpu lists no adapter with index {i}"))
            })?
        }
    };
    // Opening the adapter is where a machine without one fails.
    opened(device, "wgpu")
}

/// CUDA device number `index` (0 by default). The CUDA driver library is loaded at run time,
/// so a build with CUDA runs on machines without it and fails here, not at start-up.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_device(index: Option<usize>) -> Result<Device, ZooError> {
    use burn::tensor::DeviceType;
    let i = index.unwrap_or(0);
    let count = quietly(|| Device::enumerate(DeviceType::Cuda).into_vec().len())
        .map_err(|reason| ZooError::NoDevice(format!("CUDA: {reason}")))?;
    if i >= count {
        return Err(ZooError::NoDevice(format!(
            "CUDA sees {count} device(s); there is no device {i}"
        )));
    }
    opened(Device::cuda(i), "CUDA")
}

/// The device once it has answered who it is, which makes the runtime open it.
#[allow(dead_code)] // unused without a GPU backend
fn opened(device: Device, backend: &str) -> Result<Device, ZooError> {
    let probe = device.clone();
    quietly(move || device_name(&probe))
        .map_err(|reason| ZooError::NoDevice(format!("{backend}: {reason}")))?;
    Ok(device)
}

/// What the device calls itself (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`), for logs
/// and for the `device` label of metrics. CPU backends answer `cpu`.
pub fn device_name(device: &Device) -> String {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if let Some(identity) = device.identity() {
        return identity.name;
    }
    let _ = device;
    "cpu".to_string()
}

/// Run `f`, turning a panic into an error with its message and keeping the panic report off
/// stderr: GPU runtimes panic when a driver library or adapter is missing, and the caller
/// reports that as a plain error instead.
#[allow(dead_code)] // unused without a GPU backend
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // Nothing of `f`'s is used after a panic but its message.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the runtime failed to start".to_string())
    })
}

/// Keep CubeCL's compiled kernels and autotune results under `dir`, so a restart reuses
/// them instead of compiling and benchmarking again. Must run before the first GPU device is
/// opened; returns false (and changes nothing) when the GPU runtime is already configured.
/// A no-op that returns true in builds without a GPU backend.
pub fn use_kernel_cache_dir(dir: &Path) -> Result<bool, ZooError> {
    std::fs::create_dir_all(dir).map_err(|e| ZooError::io(dir, e))?;
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.environment.path = CacheConfig::Directory(dir.to_path_buf());
        Ok(CubeClRuntimeConfig::try_set(config))
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    Ok(true)
}

/// Bytes the device's memory pools hold now (in use plus kept for reuse); `None` on backends
/// that do not pool device memory (the CPU ones).
pub fn reserved_bytes(device: &Device) -> Option<u64> {
    device.memory_pool_usage().map(|usage| usage.bytes_reserved)
}
