//! Which Burn backend runs a model. Backends are compiled in by cargo features and picked at
//! run time by name.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Device;

use crate::error::ZooError;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use crate::gpu;

/// A Burn backend that Kiln knows how to run.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend: Kiln's default.
    #[default]
    Flex,
    /// Burn's older ndarray CPU backend, kept for comparison.
    Ndarray,
    /// GPU (or software Vulkan) through wgpu.
    Wgpu,
    /// NVIDIA GPUs through CUDA (the driver library is loaded at run time).
    Cuda,
}

impl BackendKind {
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Flex,
        BackendKind::Ndarray,
        BackendKind::Wgpu,
        BackendKind::Cuda,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::Ndarray => cfg!(feature = "ndarray"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Whether the backend compiles (and autotunes) kernels for each new tensor shape: its
    /// batches are padded to a few sizes that are all compiled before the model is ready.
    pub fn compiles_kernels_per_shape(self) -> bool {
        matches!(self, BackendKind::Wgpu | BackendKind::Cuda)
    }

    /// The backends this binary can run.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The backend's default device, or an error naming the missing cargo feature.
    pub fn device(self) -> Result<Device, ZooError> {
        self.device_at(None)
    }

    /// Device number `index` of this backend (its default device for `None`). CPU backends
    /// have one device, 0. An index with no device behind it, or a GPU backend on a machine
    /// without that GPU, is an error rather than a panic later.
    pub fn device_at(self, index: Option<usize>) -> Result<Device, ZooError> {
        match self {
            #[cfg(feature = "flex")]
            BackendKind::Flex => cpu_device(self, index, Device::flex),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // kept only to compare against flex
            BackendKind::Ndarray => cpu_device(self, index, Device::ndarray),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => gpu::wgpu_device(index),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => gpu::cuda_device(index),
            #[allow(unreachable_patterns)]
            other => Err(ZooError::BackendNotCompiled(other.name().to_string())),
        }
    }
}

#[allow(dead_code)] // unused when no CPU backend is compiled in
fn cpu_device(
    backend: BackendKind,
    index: Option<usize>,
    device: impl FnOnce() -> Device,
) -> Result<Device, ZooError> {
    match index {
        None | Some(0) => Ok(device()),
        Some(i) => Err(ZooError::NoDevice(format!(
            "the {backend} backend has one device, 0; there is no device {i}"
        ))),
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = ZooError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|b| b.name()).collect();
                ZooError::UnknownBackend(s.to_string(), names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_case_insensitively() {
        assert_eq!("FLEX".parse::<BackendKind>().unwrap(), BackendKind::Flex);
        assert!("tpu".parse::<BackendKind>().is_err());
    }

    #[test]
    fn default_backend_is_compiled() {
        assert!(BackendKind::default().device().is_ok());
    }
}
