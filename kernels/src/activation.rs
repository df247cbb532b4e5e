//! The element-wise tail of a layer, applied to each output tile while it is in cache.

use crate::simd::simd_dispatch;

/// The non-linearity after a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    /// `min(max(x, 0), 6)`: MobileNet's and EfficientNet-Lite's.
    Relu6,
}

impl Activation {
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
        }
    }
}

/// What is applied to a tile after its matrix product: `act(tile + bias [+ residual])`,
/// or `act(tile + bias) + residual` when the residual comes after the activation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub activation: Activation,
    pub residual_after_activation: bool,
}

impl Epilogue<'_> {
    /// One output value `x` (bias included) with its residual `skip`.
    #[inline(always)]
    pub fn with_residual(&self, x: f32, skip: f32) -> f32 {
        if self.residual_after_activation {
            self.activation.apply(x) + skip
        } else {
            self.activation.apply(x + skip)
        }
    }
}

simd_dispatch! {
    /// Adds the bias (and the residual rows, `rows × bias.len()` contiguous values) to
    /// `rows` rows of `out` (row stride `stride`) and applies the activation.
    pub(crate) fn apply_epilogue(
        out: &mut [f32],
        rows: usize,
        stride: usize,
        residual: Option<&[f32]>,
        epilogue: Epilogue<'_>,
    ) => apply_epilogue_body
}

#[inline(always)]
// `FUSED` is unused: no multiply here, but the dispatch compiles the loop per instruction set.
fn apply_epilogue_body<const FUSED: bool>(
    out: &mut [f32],
    rows: usize,
    stride: usize,
    residual: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) {
    let channels = epilogue.bias.len();
    let activation = epilogue.activation;
    for r in 0..rows {
        let row = &mut out[r * stride..r * stride + channels];
        match residual {
            Some(residual) => {
                let skip = &residual[r * channels..(r + 1) * channels];
                for ((o, &b), &s) in row.iter_mut().zip(epilogue.bias).zip(skip) {
                    *o = epilogue.with_residual(*o + b, s);
                }
            }
            None => {
                for (o, &b) in row.iter_mut().zip(epilogue.bias) {
                    *o = activation.apply(*o + b);
                }
            }
        }
    }
}
