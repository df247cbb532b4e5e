//! The zoo's Burn layers converted for Kiln's CPU kernels (`kiln-kernels`): weights read
//! out of the modules once, batch norm folded into the convolution before it. Each network
//! describes its own graph next to its `forward` (`cpu_network`), so the Burn module stays
//! the one definition of the architecture and its weights.

use burn::nn::GateController;
use burn::nn::conv::Conv2d;
use burn::nn::gru::Gru;
use burn::nn::lstm::Lstm;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use kiln_kernels::conv::{self, ConvGeometry, Padding};
use kiln_kernels::linear;
use kiln_kernels::pool::{Pool2d, PoolKind};

pub use kiln_kernels::Activation;
pub use kiln_kernels::gru::GruCell;
pub use kiln_kernels::lstm::LstmCell;
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

/// A tensor's values as f32, in order: weights read out for the CPU kernels, or states and
/// outputs moved between Burn's tensors and the kernels' rows.
pub(crate) fn floats<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| ZooError::InvalidInput(format!("cannot read a tensor's values: {e:?}")))
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

/// A recurrent layer's weights for Kiln's CPU kernels: the input weights of its gates side
/// by side with their biases, which the caller applies to its inputs as suits it (a
/// decoder can look a word's share up in a table, or keep an image's per sequence), and
/// the recurrent weights in the layer's cell.
#[derive(Debug, Clone)]
pub struct CpuRecurrent<Cell> {
    /// `[inputs, gates · hidden]`.
    pub input_weight: Vec<f32>,
    /// `[gates · hidden]`.
    pub bias: Vec<f32>,
    pub cell: Cell,
}

/// The gates' input and hidden transforms packed side by side, gate after gate:
/// `(input weight [inputs, gates · hidden], input bias, recurrent weight [hidden,
/// gates · hidden], recurrent bias)`.
type Packed = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn pack_gates(gates: &[&GateController], hidden: usize) -> Result<Packed> {
    let inputs = gates[0].input_transform.weight.dims()[0];
    let width = gates.len() * hidden;
    let mut packed: Packed = (
        vec![0.0; inputs * width],
        vec![0.0; width],
        vec![0.0; hidden * width],
        vec![0.0; width],
    );
    let (input_weight, input_bias, recurrent, recurrent_bias) = &mut packed;
    for (g, gate) in gates.iter().enumerate() {
        for (weight, bias, transform, rows) in [
            (
                &mut *input_weight,
                &mut *input_bias,
                &gate.input_transform,
                inputs,
            ),
            (
                &mut *recurrent,
                &mut *recurrent_bias,
                &gate.hidden_transform,
                hidden,
            ),
        ] {
            let values = floats(transform.weight.val())?;
            if values.len() != rows * hidden {
                return Err(ZooError::InvalidInput(format!(
                    "a recurrent transform of {} weights where {rows}×{hidden} were expected",
                    values.len()
                )));
            }
            for (r, row) in values.chunks_exact(hidden).enumerate() {
                let at = r * width + g * hidden;
                weight[at..at + hidden].copy_from_slice(row);
            }
            if let Some(b) = &transform.bias {
                bias[g * hidden..(g + 1) * hidden].copy_from_slice(&floats(b.val())?);
            }
        }
    }
    Ok(packed)
}

/// [`CpuRecurrent`] from a plain LSTM layer (a forget gate, sigmoid gates, tanh cell and
/// hidden activations, no clipping), which is what Kiln's models build; others are refused.
/// The input and hidden transforms' biases are summed into `bias`.
pub fn lstm(layer: &Lstm) -> Result<CpuRecurrent<LstmCell>> {
    use burn::nn::activation::Activation as Act;
    let plain = matches!(layer.gate_activation, Act::Sigmoid(_))
        && matches!(layer.cell_activation, Act::Tanh(_))
        && matches!(layer.hidden_activation, Act::Tanh(_))
        && layer.clip.is_none();
    let forget = layer
        .forget_gate
        .as_ref()
        .filter(|_| plain)
        .ok_or_else(|| {
            ZooError::InvalidInput("the CPU kernels take plain LSTM layers only".into())
        })?;
    let gates = [
        &layer.input_gate,
        forget,
        &layer.cell_gate,
        &layer.output_gate,
    ];
    let (input_weight, mut bias, recurrent, recurrent_bias) = pack_gates(&gates, layer.d_hidden)?;
    bias.iter_mut()
        .zip(recurrent_bias)
        .for_each(|(b, r)| *b += r);
    Ok(CpuRecurrent {
        input_weight,
        bias,
        cell: LstmCell::new(layer.d_hidden, recurrent)?,
    })
}

/// [`CpuRecurrent`] from a plain GRU layer (the reset gate after the hidden product,
/// sigmoid gates, a tanh candidate, no clipping); `bias` is the input transforms' only,
/// as the reset gate scales the hidden ones.
pub fn gru(layer: &Gru) -> Result<CpuRecurrent<GruCell>> {
    use burn::nn::activation::Activation as Act;
    let plain = layer.reset_after
        && matches!(layer.gate_activation, Act::Sigmoid(_))
        && matches!(layer.hidden_activation, Act::Tanh(_))
        && layer.clip.is_none();
    if !plain {
        return Err(ZooError::InvalidInput(
            "the CPU kernels take plain GRU layers only".into(),
        ));
    }
    let gates = [&layer.update_gate, &layer.reset_gate, &layer.new_gate];
    let (input_weight, bias, recurrent, recurrent_bias) = pack_gates(&gates, layer.d_hidden)?;
    Ok(CpuRecurrent {
        input_weight,
        bias,
        cell: GruCell::new(layer.d_hidden, recurrent, recurrent_bias)?,
    })
}
