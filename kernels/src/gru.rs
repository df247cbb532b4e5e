//! One step of a GRU layer for many sequences at once, the reset gate applied after the
//! hidden state's product (`n = tanh(x·Wₙ + bₙ + r ⊙ (h·Uₙ + b'ₙ))`, Burn's and PyTorch's
//! default). As for the LSTM cell, the caller brings each row's input gates; one GEMM
//! computes the hidden state's share of all three gates, and one vectorised pass applies
//! them, where Burn's layer runs six matrix products and about a dozen element-wise ops
//! with a C-library `expf`/`tanhf` per gate value.

use crate::activation::{sigmoid, tanh};
use crate::error::{KernelError, ensure};
use crate::matmul::{Matrix, matmul};
use crate::simd::simd_dispatch;

/// The gates, in the order of the gate values' column blocks: update, reset, new
/// (candidate).
pub const GATES: usize = 3;

/// A GRU layer's recurrent weights and biases, packed for [`GruCell::step`].
#[derive(Debug, Clone)]
pub struct GruCell {
    hidden: usize,
    /// `[hidden, GATES · hidden]`.
    recurrent: Vec<f32>,
    /// `[GATES · hidden]`: the hidden transforms' biases, which the reset gate scales for
    /// the new gate.
    recurrent_bias: Vec<f32>,
}

impl GruCell {
    /// `recurrent` is `[hidden, GATES · hidden]` (a block of `hidden` columns per gate, in
    /// [`GATES`] order) and `recurrent_bias` `[GATES · hidden]`.
    pub fn new(
        hidden: usize,
        recurrent: Vec<f32>,
        recurrent_bias: Vec<f32>,
    ) -> Result<Self, KernelError> {
        let width = GATES * hidden;
        ensure(hidden > 0, || "a GRU of no hidden values".to_string())?;
        ensure(recurrent.len() == hidden * width, || {
            format!(
                "GRU recurrent weight has {} values, expected {hidden} × {width}",
                recurrent.len()
            )
        })?;
        ensure(recurrent_bias.len() == width, || {
            format!(
                "GRU recurrent bias has {} values for {width} gate values",
                recurrent_bias.len()
            )
        })?;
        Ok(Self {
            hidden,
            recurrent,
            recurrent_bias,
        })
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Advances `rows` sequences by one step. `input_gates` is `[rows, GATES · hidden]`, each
    /// row's input × input weights + input biases; `hidden` is `[rows, hidden]` and is
    /// replaced with the new state.
    pub fn step(
        &self,
        input_gates: &[f32],
        rows: usize,
        hidden: &mut [f32],
    ) -> Result<(), KernelError> {
        let width = GATES * self.hidden;
        ensure(
            input_gates.len() == rows * width && hidden.len() == rows * self.hidden,
            || {
                format!(
                    "GRU step buffers of {} and {} values do not fit {rows} rows of {} hidden \
                     values",
                    input_gates.len(),
                    hidden.len(),
                    self.hidden
                )
            },
        )?;
        if rows == 0 {
            return Ok(());
        }
        let mut recurrent_gates = vec![0.0; rows * width];
        let lhs = Matrix::dense(hidden, rows, self.hidden);
        let rhs = Matrix::dense(&self.recurrent, self.hidden, width);
        matmul(
            &mut recurrent_gates,
            width,
            lhs,
            rhs,
            rayon::current_num_threads(),
        );
        update_hidden(input_gates, &recurrent_gates, &self.recurrent_bias, hidden);
        Ok(())
    }
}

simd_dispatch! {
    /// `h ← (1 − z)·n + z·h` for every row, with `z = σ(xz + hz)`, `r = σ(xr + hr)` and
    /// `n = tanh(xn + r·hn)`, `x·` the input gates and `h·` the hidden state's (plus `bias`).
    fn update_hidden(input_gates: &[f32], recurrent_gates: &[f32], bias: &[f32], hidden: &mut [f32])
        => update_hidden_body
}

// `FUSED` is unused: the dispatch compiles the same loop per instruction set.
#[inline(always)]
fn update_hidden_body<const FUSED: bool>(
    input_gates: &[f32],
    recurrent_gates: &[f32],
    bias: &[f32],
    hidden: &mut [f32],
) {
    let width = bias.len();
    let size = width / GATES;
    let (bz, rest) = bias.split_at(size);
    let (br, bn) = rest.split_at(size);
    for ((x, h_gates), h) in input_gates
        .chunks_exact(width)
        .zip(recurrent_gates.chunks_exact(width))
        .zip(hidden.chunks_exact_mut(size))
    {
        let (xz, rest) = x.split_at(size);
        let (xr, xn) = rest.split_at(size);
        let (hz, rest) = h_gates.split_at(size);
        let (hr, hn) = rest.split_at(size);
        for j in 0..size {
            let update = sigmoid(xz[j] + hz[j] + bz[j]);
            let reset = sigmoid(xr[j] + hr[j] + br[j]);
            let new = tanh(xn[j] + reset * (hn[j] + bn[j]));
            h[j] = (1.0 - update) * new + update * h[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_with_one_hidden_value_follows_the_equations() {
        // hidden 1: recurrent weights and biases for z, r, n; input gates already computed.
        let recurrent = vec![0.5, -1.25, 0.75];
        let bias = vec![0.1, -0.2, 0.3];
        let inputs = [0.4f64, -0.3, 0.2];
        let cell = GruCell::new(1, recurrent.clone(), bias.clone()).unwrap();
        let h0 = -0.6f64;
        let gates: Vec<f32> = inputs.iter().map(|&v| v as f32).collect();
        let mut hidden = vec![h0 as f32];
        cell.step(&gates, 1, &mut hidden).unwrap();
        let share = |gate: usize| h0 * recurrent[gate] as f64 + bias[gate] as f64;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let z = sig(inputs[0] + share(0));
        let r = sig(inputs[1] + share(1));
        let n = (inputs[2] + r * share(2)).tanh();
        let h1 = (1.0 - z) * n + z * h0;
        assert!(
            (hidden[0] as f64 - h1).abs() < 1e-6,
            "{} against {h1}",
            hidden[0]
        );
    }

    #[test]
    fn misfitting_buffers_are_errors() {
        let cell = GruCell::new(2, vec![0.0; 12], vec![0.0; 6]).unwrap();
        let mut h = vec![0.0; 4];
        assert!(cell.step(&[0.0; 11], 2, &mut h).is_err());
        assert!(cell.step(&[0.0; 12], 2, &mut h[..3]).is_err());
        assert!(cell.step(&[0.0; 12], 2, &mut h).is_ok());
        assert!(GruCell::new(2, vec![0.0; 11], vec![0.0; 6]).is_err());
        assert!(GruCell::new(2, vec![0.0; 12], vec![0.0; 5]).is_err());
        assert!(GruCell::new(0, vec![], vec![]).is_err());
    }
}
