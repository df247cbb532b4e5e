//! Language models ready to serve: the architecture a model folder names, the network with
//! loaded weights, and the three ways the server runs it — next-token distributions for a
//! batch of prompts, a prefill that returns a sequence's state, and one decoding step for
//! the sequences of a [`DecodeBatch`], whose states (recurrent state or key/value cache)
//! stay in its slots from step to step.
//!
//! Prompts in one batch may differ in length: they are right-padded and each row is read at
//! its own last position, which the causal structure keeps independent of the padding.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use kiln_kernels::softmax::softmax_into;
use serde::{Deserialize, Serialize};

use crate::decode_batch::{DecodeBatch, Ring, Stacked};
use crate::error::{Result, ZooError};
use crate::eval::LanguageModelScore;
use crate::models::cpu;
use crate::models::elman::ElmanActivation;
use crate::models::recurrent_lm::{
    CellKind, CpuRecurrentStack, LayerState, RecurrentLm, RecurrentLmConfig,
};
use crate::models::transformer_lm::{KeyValue, TransformerLm, TransformerLmConfig};
use crate::text::tokenizer::EOS_ID;
use crate::weights::{load_weights, save_burnpack};

/// Size of a recurrent language model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurrentSpec {
    pub vocab_size: usize,
    pub d_model: usize,
    pub layers: usize,
    /// Elman layers only: `tanh` or `relu-identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ElmanActivation>,
}

/// The network a language-model folder asks for, with its hyper-parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LanguageModelArchitecture {
    Lstm(RecurrentSpec),
    Gru(RecurrentSpec),
    Rnn(RecurrentSpec),
    Transformer(TransformerLmConfig),
}

impl LanguageModelArchitecture {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lstm(_) => "lstm",
            Self::Gru(_) => "gru",
            Self::Rnn(_) => "rnn",
            Self::Transformer(_) => "transformer",
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Lstm(s) | Self::Gru(s) | Self::Rnn(s) => s.vocab_size,
            Self::Transformer(c) => c.vocab_size,
        }
    }

    /// Longest sequence the network can take, if it has a limit.
    pub fn context_length(&self) -> Option<usize> {
        match self {
            Self::Transformer(c) => Some(c.context_length),
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Lstm(s) | Self::Gru(s) | Self::Rnn(s) => {
                if s.vocab_size < 4 || s.d_model == 0 || s.layers == 0 {
                    return Err("vocab_size ≥ 4, d_model and layers must be positive".into());
                }
                if s.activation.is_some() && !matches!(self, Self::Rnn(_)) {
                    return Err("`activation` applies to rnn models only".into());
                }
            }
            Self::Transformer(c) => {
                if c.vocab_size < 4 || c.layers == 0 || c.context_length == 0 || c.d_ff == 0 {
                    return Err("vocab_size ≥ 4; layers, context_length, d_ff positive".into());
                }
                if c.heads == 0 || c.d_model % c.heads != 0 {
                    return Err(format!(
                        "d_model {} is not divisible by heads {}",
                        c.d_model, c.heads
                    ));
                }
            }
        }
        Ok(())
    }

    /// Build the network with fresh weights.
    pub fn init(&self, device: &Device) -> LanguageNet {
        let recurrent = |s: &RecurrentSpec, cell| {
            LanguageNet::Recurrent(
                RecurrentLmConfig::new(s.vocab_size, s.d_model, s.layers).init(cell, device),
            )
        };
        match self {
            Self::Lstm(s) => recurrent(s, CellKind::Lstm),
            Self::Gru(s) => recurrent(s, CellKind::Gru),
            Self::Rnn(s) => recurrent(s, CellKind::Elman(s.activation.unwrap_or_default())),
            Self::Transformer(c) => LanguageNet::Transformer(c.init(device)),
        }
    }
}

/// One of the language networks in the zoo.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one value per loaded model: boxing would buy nothing
pub enum LanguageNet {
    Recurrent(RecurrentLm),
    Transformer(TransformerLm),
}

impl LanguageNet {
    /// Logits for every position of `tokens [batch, time]`: `[batch, time, vocab]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            LanguageNet::Recurrent(m) => m.forward(tokens),
            LanguageNet::Transformer(m) => m.forward(tokens),
        }
    }

    /// Top-layer hidden states for every position of `tokens [batch, time]`.
    fn hidden(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            LanguageNet::Recurrent(m) => m.hidden(tokens, None).0,
            LanguageNet::Transformer(m) => {
                let [batch, time] = tokens.dims();
                let device = tokens.device();
                m.hidden(
                    tokens,
                    TransformerLm::positions(batch, time, &device),
                    None,
                    TransformerLm::causal_mask(batch, time, &device),
                )
                .0
            }
        }
    }

    fn project(&self, hidden: Tensor<2>) -> Tensor<2> {
        match self {
            LanguageNet::Recurrent(m) => m.project(hidden),
            LanguageNet::Transformer(m) => m.project(hidden),
        }
    }
}

/// A sequence's state after its prefill, ready to join a [`DecodeBatch`].
#[derive(Debug, Clone)]
pub enum SequenceState {
    /// Per layer, hidden (and LSTM cell) state of shape `[1, d_model]`.
    Recurrent(Vec<LayerState>),
    /// Per layer, keys and values `[1, heads, seen, d_k]` of the tokens seen so far, and
    /// the model's context (the most tokens a sequence can read).
    Transformer {
        cache: Vec<KeyValue>,
        capacity: usize,
    },
}

/// A language model with loaded weights, bound to a device.
#[derive(Debug)]
pub struct LanguageModel {
    net: LanguageNet,
    /// An LSTM or GRU stack on Kiln's CPU kernels, which run it instead of Burn's ops on
    /// the CPU.
    cpu_stack: Option<CpuRecurrentStack>,
    device: Device,
    vocab_size: usize,
    context_length: Option<usize>,
}

impl LanguageModel {
    /// Build `architecture` and load its weights from a burnpack file.
    pub fn load(
        architecture: &LanguageModelArchitecture,
        weights: &Path,
        device: &Device,
    ) -> Result<Self> {
        architecture.validate().map_err(ZooError::InvalidInput)?;
        let mut net = architecture.init(device);
        load_weights(&mut net, weights, &[])?;
        Ok(Self::from_net(net, architecture, device))
    }

    pub fn from_net(
        net: LanguageNet,
        architecture: &LanguageModelArchitecture,
        device: &Device,
    ) -> Self {
        // A stack the kernels do not take (Elman) keeps Burn's ops.
        let cpu_stack = match &net {
            LanguageNet::Recurrent(m) if cpu::kernels_apply(device) => m.cpu_stack().ok(),
            _ => None,
        };
        Self {
            net,
            cpu_stack,
            device: device.clone(),
            vocab_size: architecture.vocab_size(),
            context_length: architecture.context_length(),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        save_burnpack(&self.net, path)
    }

    /// Whether a recurrent stack runs on Kiln's CPU kernels rather than Burn's ops.
    pub fn uses_cpu_kernels(&self) -> bool {
        self.cpu_stack.is_some()
    }

    /// Run on Burn's ops even where the CPU kernels apply (for comparisons).
    pub fn without_cpu_kernels(mut self) -> Self {
        self.cpu_stack = None;
        self
    }

    /// A recurrent net's top-layer hidden states for every position of `tokens` and each
    /// layer's final state, on Kiln's CPU kernels where they apply.
    fn recurrent_hidden(
        &self,
        net: &RecurrentLm,
        tokens: Tensor<2, Int>,
        state: Option<Vec<LayerState>>,
    ) -> Result<(Tensor<3>, Vec<LayerState>)> {
        match &self.cpu_stack {
            Some(stack) => stack.hidden(tokens, state),
            None => Ok(net.hidden(tokens, state)),
        }
    }

    /// Top-layer hidden states for every position of `tokens [batch, time]`.
    fn hidden(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>> {
        match &self.net {
            LanguageNet::Recurrent(m) => Ok(self.recurrent_hidden(m, tokens, None)?.0),
            net => Ok(net.hidden(tokens)),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Longest sequence (prompt plus generated tokens) the model can take, if limited.
    pub fn context_length(&self) -> Option<usize> {
        self.context_length
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(ZooError::InvalidInput(
                "a sequence needs at least one token".into(),
            ));
        }
        if let Some(limit) = self.context_length
            && tokens.len() > limit
        {
            return Err(ZooError::InvalidInput(format!(
                "{} tokens exceed the model's context of {limit}",
                tokens.len()
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.vocab_size) {
            return Err(ZooError::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.vocab_size
            )));
        }
        Ok(())
    }

    /// Right-padded `[batch, longest]` token tensor.
    fn padded(&self, sequences: &[&[u32]]) -> Tensor<2, Int> {
        let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(sequences.len() * longest);
        for s in sequences {
            ids.extend(s.iter().map(|&t| t as i64));
            ids.extend(std::iter::repeat_n(EOS_ID as i64, longest - s.len()));
        }
        Tensor::from_data(
            TensorData::new(ids, [sequences.len(), longest]),
            &self.device,
        )
    }

    /// Log-probabilities of the next token after each prompt (`[vocab]` per prompt).
    pub fn next_token_log_probs(&self, prompts: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        for p in prompts {
            self.check_tokens(p)?;
        }
        let tokens = self.padded(prompts);
        let [batch, time] = tokens.dims();
        let hidden = self.hidden(tokens)?;
        let d = hidden.dims()[2];
        let last: Vec<i64> = prompts
            .iter()
            .enumerate()
            .map(|(row, p)| (row * time + p.len() - 1) as i64)
            .collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(last, [batch]), &self.device);
        let hidden = hidden.reshape([batch * time, d]).select(0, rows);
        self.to_rows(log_softmax(self.net.project(hidden), 1), <[f32]>::to_vec)
    }

    /// `values` (`[rows, vocab]`) on the host, each row made into a `Vec` by `row`.
    fn to_rows(
        &self,
        values: Tensor<2>,
        row: impl Fn(&[f32]) -> Vec<f32>,
    ) -> Result<Vec<Vec<f32>>> {
        let values: Vec<f32> = values
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| ZooError::InvalidInput(format!("{e:?}")))?;
        Ok(values.chunks(self.vocab_size).map(row).collect())
    }

    /// Next-token probabilities from `logits` (`[rows, vocab]`), one `Vec` per row: the
    /// softmax runs on the host on Kiln's vectorised kernel as each row is copied out.
    fn probability_rows(&self, logits: Tensor<2>) -> Result<Vec<Vec<f32>>> {
        self.to_rows(logits, |logits| {
            let mut probabilities = vec![0.0; logits.len()];
            softmax_into(logits, &mut probabilities);
            probabilities
        })
    }

    /// Run a prompt and return the next token's probabilities and the state to continue
    /// from.
    pub fn prefill(&self, prompt: &[u32]) -> Result<(Vec<f32>, SequenceState)> {
        self.check_tokens(prompt)?;
        let tokens = self.padded(&[prompt]);
        let time = prompt.len();
        let (hidden, state) = match &self.net {
            LanguageNet::Recurrent(m) => {
                let (hidden, layers) = self.recurrent_hidden(m, tokens, None)?;
                (hidden, SequenceState::Recurrent(layers))
            }
            LanguageNet::Transformer(m) => {
                let (hidden, cache) = m.hidden(
                    tokens,
                    TransformerLm::positions(1, time, &self.device),
                    None,
                    TransformerLm::causal_mask(1, time, &self.device),
                );
                let capacity = m.context_length();
                (hidden, SequenceState::Transformer { cache, capacity })
            }
        };
        let d = hidden.dims()[2];
        let last = hidden.slice(s![.., time - 1..time, ..]).reshape([1, d]);
        let mut rows = self.probability_rows(self.net.project(last))?;
        Ok((rows.remove(0), state))
    }

    /// Feed one token to every sequence of `batch`, in the order of [`DecodeBatch::ids`],
    /// in one step; returns each sequence's next-token probabilities. (Probabilities, not
    /// log-probabilities: drawing a token from them needs no `exp` per word.) The batch then
    /// holds the grown states; on an error it is left as it was.
    pub fn decode(&self, batch: &mut DecodeBatch, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        if tokens.len() != batch.len() {
            return Err(ZooError::InvalidInput(format!(
                "{} tokens for a batch of {} sequences",
                tokens.len(),
                batch.len()
            )));
        }
        if tokens.is_empty() {
            return Ok(Vec::new()); // an empty batch
        }
        self.check_tokens(tokens)?;
        let Some(stacked) = batch.take_stacked() else {
            return Ok(Vec::new());
        };
        // Every slot steps; a free one reads the end token, and its output is dropped.
        let mut slot_tokens = vec![EOS_ID; batch.slots()];
        for (&slot, &token) in batch.live_slots().iter().zip(tokens) {
            slot_tokens[slot] = token;
        }
        let slots = slot_tokens.len();
        let input = self.padded(
            &slot_tokens
                .iter()
                .map(std::slice::from_ref)
                .collect::<Vec<_>>(),
        );
        let (hidden, grown) = match (&self.net, stacked) {
            (LanguageNet::Recurrent(m), Stacked::Recurrent(layers)) => {
                match self.recurrent_hidden(m, input, Some(layers.clone())) {
                    Ok((hidden, finals)) => (hidden, Stacked::Recurrent(finals)),
                    Err(e) => {
                        batch.advance(Stacked::Recurrent(layers));
                        return Err(e);
                    }
                }
            }
            (LanguageNet::Transformer(m), Stacked::Transformer(ring))
                if batch
                    .live_slots()
                    .iter()
                    .all(|&s| ring.read[s] < ring.capacity()) =>
            {
                let (hidden, ring) =
                    step_transformer(m, input, ring, batch.live_slots(), &self.device);
                (hidden, Stacked::Transformer(ring))
            }
            (net, stacked) => {
                let message = match (net, &stacked) {
                    (LanguageNet::Transformer(m), Stacked::Transformer(_)) => format!(
                        "the sequence has reached the model's context of {}",
                        m.context_length()
                    ),
                    _ => "state belongs to another model".into(),
                };
                // Nothing ran: the batch gets its states back as they were.
                batch.advance(stacked);
                return Err(ZooError::InvalidInput(message));
            }
        };
        batch.advance(grown);
        let d = hidden.dims()[2];
        let mut hidden = hidden.reshape([slots, d]);
        let live = batch.live_slots();
        if live.len() < slots {
            let rows = live.iter().map(|&s| s as i64).collect::<Vec<_>>();
            let rows =
                Tensor::<1, Int>::from_data(TensorData::new(rows, [live.len()]), &self.device);
            hidden = hidden.select(0, rows);
        }
        self.probability_rows(self.net.project(hidden))
    }

    /// Perplexity and top-1/top-5 next-token accuracy over whole verses (`<bos> … <eos>`),
    /// predicting every token after `<bos>` from the tokens before it in the same verse.
    pub fn score(&self, verses: &[Vec<u32>], batch_size: usize) -> Result<LanguageModelScore> {
        let mut score = LanguageModelScore::default();
        let limit = self.context_length.unwrap_or(usize::MAX);
        let mut order: Vec<&Vec<u32>> = verses.iter().filter(|v| v.len() >= 2).collect();
        order.sort_by_key(|v| v.len()); // similar lengths together: less padding
        for chunk in order.chunks(batch_size.max(1)) {
            let inputs: Vec<&[u32]> = chunk
                .iter()
                .map(|v| &v[..(v.len() - 1).min(limit)])
                .collect();
            let targets: Vec<&[u32]> = chunk
                .iter()
                .map(|v| &v[1..=(v.len() - 1).min(limit)])
                .collect();
            let logits = self.net.forward(self.padded(&inputs));
            let target_ids = self.padded(&targets).unsqueeze_dim::<3>(2);
            let log_probs = log_softmax(logits, 2);
            let target_lp = log_probs.clone().gather(2, target_ids);
            let [b, t, v] = log_probs.dims();
            let better = log_probs
                .greater(target_lp.clone().expand([b, t, v]))
                .int()
                .sum_dim(2);
            let lp: Vec<f32> = target_lp
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| ZooError::InvalidInput(format!("{e:?}")))?;
            let ranks: Vec<i64> = better
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .map_err(|e| ZooError::InvalidInput(format!("{e:?}")))?;
            for (row, target) in targets.iter().enumerate() {
                for pos in 0..target.len() {
                    let i = row * t + pos;
                    score.add(f64::from(lp[i]), Some(ranks[i] as usize).filter(|&r| r < 5));
                }
            }
        }
        Ok(score.finish())
    }
}

/// One step over rings of keys and values (see [`crate::decode_batch`]): each slot's new
/// token sits at its own position and sees only its own columns. Free slots read the token
/// at position 0 and stay free (nothing read).
fn step_transformer(
    model: &TransformerLm,
    input: Tensor<2, Int>,
    ring: Ring,
    live: &[usize],
    device: &Device,
) -> (Tensor<3>, Ring) {
    let positions = Tensor::<2, Int>::from_data(
        TensorData::new(
            ring.read.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [ring.read.len(), 1],
        ),
        device,
    );
    let mask = ring.mask(device);
    let capacity = ring.capacity();
    let Ring {
        caches,
        mut read,
        head,
    } = ring;
    let (hidden, caches) = model.step_in_ring(input, positions, caches, head, mask);
    live.iter().for_each(|&slot| read[slot] += 1);
    let head = (head + 1) % capacity;
    (hidden, Ring { caches, read, head })
}
