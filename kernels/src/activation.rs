//! The element-wise tail of a layer, applied to each output tile while it is in cache.

use crate::simd::simd_dispatch;
use crate::softmax::exp;

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

/// `1 / (1 + e^−x)`: 0 and 1 at the extremes, NaN stays NaN.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `1 − 2 / (1 + e^2x)`: ±1 at the extremes (`exp` saturates rather than overflow), within a
/// few `1e-7` of the exact value near 0, NaN stays NaN.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_and_tanh_are_within_2e7_of_the_exact_values() {
        let mut x = -40.0f32;
        while x < 40.0 {
            let sig = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - sig).abs() <= 2e-7, "sigmoid({x})");
            assert!(
                (tanh(x) as f64 - (x as f64).tanh()).abs() <= 2e-7,
                "tanh({x})"
            );
            x += 0.0123;
        }
        for (x, s, t) in [
            (f32::INFINITY, 1.0, 1.0),
            (f32::NEG_INFINITY, 0.0, -1.0),
            (200.0, 1.0, 1.0),
            (-200.0, 0.0, -1.0),
        ] {
            assert_eq!((sigmoid(x), tanh(x)), (s, t), "at {x}");
        }
        assert!(sigmoid(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
    }
}
