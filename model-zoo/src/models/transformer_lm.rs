//! A decoder-only Transformer language model: token + learned positional embeddings,
//! pre-norm blocks of causal multi-head self-attention softmax(QKᵀ/√d_k)·V and a
//! feed-forward layer, a final layer norm and the tied vocabulary projection.
//!
//! Shapes: tokens `[batch, time]` (time ≤ `context_length`) → logits `[batch, time, vocab]`.
//! Incremental decoding keeps, per layer, the keys and values of every past position
//! (`[batch, heads, past, d_k]`, or a ring of them written in place, see
//! [`TransformerLm::step_in_ring`]): one new token then costs one row of attention.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::gelu::gelu;

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
    /// Queries, keys and values of `x [batch, new, d_model]`, split into heads:
    /// `[batch, heads, new, d_k]` each.
    fn project_heads(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [batch, new, d_model] = x.dims();
        let d_k = d_model / self.heads;
        let split_heads = |t: Tensor<3>| t.reshape([batch, new, self.heads, d_k]).swap_dims(1, 2);
        let qkv = self.query_key_value.forward(x);
        let query = split_heads(qkv.clone().slice(s![.., .., 0..d_model]));
        let keys = split_heads(qkv.clone().slice(s![.., .., d_model..2 * d_model]));
        let values = split_heads(qkv.slice(s![.., .., 2 * d_model..3 * d_model]));
        (query, keys, values)
    }

    /// softmax(QKᵀ/√d_k)·V of `query [batch, heads, new, d_k]` over `keys` and `values`
    /// (`[batch, heads, columns, d_k]`), `mask` (true = hidden) broadcast over
    /// `[batch, heads, new, columns]`; the heads joined again: `[batch, new, d_model]`.
    fn attend(
        &self,
        query: Tensor<4>,
        keys: Tensor<4>,
        values: Tensor<4>,
        mask: Tensor<4, Bool>,
    ) -> Tensor<3> {
        let [batch, heads, new, d_k] = query.dims();
        let scores = query.matmul(keys.swap_dims(2, 3)) / (d_k as f64).sqrt();
        let weights = softmax(scores.mask_fill(mask, MASKED_SCORE), 3);
        let context = weights
            .matmul(values)
            .swap_dims(1, 2)
            .reshape([batch, new, heads * d_k]);
        self.output.forward(context)
    }

    /// Attention of `x [batch, new, d_model]` over the cached past plus itself. `mask`
    /// (`[batch, heads, new, past + new]`, true = hidden) says which keys each query may see.
    /// Returns the output and the keys/values of past and new positions together.
    fn forward(
        &self,
        x: Tensor<3>,
        past: Option<KeyValue>,
        mask: Tensor<4, Bool>,
    ) -> (Tensor<3>, KeyValue) {
        let (query, mut keys, mut values) = self.project_heads(x);
        if let Some(past) = past {
            keys = Tensor::cat(vec![past.keys, keys], 2);
            values = Tensor::cat(vec![past.values, values], 2);
        }
        let out = self.attend(query, keys.clone(), values.clone(), mask);
        (out, KeyValue { keys, values })
    }

    /// Attention of one new token per row, `x [batch, 1, d_model]`, over a ring of keys and
    /// values (`[batch, heads, capacity, d_k]`): the token's own key and value are written
    /// into column `column` in place, then every column is attended to under `mask`
    /// (`[batch, 1, 1, capacity]`, true = hidden; at least one column open per row).
    /// Returns the output and the ring. Inference only: the backend's fused attention, which
    /// needs no score tensor, where a step of many short rows is otherwise hundreds of tiny
    /// matrix products.
    fn forward_in_ring(
        &self,
        x: Tensor<3>,
        ring: KeyValue,
        column: usize,
        mask: Tensor<4, Bool>,
    ) -> (Tensor<3>, KeyValue) {
        let [batch, _, d_model] = x.dims();
        let (query, new_keys, new_values) = self.project_heads(x);
        let at = s![.., .., column..column + 1, ..];
        let keys = ring.keys.slice_assign(at, new_keys);
        let values = ring.values.slice_assign(at, new_values);
        let context = attention(
            query,
            keys.clone(),
            values.clone(),
            Some(mask),
            None,
            AttentionModuleOptions::default(),
        );
        let out = self
            .output
            .forward(context.swap_dims(1, 2).reshape([batch, 1, d_model]));
        (out, KeyValue { keys, values })
    }
}

impl DecoderBlock {
    /// The block around `attention`, which gets the normalised input and returns the
    /// attended output and the layer's keys and values.
    fn forward_with(
        &self,
        x: Tensor<3>,
        attention: impl FnOnce(&CausalSelfAttention, Tensor<3>) -> (Tensor<3>, KeyValue),
    ) -> (Tensor<3>, KeyValue) {
        let (attended, cache) = attention(&self.attention, self.attention_norm.forward(x.clone()));
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
            let past = past.as_mut().and_then(Iterator::next);
            let (out, cache) =
                block.forward_with(x, |attention, x| attention.forward(x, past, mask.clone()));
            caches.push(cache);
            x = out;
        }
        (self.final_norm.forward(x), caches)
    }

    /// Final hidden states `[batch, 1, d_model]` for one new token per row
    /// (`tokens [batch, 1]` at `positions [batch, 1]`), with each layer's keys and values in
    /// a ring (`[batch, heads, capacity, d_k]`, see `crate::decode_batch`): the new keys and
    /// values are written into column `column` of each layer's ring, in place when the ring
    /// is the only owner of its data, and each row attends to the columns `mask`
    /// (`[batch, 1, 1, capacity]`, true = hidden) leaves it. Returns the rings.
    pub fn step_in_ring(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        rings: Vec<KeyValue>,
        column: usize,
        mask: Tensor<4, Bool>,
    ) -> (Tensor<3>, Vec<KeyValue>) {
        let mut x =
            self.token_embedding.forward(tokens) + self.position_embedding.forward(positions);
        let mut grown = Vec::with_capacity(rings.len());
        for (block, ring) in self.blocks.iter().zip(rings) {
            let (out, ring) = block.forward_with(x, |attention, x| {
                attention.forward_in_ring(x, ring, column, mask.clone())
            });
            grown.push(ring);
            x = out;
        }
        (self.final_norm.forward(x), grown)
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
