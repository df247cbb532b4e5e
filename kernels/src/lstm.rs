//! One step of an LSTM layer for many sequences at once. Burn's layer computes a step as
//! eight matrix products and about fifteen element-wise ops, each a new tensor, with one
//! scalar `expf`/`tanhf` call per gate value. Here the caller brings each row's input
//! gates (the input's product with the input weights, plus the biases: a decoder can
//! look them up or keep them per sequence rather than recompute them), the hidden
//! state's share is added by one GEMM, and the cell update is one vectorised pass.

use crate::activation::{sigmoid, tanh};
use crate::error::{KernelError, ensure};
use crate::matmul::{Matrix, matmul_add};
use crate::simd::simd_dispatch;

/// The gates, in the order of the gate values' column blocks: input, forget, cell
/// candidate, output (PyTorch's order).
pub const GATES: usize = 4;

/// An LSTM layer's recurrent weights, packed for [`LstmCell::step`].
#[derive(Debug, Clone)]
pub struct LstmCell {
    hidden: usize,
    /// `[hidden, GATES · hidden]`.
    recurrent: Vec<f32>,
}

impl LstmCell {
    /// `recurrent` is `[hidden, GATES · hidden]`: a block of `hidden` columns per gate, in
    /// [`GATES`] order.
    pub fn new(hidden: usize, recurrent: Vec<f32>) -> Result<Self, KernelError> {
        ensure(hidden > 0, || "an LSTM of no hidden values".to_string())?;
        ensure(recurrent.len() == hidden * GATES * hidden, || {
            format!(
                "LSTM recurrent weight has {} values, expected {hidden} × {}",
                recurrent.len(),
                GATES * hidden
            )
        })?;
        Ok(Self { hidden, recurrent })
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Advances `rows` sequences by one step. `gates` is `[rows, GATES · hidden]`, each row's
    /// input gates (input × input weights + biases), and is used as scratch; `hidden` and
    /// `cell` are `[rows, hidden]` and are replaced with the new states.
    pub fn step(
        &self,
        gates: &mut [f32],
        rows: usize,
        hidden: &mut [f32],
        cell: &mut [f32],
    ) -> Result<(), KernelError> {
        let width = GATES * self.hidden;
        ensure(
            gates.len() == rows * width
                && hidden.len() == rows * self.hidden
                && cell.len() == rows * self.hidden,
            || {
                format!(
                    "LSTM step buffers of {}, {} and {} values do not fit {rows} rows of {} \
                     hidden values",
                    gates.len(),
                    hidden.len(),
                    cell.len(),
                    self.hidden
                )
            },
        )?;
        if rows == 0 {
            return Ok(());
        }
        let lhs = Matrix::dense(hidden, rows, self.hidden);
        let rhs = Matrix::dense(&self.recurrent, self.hidden, width);
        matmul_add(gates, width, lhs, rhs, rayon::current_num_threads());
        update_states(gates, self.hidden, hidden, cell);
        Ok(())
    }
}

simd_dispatch! {
    /// `c ← σ(f)·c + σ(i)·tanh(g)`, `h ← σ(o)·tanh(c)` for every row, from the gates'
    /// pre-activations.
    fn update_states(gates: &[f32], size: usize, hidden: &mut [f32], cell: &mut [f32])
        => update_states_body
}

// `FUSED` is unused: the dispatch compiles the same loop per instruction set.
#[inline(always)]
fn update_states_body<const FUSED: bool>(
    gates: &[f32],
    size: usize,
    hidden: &mut [f32],
    cell: &mut [f32],
) {
    for ((row, h), c) in gates
        .chunks_exact(GATES * size)
        .zip(hidden.chunks_exact_mut(size))
        .zip(cell.chunks_exact_mut(size))
    {
        let (i, rest) = row.split_at(size);
        let (f, rest) = rest.split_at(size);
        let (g, o) = rest.split_at(size);
        for j in 0..size {
            let input = sigmoid(i[j]);
            let forget = sigmoid(f[j]);
            let candidate = tanh(g[j]);
            let output = sigmoid(o[j]);
            let new_cell = forget * c[j] + input * candidate;
            c[j] = new_cell;
            h[j] = output * tanh(new_cell);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_with_one_hidden_value_follows_the_equations() {
        // hidden 1: recurrent weights for i, f, g, o; input gates already computed.
        let recurrent = vec![1.5, 0.75, -0.5, 1.0];
        let inputs = [0.1f64, 0.2, -0.3, 0.4];
        let cell_weights = LstmCell::new(1, recurrent.clone()).unwrap();
        let (h0, c0) = (-0.6f64, 0.3f64);
        let mut gates: Vec<f32> = inputs.iter().map(|&v| v as f32).collect();
        let (mut hidden, mut cell) = (vec![h0 as f32], vec![c0 as f32]);
        cell_weights
            .step(&mut gates, 1, &mut hidden, &mut cell)
            .unwrap();
        let pre = |gate: usize| inputs[gate] + h0 * recurrent[gate] as f64;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let c1 = sig(pre(1)) * c0 + sig(pre(0)) * pre(2).tanh();
        let h1 = sig(pre(3)) * c1.tanh();
        assert!(
            (cell[0] as f64 - c1).abs() < 1e-6,
            "{} against {c1}",
            cell[0]
        );
        assert!(
            (hidden[0] as f64 - h1).abs() < 1e-6,
            "{} against {h1}",
            hidden[0]
        );
    }

    #[test]
    fn misfitting_buffers_are_errors() {
        let cell_weights = LstmCell::new(3, vec![0.0; 36]).unwrap();
        let (mut h, mut c) = (vec![0.0; 6], vec![0.0; 6]);
        assert!(
            cell_weights
                .step(&mut [0.0; 23], 2, &mut h, &mut c)
                .is_err()
        );
        assert!(
            cell_weights
                .step(&mut [0.0; 24], 2, &mut h[..3], &mut c)
                .is_err()
        );
        assert!(cell_weights.step(&mut [0.0; 24], 2, &mut h, &mut c).is_ok());
        assert!(LstmCell::new(3, vec![0.0; 35]).is_err());
        assert!(LstmCell::new(0, vec![]).is_err());
    }
}
