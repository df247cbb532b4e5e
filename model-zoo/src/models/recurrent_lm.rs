//! Recurrent language models: token embedding → stacked recurrent layers (LSTM, GRU or
//! Elman) → projection onto the vocabulary. The projection reuses the embedding matrix
//! (weight tying), which halves the parameters and helps small corpora.
//!
//! Shapes: tokens `[batch, time]` → hidden `[batch, time, d_model]` → logits
//! `[batch, time, vocab]`. The recurrent state is one `[batch, d_model]` hidden tensor per
//! layer, plus a cell tensor for LSTM layers.

use burn::module::Param;
use burn::nn::gru::{Gru, GruConfig};
use burn::nn::lstm::{Lstm, LstmConfig, LstmState};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;

use super::cpu::{self, Activation, GruCell, LstmCell};
use super::elman::{Elman, ElmanActivation, ElmanConfig};
use crate::error::{Result, ZooError};

/// Which recurrent layer the model stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Lstm,
    Gru,
    Elman(ElmanActivation),
}

#[derive(Config, Debug)]
pub struct RecurrentLmConfig {
    pub vocab_size: usize,
    /// Embedding and hidden width (equal, for the tied projection).
    pub d_model: usize,
    pub layers: usize,
}

/// One recurrent layer of the stack.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // a handful per model: boxing would buy nothing
pub enum RecurrentLayer {
    Lstm(Lstm),
    Gru(Gru),
    Elman(Elman),
}

#[derive(Module, Debug)]
pub struct RecurrentLm {
    pub embedding: Embedding,
    pub layers: Vec<RecurrentLayer>,
    pub output_bias: Param<Tensor<1>>,
}

/// The state of one layer for a batch: hidden `[batch, d_model]` and, for LSTM, the cell.
#[derive(Debug, Clone)]
pub struct LayerState {
    pub hidden: Tensor<2>,
    pub cell: Option<Tensor<2>>,
}

impl RecurrentLmConfig {
    pub fn init(&self, cell: CellKind, device: &Device) -> RecurrentLm {
        let d = self.d_model;
        let layers = (0..self.layers)
            .map(|_| match cell {
                CellKind::Lstm => RecurrentLayer::Lstm(LstmConfig::new(d, d, true).init(device)),
                CellKind::Gru => RecurrentLayer::Gru(GruConfig::new(d, d, true).init(device)),
                CellKind::Elman(activation) => RecurrentLayer::Elman(
                    ElmanConfig::new(d, d)
                        .with_activation(activation)
                        .init(device),
                ),
            })
            .collect();
        RecurrentLm {
            embedding: EmbeddingConfig::new(self.vocab_size, d)
                .with_initializer(burn::nn::Initializer::Normal {
                    mean: 0.0,
                    std: 0.1,
                })
                .init(device),
            layers,
            output_bias: Param::from_tensor(Tensor::zeros([self.vocab_size], device)),
        }
    }
}

impl RecurrentLayer {
    fn forward(&self, input: Tensor<3>, state: Option<LayerState>) -> (Tensor<3>, LayerState) {
        match self {
            RecurrentLayer::Lstm(lstm) => {
                let initial = state.map(|s| {
                    let cell = s.cell.unwrap_or_else(|| s.hidden.zeros_like());
                    LstmState::new(cell, s.hidden)
                });
                let (out, last) = lstm.forward(input, initial);
                (
                    out,
                    LayerState {
                        hidden: last.hidden,
                        cell: Some(last.cell),
                    },
                )
            }
            RecurrentLayer::Gru(gru) => {
                let out = gru.forward(input, state.map(|s| s.hidden));
                let [batch, time, d] = out.dims();
                let hidden = out
                    .clone()
                    .slice(s![.., time - 1..time, ..])
                    .reshape([batch, d]);
                (out, LayerState { hidden, cell: None })
            }
            RecurrentLayer::Elman(elman) => {
                let (out, hidden) = elman.forward(input, state.map(|s| s.hidden));
                (out, LayerState { hidden, cell: None })
            }
        }
    }
}

impl RecurrentLm {
    /// Top-layer hidden states for every position and each layer's final state.
    pub fn hidden(
        &self,
        tokens: Tensor<2, Int>,
        state: Option<Vec<LayerState>>,
    ) -> (Tensor<3>, Vec<LayerState>) {
        let mut x = self.embedding.forward(tokens);
        let mut initial = state.map(Vec::into_iter);
        let mut finals = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (out, last) = layer.forward(x, initial.as_mut().and_then(Iterator::next));
            finals.push(last);
            x = out;
        }
        (x, finals)
    }

    /// Vocabulary logits for hidden states `[n, d_model]` → `[n, vocab]`.
    pub fn project(&self, hidden: Tensor<2>) -> Tensor<2> {
        let weight = self.embedding.weight.val(); // [vocab, d_model]
        hidden.matmul(weight.transpose()) + self.output_bias.val().unsqueeze()
    }

    /// Logits for every position of `tokens [batch, time]`, from a zero state.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, time] = tokens.dims();
        let (hidden, _) = self.hidden(tokens, None);
        let d = hidden.dims()[2];
        self.project(hidden.reshape([batch * time, d])).reshape([
            batch,
            time,
            self.output_bias.dims()[0],
        ])
    }
}

/// [`RecurrentLm::hidden`] of an LSTM or GRU stack on Kiln's CPU kernels: each layer's
/// input gates for every position in one matrix product, then per position one product
/// with the hidden state and one vectorised pass over the gates (`kiln_kernels::lstm`,
/// `kiln_kernels::gru`).
#[derive(Debug, Clone)]
pub struct CpuRecurrentStack {
    /// `[vocab, d_model]`.
    embedding: Vec<f32>,
    width: usize,
    /// Per layer: its input's product with the gates' input weights (biases included),
    /// and its cell.
    layers: Vec<(kiln_kernels::linear::Linear, CpuCell)>,
}

#[derive(Debug, Clone)]
enum CpuCell {
    Lstm(LstmCell),
    Gru(GruCell),
}

impl CpuCell {
    fn hidden(&self) -> usize {
        match self {
            CpuCell::Lstm(cell) => cell.hidden(),
            CpuCell::Gru(cell) => cell.hidden(),
        }
    }

    /// One step of `rows` sequences from their input gates (scratch for the LSTM).
    fn step(
        &self,
        gates: &mut [f32],
        rows: usize,
        hidden: &mut [f32],
        cell: &mut [f32],
    ) -> Result<()> {
        match self {
            CpuCell::Lstm(lstm) => lstm.step(gates, rows, hidden, cell)?,
            CpuCell::Gru(gru) => gru.step(gates, rows, hidden)?,
        }
        Ok(())
    }
}

/// The input gates' layer of a packed recurrent layer.
fn input_gates<Cell>(packed: &cpu::CpuRecurrent<Cell>) -> Result<kiln_kernels::linear::Linear> {
    let gates = packed.bias.len();
    Ok(kiln_kernels::linear::Linear::new(
        packed.input_weight.len() / gates,
        gates,
        &packed.input_weight,
        Some(&packed.bias),
        Activation::Identity,
    )?)
}

impl RecurrentLm {
    /// [`Self::hidden`] prepared for Kiln's CPU kernels; only for stacks of LSTM or GRU
    /// layers.
    pub fn cpu_stack(&self) -> Result<CpuRecurrentStack> {
        let [_, width] = self.embedding.weight.dims();
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                let (input, cell) = match layer {
                    RecurrentLayer::Lstm(lstm) => {
                        let packed = cpu::lstm(lstm)?;
                        (input_gates(&packed)?, CpuCell::Lstm(packed.cell))
                    }
                    RecurrentLayer::Gru(gru) => {
                        let packed = cpu::gru(gru)?;
                        (input_gates(&packed)?, CpuCell::Gru(packed.cell))
                    }
                    RecurrentLayer::Elman(_) => {
                        return Err(ZooError::InvalidInput(
                            "the CPU kernels run LSTM and GRU stacks only".into(),
                        ));
                    }
                };
                if input.inputs() != width || cell.hidden() != width {
                    return Err(ZooError::InvalidInput(format!(
                        "a recurrent layer of {} inputs and {} hidden values in a {width}-wide stack",
                        input.inputs(),
                        cell.hidden()
                    )));
                }
                Ok((input, cell))
            })
            .collect::<Result<_>>()?;
        Ok(CpuRecurrentStack {
            embedding: cpu::floats(self.embedding.weight.val())?,
            width,
            layers,
        })
    }
}

impl CpuRecurrentStack {
    /// As [`RecurrentLm::hidden`]: top-layer hidden states `[batch, time, d_model]` for
    /// `tokens [batch, time]` and each layer's final state, from `state` or zeros.
    pub fn hidden(
        &self,
        tokens: Tensor<2, Int>,
        state: Option<Vec<LayerState>>,
    ) -> Result<(Tensor<3>, Vec<LayerState>)> {
        let device = tokens.device();
        let [rows, time] = tokens.dims();
        let d = self.width;
        let vocab = self.embedding.len() / d;
        let ids = tokens
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| ZooError::InvalidInput(format!("{e:?}")))?;
        let mut x = Vec::with_capacity(rows * time * d);
        for &id in &ids {
            let row = usize::try_from(id)
                .ok()
                .and_then(|id| self.embedding.get(id * d..(id + 1) * d))
                .ok_or_else(|| {
                    ZooError::InvalidInput(format!(
                        "token {id} is outside the vocabulary of {vocab}"
                    ))
                })?;
            x.extend_from_slice(row);
        }
        let mut states: Vec<(Vec<f32>, Vec<f32>)> = match state {
            None => vec![(vec![0.0; rows * d], vec![0.0; rows * d]); self.layers.len()],
            Some(layers) => layers
                .into_iter()
                .map(|s| {
                    let hidden = cpu::floats(s.hidden)?;
                    let cell = match s.cell {
                        Some(cell) => cpu::floats(cell)?,
                        None => vec![0.0; hidden.len()],
                    };
                    Ok((hidden, cell))
                })
                .collect::<Result<_>>()?,
        };
        if states.len() != self.layers.len()
            || states
                .iter()
                .any(|(h, c)| h.len() != rows * d || c.len() != rows * d)
        {
            return Err(ZooError::InvalidInput(
                "the recurrent state does not fit the batch".into(),
            ));
        }
        for ((input, cell), (h, c)) in self.layers.iter().zip(&mut states) {
            let width = input.outputs();
            let mut gates = vec![0.0; rows * time * width];
            input.run(&x, rows * time, &mut gates)?;
            let mut step_gates = vec![0.0; rows * width];
            for t in 0..time {
                for (r, row) in step_gates.chunks_exact_mut(width).enumerate() {
                    let at = (r * time + t) * width;
                    row.copy_from_slice(&gates[at..at + width]);
                }
                cell.step(&mut step_gates, rows, h, c)?;
                for (r, row) in h.chunks_exact(d).enumerate() {
                    let at = (r * time + t) * d;
                    x[at..at + d].copy_from_slice(row);
                }
            }
        }
        let hidden = Tensor::from_data(TensorData::new(x, [rows, time, d]), &device);
        let matrix =
            |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [rows, d]), &device);
        let finals = self
            .layers
            .iter()
            .zip(states)
            .map(|((_, cell), (h, c))| LayerState {
                hidden: matrix(h),
                cell: matches!(cell, CpuCell::Lstm(_)).then(|| matrix(c)),
            })
            .collect();
        Ok((hidden, finals))
    }
}
