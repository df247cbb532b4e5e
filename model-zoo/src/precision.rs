//! The float type a model computes in. Weights are stored in f32; a half-precision model
//! has its parameters cast once at load, takes its input in that type and hands back f32.

use std::fmt;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ZooError};
use crate::gpu::device_name;

/// Float precision of a model's parameters and activations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// IEEE half: 10-bit mantissa, range to 65504.
    F16,
    /// bfloat16: f32's range with a 7-bit mantissa.
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    pub fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// An error unless `device` can compute (not only store) in this precision: Vulkan
    /// devices often store bf16 without arithmetic on it, which would give garbage.
    pub fn check_supported(self, device: &Device) -> Result<()> {
        if device.supports_dtype(self.float_dtype()) {
            Ok(())
        } else {
            Err(ZooError::InvalidInput(format!(
                "the device '{}' cannot compute in {self}; use another precision or backend",
                device_name(device)
            )))
        }
    }

    /// `module` with every float parameter and buffer cast to this precision.
    pub fn cast_module<M: Module>(self, module: M) -> M {
        if self == Precision::F32 {
            return module;
        }
        module.map(&mut CastFloats(self.float_dtype()))
    }

    /// `tensor`, computed in f32, in this precision (a model's input).
    pub fn cast<const D: usize>(self, tensor: Tensor<D>) -> Tensor<D> {
        self.cast_from(Precision::F32, tensor)
    }

    /// `tensor`, computed in `from`, in this precision; no operation when they are the same.
    pub fn cast_from<const D: usize>(self, from: Precision, tensor: Tensor<D>) -> Tensor<D> {
        if self == from {
            tensor
        } else {
            tensor.cast(self.float_dtype())
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = ZooError;

    fn from_str(s: &str) -> Result<Self> {
        [Precision::F32, Precision::F16, Precision::Bf16]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                ZooError::InvalidInput(format!(
                    "precision '{s}' is unknown; choose f32, f16 or bf16"
                ))
            })
    }
}

/// Casts float parameters, and running statistics such as batch norm's, which Burn maps as
/// float parameters too.
struct CastFloats(FloatDType);

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|tensor| tensor.cast(dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::DType;

    #[test]
    fn names_parse_back() {
        for p in [Precision::F32, Precision::F16, Precision::Bf16] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("fp8".parse::<Precision>().is_err());
    }

    #[test]
    fn casting_a_module_casts_its_parameters() {
        let device = crate::BackendKind::default().device().unwrap();
        let linear = burn::nn::LinearConfig::new(3, 2).init(&device);
        let half = Precision::F16.cast_module(linear);
        assert_eq!(half.weight.val().dtype(), DType::F16);
        assert_eq!(half.bias.unwrap().val().dtype(), DType::F16);
    }
}
