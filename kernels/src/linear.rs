//! Dense layers.

use crate::activation::{Activation, Epilogue, apply_epilogue};
use crate::error::{KernelError, ensure};
use crate::matmul::{Matrix, matmul};

/// `y = act(x W + b)` with `W` stored `[inputs, outputs]` (Burn's layout).
#[derive(Debug, Clone)]
pub struct Linear {
    inputs: usize,
    outputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
    activation: Activation,
}

impl Linear {
    pub fn new(
        inputs: usize,
        outputs: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Self, KernelError> {
        ensure(weight.len() == inputs * outputs, || {
            format!(
                "linear weight has {} values, expected {inputs}×{outputs}",
                weight.len()
            )
        })?;
        let bias = match bias {
            Some(b) => {
                ensure(b.len() == outputs, || {
                    format!("linear bias has {} values for {outputs} outputs", b.len())
                })?;
                b.to_vec()
            }
            None => vec![0.0; outputs],
        };
        Ok(Self {
            inputs,
            outputs,
            weight: weight.to_vec(),
            bias,
            activation,
        })
    }

    /// A layer that followed a flatten of `[channels, height, width]` activations (PyTorch's
    /// order), re-ordered to read the NHWC flatten `[height, width, channels]` instead.
    pub fn after_nchw_flatten(
        chw: [usize; 3],
        outputs: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Self, KernelError> {
        let [c, h, w] = chw;
        let inputs = c * h * w;
        ensure(weight.len() == inputs * outputs, || {
            format!(
                "linear weight has {} values, expected {inputs}×{outputs}",
                weight.len()
            )
        })?;
        let mut reordered = vec![0.0; weight.len()];
        for ci in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let from = (ci * h + y) * w + x;
                    let to = (y * w + x) * c + ci;
                    reordered[to * outputs..(to + 1) * outputs]
                        .copy_from_slice(&weight[from * outputs..(from + 1) * outputs]);
                }
            }
        }
        Self::new(inputs, outputs, &reordered, bias, activation)
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `input` is `[batch, inputs]`, `out` `[batch, outputs]`.
    pub fn run(&self, input: &[f32], batch: usize, out: &mut [f32]) -> Result<(), KernelError> {
        ensure(
            input.len() == batch * self.inputs && out.len() == batch * self.outputs,
            || {
                format!(
                    "linear buffers of {} and {} values do not fit a batch of {batch} × {} → {}",
                    input.len(),
                    out.len(),
                    self.inputs,
                    self.outputs
                )
            },
        )?;
        let lhs = Matrix {
            data: input,
            rows: batch,
            cols: self.inputs,
            stride: self.inputs,
        };
        let rhs = Matrix {
            data: &self.weight,
            rows: self.inputs,
            cols: self.outputs,
            stride: self.outputs,
        };
        matmul(out, self.outputs, lhs, rhs, rayon::current_num_threads());
        let epilogue = Epilogue {
            bias: &self.bias,
            activation: self.activation,
            residual_after_activation: false,
        };
        apply_epilogue(out, batch, self.outputs, None, epilogue);
        Ok(())
    }
}
