//! A decoder-only Transformer language model: token + learned positional embeddings,
//! pre-norm blocks of causal multi-head self-attention softmax(QKᵀ/√d_k)·V and a
//! feed-forward layer, a final layer norm and the tied vocabulary projection.
//!
//! Shapes: tokens `[batch, time]` (time ≤ `context_length`) → logits `[batch, time, vocab]`.
//! Incremental decoding keeps, per layer, the keys and values of every past position
//! (`[batch, heads, past, d_k]`): one new token then costs one row of attention.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};

#[derive(Config, Debug)]
pub struct TransformerLmConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub layers: usize,
    pub heads: usize,
    pub d_ff: usize,
    /// Longest sequence (prompt plus generated tokens) the model handles.
    pub context_length: usize,
}

#[derive(Module, Debug)]
pub struct CausalSelfAttention {
    pub query_key_value: Linear,
    pub output: Linear,
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct DecoderBlock {
    pub attention_norm: LayerNorm,
    pub attention: CausalSelfAttention,
    pub feed_forward_norm: LayerNorm,
    pub feed_forward_in: Linear,
    pub feed_forward_out: Linear,
}

#[derive(Module, Debug)]
pub struct TransformerLm {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    pub blocks: Vec<DecoderBlock>,
    pub final_norm: LayerNorm,
    pub output_bias: Param<Tensor<1>>,
}

/// Keys and values of the past positions, for one layer: `[batch, heads, past, d_k]` each.
#[derive(Debug, Clone)]
pub struct KeyValue {
    pub keys: Tensor<4>,
    pub values: Tensor<4>,
}

impl KeyValue {
    /// Both tensors through the same reshaping (a gather, a slice, padding).
    pub fn map(self, f: impl Fn(Tensor<4>) -> Tensor<4>) -> Self {
        Self {
            keys: f(self.keys),
            values: f(self.values),
        }
    }
}

/// Value added to the scores of masked positions; finite so a fully masked row stays finite.
const MASKED_SCORE: f32 = -1.0e9;

impl TransformerLmConfig {
    pub fn init(&self, device: &Device) -> TransformerLm {
        let d = self.d_model;
        let normal = |std: f64| burn::nn::Initializer::Normal { mean: 0.0, std };
        let blocks = (0..self.layers)
            .map(|_| DecoderBlock {
                attention_norm: LayerNormConfig::new(d).init(device),
                attention: CausalSelfAttention {
                    query_key_value: LinearConfig::new(d, 3 * d).init(device),
                    output: LinearConfig::new(d, d).init(device),
                    heads: self.heads,
                },
                feed_forward_norm: LayerNormConfig::new(d).init(device),
                feed_forward_in: LinearConfig::new(d, self.d_ff).init(device),
                feed_forward_out: LinearConfig::new(self.d_ff, d).init(device),
            })
            .collect();
        TransformerLm {
            token_embedding: EmbeddingConfig::new(self.vocab_size, d)
                .with_initializer(normal(0.1))
                .init(device),
            position_embedding: EmbeddingConfig::new(self.context_length, d)
                .with_initializer(normal(0.02))
                .init(device),
            blocks,
            final_norm: LayerNormConfig::new(d).init(device),
            output_bias: Param::from_tensor(Tensor::zeros([self.vocab_size], device)),
        }
    }
}

impl CausalSelfAttention {
    /// Attention of `x [batch, new, d_model]` over the cached past plus itself. `mask`
    /// (`[batch, heads, new, past + new]`, true = hidden) says which keys each query may see.
    /// Returns the output and the keys/values of past and new positions together.
    fn forward(
        &self,
        x: Tensor<3>,
        past: Option<KeyValue>,
        mask: Tensor<4, Bool>,
    ) -> (Tensor<3>, KeyValue) {
        let [batch, new, d_model] = x.dims();
        let d_k = d_model / self.heads;
        let split_heads = |t: Tensor<3>| t.reshape([batch, new, self.heads, d_k]).swap_dims(1, 2);
        let qkv = self.query_key_value.forward(x);
        let query = split_heads(qkv.clone().slice(s![.., .., 0..d_model]));
        let mut keys = split_heads(qkv.clone().slice(s![.., .., d_model..2 * d_model]));
        let mut values = split_heads(qkv.slice(s![.., .., 2 * d_model..3 * d_model]));
        if let Some(past) = past {
            keys = Tensor::cat(vec![past.keys, keys], 2);
            values = Tensor::cat(vec![past.values, values], 2);
        }
        let scores = query.matmul(keys.clone().swap_dims(2, 3)) / (d_k as f64).sqrt();
        let weights = softmax(scores.mask_fill(mask, MASKED_SCORE), 3);
        let context = weights
            .matmul(values.clone())
            .swap_dims(1, 2)
            .reshape([batch, new, d_model]);
        (self.output.forward(context), KeyValue { keys, values })
    }
}

impl DecoderBlock {
    fn forward(
        &self,
        x: Tensor<3>,
        past: Option<KeyValue>,
        mask: Tensor<4, Bool>,
    ) -> (Tensor<3>, KeyValue) {
        let (attended, cache) =
            self.attention
                .forward(self.attention_norm.forward(x.clone()), past, mask);
        let x = x + attended;
        let hidden = gelu(
            self.feed_forward_in
                .forward(self.feed_forward_norm.forward(x.clone())),
        );
        (x + self.feed_forward_out.forward(hidden), cache)
    }
}

impl TransformerLm {
    pub fn context_length(&self) -> usize {
        self.position_embedding.weight.dims()[0]
    }

    pub fn heads(&self) -> usize {
        self.blocks.first().map_or(1, |b| b.attention.heads)
    }

    /// Final hidden states for `tokens [batch, new]` at `positions [batch, new]`, attending to
    /// `past` (per layer) under `mask [batch, 1, new, past + new]`; returns the grown caches.
    pub fn hidden(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        past: Option<Vec<KeyValue>>,
        mask: Tensor<4, Bool>,
    ) -> (Tensor<3>, Vec<KeyValue>) {
        let mut x =
            self.token_embedding.forward(tokens) + self.position_embedding.forward(positions);
        let [batch, _, new, total] = mask.dims();
        let mask = mask.expand([batch, self.heads(), new, total]);
        let mut past = past.map(Vec::into_iter);
        let mut caches = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (out, cache) =
                block.forward(x, past.as_mut().and_then(Iterator::next), mask.clone());
            caches.push(cache);
            x = out;
        }
        (self.final_norm.forward(x), caches)
    }

    /// Causal mask for a fresh sequence of `time` tokens: `[batch, 1, time, time]`.
    pub fn causal_mask(batch: usize, time: usize, device: &Device) -> Tensor<4, Bool> {
        Tensor::<2, Bool>::tril_mask([time, time], 0, device)
            .unsqueeze::<4>()
            .expand([batch, 1, time, time])
    }

    /// Positions `0..time` for every row: `[batch, time]`.
    pub fn positions(batch: usize, time: usize, device: &Device) -> Tensor<2, Int> {
        Tensor::<1, Int>::arange(0..time as i64, device)
            .unsqueeze::<2>()
            .expand([batch, time])
    }

    /// Vocabulary logits for hidden states `[n, d_model]` → `[n, vocab]`.
    pub fn project(&self, hidden: Tensor<2>) -> Tensor<2> {
        let weight = self.token_embedding.weight.val();
        hidden.matmul(weight.transpose()) + self.output_bias.val().unsqueeze()
    }

    /// Logits for every position of `tokens [batch, time]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, time] = tokens.dims();
        let device = tokens.device();
        let (hidden, _) = self.hidden(
            tokens,
            Self::positions(batch, time, &device),
            None,
            Self::causal_mask(batch, time, &device),
        );
        let d = hidden.dims()[2];
        self.project(hidden.reshape([batch * time, d])).reshape([
            batch,
            time,
            self.output_bias.dims()[0],
        ])
    }
}
