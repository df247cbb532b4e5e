//! The zoo's Burn layers converted for Kiln's CPU kernels (`kiln-kernels`): weights read
//! out of the modules once, batch norm folded into the convolution before it. Each network
//! describes its own graph next to its `forward` (`cpu_network`), so the Burn module stays
//! the one definition of the architecture and its weights.

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use kiln_kernels::conv::{self, ConvGeometry, Padding};
use kiln_kernels::linear;
use kiln_kernels::pool::{Pool2d, PoolKind};

pub use kiln_kernels::Activation;
pub use kiln_kernels::network::{Network, NetworkBuilder, Value};

use crate::error::{Result, ZooError};

/// Whether Kiln's CPU kernels run networks on `device`: the flex CPU backend's (ndarray,
/// kept for comparison, keeps Burn's ops), unless `KILN_CPU_KERNELS=off` (or `0`) asks for
/// Burn's ops everywhere, to compare the two paths.
pub fn kernels_apply(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return !kernels_disabled();
    }
    let _ = device;
    false
}

/// `KILN_CPU_KERNELS=off`, read once: GELU asks on every decoding step.
#[cfg(feature = "flex")]
fn kernels_disabled() -> bool {
    static DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DISABLED.get_or_init(|| {
        std::env::var("KILN_CPU_KERNELS").is_ok_and(|v| v.eq_ignore_ascii_case("off") || v == "0")
    })
}

fn floats<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| {
            ZooError::InvalidInput(format!("cannot read weights for the CPU kernels: {e:?}"))
        })
}

fn padding(config: &PaddingConfig2d) -> Padding {
    match *config {
        PaddingConfig2d::Same => Padding::Same,
        PaddingConfig2d::Valid => Padding::symmetric(0, 0),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Padding::Explicit {
            top,
            bottom,
            left,
            right,
        },
    }
}

fn batch_norm(bn: &BatchNorm) -> Result<conv::BatchNorm> {
    Ok(conv::BatchNorm {
        gamma: floats(bn.gamma.val())?,
        beta: floats(bn.beta.val())?,
        mean: floats(bn.running_mean.value())?,
        var: floats(bn.running_var.value())?,
        epsilon: bn.epsilon,
    })
}

/// A convolution, the batch norm after it (folded in) and its activation.
pub fn conv(conv: &Conv2d, bn: Option<&BatchNorm>, activation: Activation) -> Result<conv::Conv2d> {
    let [out_channels, in_per_group, kh, kw] = conv.weight.dims();
    let geometry = ConvGeometry {
        in_channels: in_per_group * conv.groups,
        out_channels,
        kernel: [kh, kw],
        stride: conv.stride,
        dilation: conv.dilation,
        padding: padding(&conv.padding),
        groups: conv.groups,
    };
    let weight = floats(conv.weight.val())?;
    let bias = conv.bias.as_ref().map(|b| floats(b.val())).transpose()?;
    let bn = bn.map(batch_norm).transpose()?;
    Ok(conv::Conv2d::new(
        geometry,
        &weight,
        bias.as_deref(),
        bn.as_ref(),
        activation,
    )?)
}

pub fn max_pool(pool: &MaxPool2d) -> Result<Pool2d> {
    let padding = match pool.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, bottom, left, right],
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Same => {
            return Err(ZooError::InvalidInput(
                "the CPU kernels take explicit max-pool padding".into(),
            ));
        }
    };
    if pool.dilation != [1, 1] {
        return Err(ZooError::InvalidInput(
            "the CPU kernels take undilated max pools".into(),
        ));
    }
    Ok(Pool2d {
        kind: PoolKind::Max,
        kernel: pool.kernel_size,
        stride: pool.stride,
        padding,
        ceil_mode: pool.ceil_mode,
    })
}

pub fn linear(layer: &Linear, activation: Activation) -> Result<linear::Linear> {
    let [inputs, outputs] = layer.weight.dims();
    let weight = floats(layer.weight.val())?;
    let bias = layer.bias.as_ref().map(|b| floats(b.val())).transpose()?;
    Ok(linear::Linear::new(
        inputs,
        outputs,
        &weight,
        bias.as_deref(),
        activation,
    )?)
}

/// A dense layer that follows a flatten of `[channels, height, width]` activations.
pub fn linear_after_flatten(
    layer: &Linear,
    chw: [usize; 3],
    activation: Activation,
) -> Result<linear::Linear> {
    let [_, outputs] = layer.weight.dims();
    let weight = floats(layer.weight.val())?;
    let bias = layer.bias.as_ref().map(|b| floats(b.val())).transpose()?;
    Ok(linear::Linear::after_nchw_flatten(
        chw,
        outputs,
        &weight,
        bias.as_deref(),
        activation,
    )?)
}
