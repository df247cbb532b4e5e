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

use super::elman::{Elman, ElmanActivation, ElmanConfig};

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
