//! Image captioners for 64×64 RGB scenes: a small CNN encoder, then
//! - an LSTM decoder that takes the image embedding as its first input and then the
//!   caption's words (Show and Tell, Vinyals et al., 2015), with the embedding also beside
//!   every word, or
//! - a Transformer decoder (pre-norm blocks of causal self-attention, cross-attention over
//!   the encoder's 8×8 grid of region features, feed-forward).
//!
//! Both project onto the vocabulary through the tied word embedding. Shapes: images
//! `[batch, 3, 64, 64]`, tokens `[batch, time]` (starting with `<bos>`) → logits
//! `[batch, time, vocab]`, the logits at position t predicting token t + 1.
//!
//! Besides the whole-sequence `decode` used in training, each decoder has a `step` that
//! reads one new token per row and carries its state (the LSTM's hidden and cell, the
//! Transformer's keys and values) from step to step, so serving never recomputes a prefix.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::lstm::{Lstm, LstmConfig, LstmState};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig, PaddingConfig2d, Relu,
};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::cpu::{self, Activation, Network, NetworkBuilder, Value};
use super::gelu::gelu;
use crate::error::{Result, ZooError};

pub use crate::models::transformer_lm::KeyValue;

/// Side of the square input image.
pub const IMAGE_SIDE: usize = 64;
/// Side of the encoder's grid of region features.
pub const GRID_SIDE: usize = 8;

#[derive(Config, Debug)]
pub struct CaptionerConfig {
    pub vocab_size: usize,
    /// Width of word embeddings and decoder states.
    #[config(default = 128)]
    pub d_model: usize,
    /// Channels of the encoder's feature grid.
    #[config(default = 64)]
    pub channels: usize,
    /// Transformer decoder blocks.
    #[config(default = 2)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    #[config(default = 256)]
    pub d_ff: usize,
    /// Longest token sequence (with `<bos>`) the Transformer decoder takes.
    #[config(default = 32)]
    pub max_tokens: usize,
    /// Batch norm after each of the encoder's three stage convolutions; absent means
    /// none (the bundled captioners). It trains faster, and at serving it folds into the
    /// convolutions.
    pub encoder_norm: Option<bool>,
    /// 3×3 convolutions (`channels` wide, batch-normed with `encoder_norm`) on the 8×8
    /// grid before its context convolution: depth per region for recognising an object
    /// whole, each at a quarter of the cost of the third stage's convolution; absent means
    /// none (the captioners trained before them).
    pub encoder_grid_layers: Option<usize>,
}

impl CaptionerConfig {
    /// The shape of the scene encoder this config makes.
    pub fn encoder_shape(&self) -> EncoderShape {
        EncoderShape {
            channels: self.channels,
            norm: self.encoder_norm == Some(true),
            grid_layers: self.encoder_grid_layers.unwrap_or(0),
        }
    }
}

/// What a [`SceneEncoder`] is made of, as [`CaptionerConfig::encoder_shape`] reads it: a
/// trained encoder fits only an encoder of the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderShape {
    /// Channels of the last two stages, the grid layers and the grid.
    pub channels: usize,
    /// Batch norm after each convolution but the context one.
    pub norm: bool,
    /// Convolutions on the grid before the context convolution.
    pub grid_layers: usize,
}

impl EncoderShape {
    /// `channels` on the grid, no batch norm, no grid layers (the first captioners').
    pub fn new(channels: usize) -> Self {
        Self {
            channels,
            norm: false,
            grid_layers: 0,
        }
    }

    pub fn with_norm(self, norm: bool) -> Self {
        Self { norm, ..self }
    }

    pub fn with_grid_layers(self, grid_layers: usize) -> Self {
        Self {
            grid_layers,
            ..self
        }
    }
}

/// Three 3×3 convolution (+ batch norm, optionally) + ReLU + 2×2 max-pool stages,
/// 64×64 → 8×8, optionally more convolutions on the grid, then a residual 3×3 convolution
/// on the grid, so each region sees 38 pixels around it (16 more per grid layer): enough
/// for an object drawn at 1.6× its source size.
#[derive(Module, Debug)]
pub struct SceneEncoder {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    norm1: Option<BatchNorm>,
    norm2: Option<BatchNorm>,
    norm3: Option<BatchNorm>,
    grid: Vec<Conv2d>,
    grid_norms: Vec<BatchNorm>,
    context: Conv2d,
    pool: MaxPool2d,
    activation: Relu,
}

impl SceneEncoder {
    pub fn new(shape: EncoderShape, device: &Device) -> Self {
        let EncoderShape {
            channels,
            norm,
            grid_layers,
        } = shape;
        let conv = |input, output| {
            Conv2dConfig::new([input, output], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        let norm = |channels| norm.then(|| BatchNormConfig::new(channels).init(device));
        Self {
            conv1: conv(3, 32),
            conv2: conv(32, channels),
            conv3: conv(channels, channels),
            norm1: norm(32),
            norm2: norm(channels),
            norm3: norm(channels),
            grid: (0..grid_layers).map(|_| conv(channels, channels)).collect(),
            grid_norms: (0..grid_layers).filter_map(|_| norm(channels)).collect(),
            context: conv(channels, channels),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            activation: Relu::new(),
        }
    }

    fn stages(&self) -> [(&Conv2d, Option<&BatchNorm>); 3] {
        [
            (&self.conv1, self.norm1.as_ref()),
            (&self.conv2, self.norm2.as_ref()),
            (&self.conv3, self.norm3.as_ref()),
        ]
    }

    /// `[batch, 3, 64, 64]` → `[batch, channels, 8, 8]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = images;
        for (conv, norm) in self.stages() {
            x = conv.forward(x);
            if let Some(norm) = norm {
                x = norm.forward(x);
            }
            x = self.pool.forward(self.activation.forward(x));
        }
        for (index, conv) in self.grid.iter().enumerate() {
            x = conv.forward(x);
            if let Some(norm) = self.grid_norms.get(index) {
                x = norm.forward(x);
            }
            x = self.activation.forward(x);
        }
        x.clone() + self.activation.forward(self.context.forward(x))
    }

    /// [`Self::forward`] for Kiln's CPU kernels (batch norm folded into the convolutions);
    /// the result is the grid in NHWC order.
    pub fn cpu_network(&self, b: &mut NetworkBuilder, x: Value) -> Result<Value> {
        let pool = cpu::max_pool(&self.pool)?;
        let mut x = x;
        for (conv, norm) in self.stages() {
            x = b.conv(x, cpu::conv(conv, norm, Activation::Relu)?, None)?;
            x = b.pool(x, pool)?;
        }
        for (index, conv) in self.grid.iter().enumerate() {
            let conv = cpu::conv(conv, self.grid_norms.get(index), Activation::Relu)?;
            x = b.conv(x, conv, None)?;
        }
        let context = cpu::conv(&self.context, None, Activation::Relu)?;
        Ok(b.conv(x, context.with_residual_after_activation(), Some(x))?)
    }
}

fn tied_embedding(config: &CaptionerConfig, device: &Device) -> Embedding {
    EmbeddingConfig::new(config.vocab_size, config.d_model)
        .with_initializer(burn::nn::Initializer::Normal {
            mean: 0.0,
            std: 0.1,
        })
        .init(device)
}

/// Vocabulary logits `[n, vocab]` for states `[n, d_model]` through the tied embedding.
fn project(embedding: &Embedding, bias: &Param<Tensor<1>>, hidden: Tensor<2>) -> Tensor<2> {
    hidden.matmul(embedding.weight.val().transpose()) + bias.val().unsqueeze()
}

/// Show and Tell: the image embedding is the LSTM's first input. It also stands beside every
/// word of the input (the LSTM reads `[word; image]`), so later words need not recall it
/// through the whole sequence, which a network trained from scratch here was slow to
/// learn. The embedding reads the 4×4 average-pooled grid (where things are) beside the
/// grid's maximum over all positions (what is there, wherever it is), and is normalised,
/// as the words' are small.
#[derive(Module, Debug)]
pub struct LstmCaptioner {
    encoder: SceneEncoder,
    pool: AvgPool2d,
    image_projection: Linear,
    image_norm: LayerNorm,
    embedding: Embedding,
    lstm: Lstm,
    output_bias: Param<Tensor<1>>,
}

impl CaptionerConfig {
    pub fn init_lstm(&self, device: &Device) -> LstmCaptioner {
        let grid = GRID_SIDE / 2;
        LstmCaptioner {
            encoder: SceneEncoder::new(self.encoder_shape(), device),
            pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            image_projection: LinearConfig::new(self.channels * (grid * grid + 1), self.d_model)
                .init(device),
            image_norm: LayerNormConfig::new(self.d_model).init(device),
            embedding: tied_embedding(self, device),
            lstm: LstmConfig::new(2 * self.d_model, self.d_model, true).init(device),
            output_bias: Param::from_tensor(Tensor::zeros([self.vocab_size], device)),
        }
    }

    pub fn init_transformer(&self, device: &Device) -> TransformerCaptioner {
        let d = self.d_model;
        let attention = || Attention {
            query: LinearConfig::new(d, d).init(device),
            key_value: LinearConfig::new(d, 2 * d).init(device),
            output: LinearConfig::new(d, d).init(device),
            heads: self.heads,
        };
        let blocks = (0..self.layers)
            .map(|_| CaptionBlock {
                self_norm: LayerNormConfig::new(d).init(device),
                self_attention: attention(),
                cross_norm: LayerNormConfig::new(d).init(device),
                cross_attention: attention(),
                feed_forward_norm: LayerNormConfig::new(d).init(device),
                feed_forward_in: LinearConfig::new(d, self.d_ff).init(device),
                feed_forward_out: LinearConfig::new(self.d_ff, d).init(device),
            })
            .collect();
        let positions = |count| {
            EmbeddingConfig::new(count, d)
                .with_initializer(burn::nn::Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        TransformerCaptioner {
            encoder: SceneEncoder::new(self.encoder_shape(), device),
            region_projection: LinearConfig::new(self.channels, d).init(device),
            region_position: positions(GRID_SIDE * GRID_SIDE),
            token_embedding: tied_embedding(self, device),
            token_position: positions(self.max_tokens),
            blocks,
            final_norm: LayerNormConfig::new(d).init(device),
            output_bias: Param::from_tensor(Tensor::zeros([self.vocab_size], device)),
        }
    }
}

impl LstmCaptioner {
    /// What the decoder remembers of each image: its embedding, `[batch, 1, d_model]`.
    pub fn encode(&self, images: Tensor<4>) -> Tensor<3> {
        self.encode_grid(self.encoder.forward(images))
    }

    /// [`Self::encode`] from the encoder's grid.
    pub fn encode_grid(&self, grid: Tensor<4>) -> Tensor<3> {
        let [batch, channels, _, _] = grid.dims();
        let anywhere: Tensor<2> = grid
            .clone()
            .reshape([batch, channels, GRID_SIDE * GRID_SIDE])
            .max_dim(2)
            .reshape([batch, channels]);
        let places: Tensor<2> = self.pool.forward(grid).flatten(1, 3);
        let features = Tensor::cat(vec![places, anywhere], 1);
        self.image_norm
            .forward(self.image_projection.forward(features))
            .unsqueeze_dim(1)
    }

    /// Logits for every position of `tokens [batch, time]` after `memory [batch, 1, d]`.
    pub fn decode(&self, memory: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, time] = tokens.dims();
        let d = memory.dims()[2];
        let sequence = Tensor::cat(vec![memory.clone(), self.embedding.forward(tokens)], 1);
        let inputs = Tensor::cat(vec![sequence, memory.expand([batch, time + 1, d])], 2);
        let (hidden, _) = self.lstm.forward(inputs, None);
        let hidden = hidden
            .slice(s![.., 1..time + 1, ..])
            .reshape([batch * time, d]);
        let vocab = self.output_bias.dims()[0];
        project(&self.embedding, &self.output_bias, hidden).reshape([batch, time, vocab])
    }

    /// The state after reading the image embeddings `memory [batch, 1, d]`.
    pub fn start(&self, memory: Tensor<3>) -> LstmState<2> {
        self.lstm
            .forward(Tensor::cat(vec![memory.clone(), memory], 2), None)
            .1
    }

    /// Logits `[batch, vocab]` after reading `tokens [batch]` beside `images [batch, d]`
    /// (the rows' embeddings) in `state`, and the new state.
    pub fn step(
        &self,
        tokens: Tensor<1, Int>,
        images: Tensor<2>,
        state: LstmState<2>,
    ) -> (Tensor<2>, LstmState<2>) {
        let words = self.embedding.forward(tokens.unsqueeze_dim(1));
        let inputs = Tensor::cat(vec![words, images.unsqueeze_dim(1)], 2);
        let (hidden, state) = self.lstm.forward(inputs, Some(state));
        let [batch, _, d] = hidden.dims();
        let logits = project(
            &self.embedding,
            &self.output_bias,
            hidden.reshape([batch, d]),
        );
        (logits, state)
    }
}

/// [`LstmCaptioner::start`] and [`LstmCaptioner::step`] on Kiln's CPU kernels, for rows
/// of plain floats. The LSTM reads `[word; image]`: the word's share of the input gates
/// (with the biases) is looked up in a table made at load, the image's is computed once
/// when a caption starts and kept in its slot (see [`Self::start`]), so a step's one
/// matrix product is the hidden state's.
#[derive(Debug, Clone)]
pub struct CpuLstmStep {
    /// Per word, its input gates: `[vocab, 4 · d_model]`.
    word_gates: Vec<f32>,
    /// The image embedding's share of the input gates, `d_model → 4 · d_model`.
    image_gates: kiln_kernels::linear::Linear,
    /// The word's share (biases included) as a layer, for the first step, which reads the
    /// image embedding in the word's place.
    word_input: kiln_kernels::linear::Linear,
    cell: cpu::LstmCell,
    /// The tied embedding, transposed, and the output bias: `d_model → vocab`.
    projection: kiln_kernels::linear::Linear,
}

impl LstmCaptioner {
    /// [`Self::start`] and [`Self::step`] prepared for Kiln's CPU kernels.
    pub fn cpu_step(&self) -> Result<CpuLstmStep> {
        use kiln_kernels::linear::Linear as Dense;
        let [vocab, d] = self.embedding.weight.dims();
        let embedding = cpu::floats(self.embedding.weight.val())?;
        let lstm = cpu::lstm(&self.lstm)?;
        let width = 4 * d;
        if lstm.cell.hidden() != d || lstm.input_weight.len() != 2 * d * width {
            return Err(ZooError::InvalidInput(format!(
                "an LSTM of {} input weights and {} hidden values beside a {d}-wide embedding",
                lstm.input_weight.len(),
                lstm.cell.hidden()
            )));
        }
        let (word_weight, image_weight) = lstm.input_weight.split_at(d * width);
        let words = Dense::new(
            d,
            width,
            word_weight,
            Some(&lstm.bias),
            Activation::Identity,
        )?;
        let mut word_gates = vec![0.0; vocab * width];
        words.run(&embedding, vocab, &mut word_gates)?;
        let mut transposed = vec![0.0; d * vocab];
        for (word, row) in embedding.chunks_exact(d).enumerate() {
            for (k, &value) in row.iter().enumerate() {
                transposed[k * vocab + word] = value;
            }
        }
        let bias = cpu::floats(self.output_bias.val())?;
        Ok(CpuLstmStep {
            word_gates,
            image_gates: Dense::new(d, width, image_weight, None, Activation::Identity)?,
            word_input: words,
            cell: lstm.cell,
            projection: Dense::new(d, vocab, &transposed, Some(&bias), Activation::Identity)?,
        })
    }
}

/// What [`CpuLstmStep::start`] gives each caption: `[rows, d_model]` states and the
/// image's share of the input gates, `[rows, 4 · d_model]`, which every step reads.
#[derive(Debug, Clone)]
pub struct CpuLstmStart {
    pub hidden: Vec<f32>,
    pub cell: Vec<f32>,
    pub image_gates: Vec<f32>,
}

impl CpuLstmStep {
    /// Width of the states and of the image embeddings.
    pub fn width(&self) -> usize {
        self.cell.hidden()
    }

    pub fn vocab(&self) -> usize {
        self.projection.outputs()
    }

    /// For image embeddings `[rows, d_model]`: the state after reading them, as
    /// [`LstmCaptioner::start`] gives, and their share of every later step's input gates.
    pub fn start(&self, images: &[f32]) -> Result<CpuLstmStart> {
        let d = self.width();
        if !images.len().is_multiple_of(d) {
            return Err(ZooError::InvalidInput(format!(
                "{} image values are not rows of {d}",
                images.len()
            )));
        }
        let rows = images.len() / d;
        let mut image_gates = vec![0.0; rows * 4 * d];
        self.image_gates.run(images, rows, &mut image_gates)?;
        // The first input is `[image; image]`: the image in the word's place, then itself.
        let mut gates = vec![0.0; rows * 4 * d];
        self.word_input.run(images, rows, &mut gates)?;
        gates
            .iter_mut()
            .zip(&image_gates)
            .for_each(|(g, i)| *g += i);
        let (mut hidden, mut cell) = (vec![0.0; rows * d], vec![0.0; rows * d]);
        self.cell.step(&mut gates, rows, &mut hidden, &mut cell)?;
        Ok(CpuLstmStart {
            hidden,
            cell,
            image_gates,
        })
    }

    /// Logits `[rows, vocab]` after reading `tokens` (one per row) in the states `hidden`
    /// and `cell` (`[rows, d_model]` each), which are replaced with the new states, beside
    /// the rows' `image_gates` from [`Self::start`].
    pub fn step(
        &self,
        tokens: &[u32],
        image_gates: &[f32],
        hidden: &mut [f32],
        cell: &mut [f32],
    ) -> Result<Vec<f32>> {
        let (rows, width, vocab) = (tokens.len(), 4 * self.width(), self.vocab());
        if image_gates.len() != rows * width {
            return Err(ZooError::InvalidInput(format!(
                "{} image gate values for {rows} rows of {width}",
                image_gates.len()
            )));
        }
        let mut gates = Vec::with_capacity(rows * width);
        for (&token, image) in tokens.iter().zip(image_gates.chunks_exact(width)) {
            let at = token as usize * width;
            let word = self.word_gates.get(at..at + width).ok_or_else(|| {
                ZooError::InvalidInput(format!("token {token} is not in a vocabulary of {vocab}"))
            })?;
            gates.extend(word.iter().zip(image).map(|(w, i)| w + i));
        }
        self.cell.step(&mut gates, rows, hidden, cell)?;
        let mut logits = vec![0.0; rows * vocab];
        self.projection.run(hidden, rows, &mut logits)?;
        Ok(logits)
    }
}

/// Multi-head attention of queries over a context (itself, or the image regions).
#[derive(Module, Debug)]
pub struct Attention {
    query: Linear,
    key_value: Linear,
    output: Linear,
    heads: usize,
}

/// Value added to the scores of masked positions; finite so no row becomes NaN.
const MASKED_SCORE: f32 = -1.0e9;

impl Attention {
    /// `[batch, n, d]` → `[batch, heads, n, d / heads]`.
    fn split_heads(&self, t: Tensor<3>) -> Tensor<4> {
        let [batch, n, d] = t.dims();
        t.reshape([batch, n, self.heads, d / self.heads])
            .swap_dims(1, 2)
    }

    /// Keys and values of `context [batch, m, d]`.
    fn keys_values(&self, context: Tensor<3>) -> KeyValue {
        let d = context.dims()[2];
        let key_value = self.key_value.forward(context);
        KeyValue {
            keys: self.split_heads(key_value.clone().slice(s![.., .., 0..d])),
            values: self.split_heads(key_value.slice(s![.., .., d..2 * d])),
        }
    }

    /// `x [batch, n, d]` attending over the given keys and values; `mask [batch, 1, n, m]`
    /// (true = hidden) when some keys must not be seen.
    fn attend(&self, x: Tensor<3>, context: KeyValue, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let [batch, n, d] = x.dims();
        let m = context.keys.dims()[2];
        let d_k = d / self.heads;
        let query = self.split_heads(self.query.forward(x));
        let mut scores = query.matmul(context.keys.swap_dims(2, 3)) / (d_k as f64).sqrt();
        if let Some(mask) = mask {
            scores = scores.mask_fill(mask.expand([batch, self.heads, n, m]), MASKED_SCORE);
        }
        let attended = softmax(scores, 3)
            .matmul(context.values)
            .swap_dims(1, 2)
            .reshape([batch, n, d]);
        self.output.forward(attended)
    }

    /// [`Self::attend`] for inference, through the backend's fused attention: no score
    /// tensor, where a decoding step of many one-token rows would otherwise be hundreds of
    /// tiny matrix products. `mask [batch, 1, n, m]` (true = hidden) leaves each row at least
    /// one key.
    fn attend_fused(
        &self,
        x: Tensor<3>,
        context: KeyValue,
        mask: Option<Tensor<4, Bool>>,
    ) -> Tensor<3> {
        let [batch, n, d] = x.dims();
        let query = self.split_heads(self.query.forward(x));
        let attended = attention(
            query,
            context.keys,
            context.values,
            mask,
            None,
            AttentionModuleOptions::default(),
        );
        self.output
            .forward(attended.swap_dims(1, 2).reshape([batch, n, d]))
    }

    /// `x [batch, n, d]` attending over `context [batch, m, d]`.
    fn forward(
        &self,
        x: Tensor<3>,
        context: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
    ) -> Tensor<3> {
        let context = self.keys_values(context);
        self.attend(x, context, mask)
    }
}

#[derive(Module, Debug)]
pub struct CaptionBlock {
    self_norm: LayerNorm,
    self_attention: Attention,
    cross_norm: LayerNorm,
    cross_attention: Attention,
    feed_forward_norm: LayerNorm,
    feed_forward_in: Linear,
    feed_forward_out: Linear,
}

impl CaptionBlock {
    fn forward(&self, x: Tensor<3>, memory: Tensor<3>, causal: Tensor<4, Bool>) -> Tensor<3> {
        let normed = self.self_norm.forward(x.clone());
        let x = x + self
            .self_attention
            .forward(normed.clone(), normed, Some(causal));
        let regions = self.cross_attention.keys_values(memory);
        let x = x.clone()
            + self
                .cross_attention
                .attend(self.cross_norm.forward(x), regions, None);
        self.feed_forward(x)
    }

    /// The feed-forward layer after the attentions, with its residual.
    fn feed_forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = gelu(
            self.feed_forward_in
                .forward(self.feed_forward_norm.forward(x.clone())),
        );
        x + self.feed_forward_out.forward(hidden)
    }

    /// One new position per row: `x [batch, 1, d]` after `past` (keys and values of the
    /// tokens read so far, `None` before the first), over the image's `regions`; `mask`
    /// `[batch, 1, 1, past + 1]` hides padding. Returns the output and past plus the new
    /// position's keys and values.
    fn step(
        &self,
        x: Tensor<3>,
        past: Option<KeyValue>,
        regions: KeyValue,
        mask: Tensor<4, Bool>,
    ) -> (Tensor<3>, KeyValue) {
        let normed = self.self_norm.forward(x.clone());
        let new = self.self_attention.keys_values(normed.clone());
        let seen = match past {
            Some(past) => KeyValue {
                keys: Tensor::cat(vec![past.keys, new.keys], 2),
                values: Tensor::cat(vec![past.values, new.values], 2),
            },
            None => new,
        };
        let x = x + self
            .self_attention
            .attend_fused(normed, seen.clone(), Some(mask));
        let x = x.clone()
            + self
                .cross_attention
                .attend_fused(self.cross_norm.forward(x), regions, None);
        (self.feed_forward(x), seen)
    }
}

/// Transformer decoder with cross-attention over the image's region features.
#[derive(Module, Debug)]
pub struct TransformerCaptioner {
    encoder: SceneEncoder,
    region_projection: Linear,
    region_position: Embedding,
    token_embedding: Embedding,
    token_position: Embedding,
    blocks: Vec<CaptionBlock>,
    final_norm: LayerNorm,
    output_bias: Param<Tensor<1>>,
}

fn positions(batch: usize, count: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<1, Int>::arange(0..count as i64, device)
        .unsqueeze::<2>()
        .expand([batch, count])
}

impl TransformerCaptioner {
    /// Longest token sequence the decoder takes.
    pub fn max_tokens(&self) -> usize {
        self.token_position.weight.dims()[0]
    }

    /// Region features with their positions, `[batch, 64, d_model]`.
    pub fn encode(&self, images: Tensor<4>) -> Tensor<3> {
        self.encode_grid(self.encoder.forward(images))
    }

    /// [`Self::encode`] from the encoder's grid.
    pub fn encode_grid(&self, features: Tensor<4>) -> Tensor<3> {
        let [batch, channels, _, _] = features.dims();
        let regions = GRID_SIDE * GRID_SIDE;
        let grid = features.reshape([batch, channels, regions]).swap_dims(1, 2);
        let device = grid.device();
        self.region_projection.forward(grid)
            + self
                .region_position
                .forward(positions(batch, regions, &device))
    }

    /// Logits for every position of `tokens [batch, time]` (time ≤ `max_tokens`).
    pub fn decode(&self, memory: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, time] = tokens.dims();
        let device = tokens.device();
        let mut x = self.token_embedding.forward(tokens)
            + self.token_position.forward(positions(batch, time, &device));
        let causal = Tensor::<2, Bool>::tril_mask([time, time], 0, &device)
            .unsqueeze::<4>()
            .expand([batch, 1, time, time]);
        for block in &self.blocks {
            x = block.forward(x, memory.clone(), causal.clone());
        }
        let d = x.dims()[2];
        let hidden = self.final_norm.forward(x).reshape([batch * time, d]);
        let vocab = self.output_bias.dims()[0];
        project(&self.token_embedding, &self.output_bias, hidden).reshape([batch, time, vocab])
    }

    /// Per layer, the keys and values of the region features `memory [batch, 64, d]`,
    /// computed once per image and read at every step.
    pub fn start(&self, memory: Tensor<3>) -> Vec<KeyValue> {
        self.blocks
            .iter()
            .map(|block| block.cross_attention.keys_values(memory.clone()))
            .collect()
    }

    /// Logits `[batch, vocab]` after reading `tokens [batch]` at `positions [batch]`.
    /// `past` holds per layer the keys and values of the tokens read so far, padded to a
    /// common length (`None` when no row has read any); `mask [batch, 1, 1, past + 1]` hides
    /// the padding. Returns the logits and, per layer, past plus the new position.
    pub fn step(
        &self,
        tokens: Tensor<1, Int>,
        positions: Tensor<1, Int>,
        past: Option<Vec<KeyValue>>,
        regions: Vec<KeyValue>,
        mask: Tensor<4, Bool>,
    ) -> (Tensor<2>, Vec<KeyValue>) {
        let batch = tokens.dims()[0];
        let mut x = self.token_embedding.forward(tokens.unsqueeze_dim(1))
            + self.token_position.forward(positions.unsqueeze_dim(1));
        let mut past = past.map(Vec::into_iter);
        let mut seen = Vec::with_capacity(self.blocks.len());
        for (block, regions) in self.blocks.iter().zip(regions) {
            let layer_past = past.as_mut().and_then(Iterator::next);
            let (out, kv) = block.step(x, layer_past, regions, mask.clone());
            x = out;
            seen.push(kv);
        }
        let d = x.dims()[2];
        let hidden = self.final_norm.forward(x).reshape([batch, d]);
        (
            project(&self.token_embedding, &self.output_bias, hidden),
            seen,
        )
    }
}

/// Either captioner, behind one interface.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per model
pub enum CaptionNet {
    Lstm(LstmCaptioner),
    Transformer(TransformerCaptioner),
}

impl CaptionNet {
    /// Per-image memory the decoder reads: `[batch, 1, d]` (LSTM) or `[batch, 64, d]`.
    pub fn encode(&self, images: Tensor<4>) -> Tensor<3> {
        match self {
            CaptionNet::Lstm(net) => net.encode(images),
            CaptionNet::Transformer(net) => net.encode(images),
        }
    }

    /// The encoder's grid of region features, `[batch, channels, 8, 8]`.
    pub fn grid(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            CaptionNet::Lstm(net) => net.encoder.forward(images),
            CaptionNet::Transformer(net) => net.encoder.forward(images),
        }
    }

    /// The same captioner with `encoder` in place of its own (a pretrained one).
    pub fn with_encoder(self, encoder: SceneEncoder) -> Self {
        match self {
            CaptionNet::Lstm(net) => CaptionNet::Lstm(LstmCaptioner { encoder, ..net }),
            CaptionNet::Transformer(net) => {
                CaptionNet::Transformer(TransformerCaptioner { encoder, ..net })
            }
        }
    }

    /// [`Self::encode`] from the encoder's grid.
    pub fn encode_grid(&self, grid: Tensor<4>) -> Tensor<3> {
        match self {
            CaptionNet::Lstm(net) => net.encode_grid(grid),
            CaptionNet::Transformer(net) => net.encode_grid(grid),
        }
    }

    fn encoder(&self) -> &SceneEncoder {
        match self {
            CaptionNet::Lstm(net) => &net.encoder,
            CaptionNet::Transformer(net) => &net.encoder,
        }
    }

    /// Channels of the encoder's grid.
    pub fn grid_channels(&self) -> usize {
        self.encoder().conv3.weight.dims()[0]
    }

    /// The encoder prepared for Kiln's CPU kernels: `[3, 64, 64]` images in, the grid out
    /// in NHWC order (`[8, 8, channels]` per image).
    pub fn cpu_encoder(&self) -> Result<Network> {
        let (mut builder, x) = NetworkBuilder::new(3, IMAGE_SIDE, IMAGE_SIDE);
        let grid = self.encoder().cpu_network(&mut builder, x)?;
        Ok(builder.build(grid)?)
    }

    pub fn decode(&self, memory: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            CaptionNet::Lstm(net) => net.decode(memory, tokens),
            CaptionNet::Transformer(net) => net.decode(memory, tokens),
        }
    }

    /// Longest token sequence the decoder takes, if it is limited.
    pub fn max_tokens(&self) -> Option<usize> {
        match self {
            CaptionNet::Lstm(_) => None,
            CaptionNet::Transformer(net) => Some(net.max_tokens()),
        }
    }

    pub fn forward(&self, images: Tensor<4>, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.decode(self.encode(images), tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_captioners_give_logits_for_every_position() {
        let device = Device::flex();
        let config = CaptionerConfig::new(20).with_d_model(32).with_channels(8);
        let images = Tensor::<4>::zeros([2, 3, IMAGE_SIDE, IMAGE_SIDE], &device);
        let tokens = Tensor::<2, Int>::zeros([2, 5], &device);
        for net in [
            CaptionNet::Lstm(config.init_lstm(&device)),
            CaptionNet::Transformer(config.init_transformer(&device)),
        ] {
            assert_eq!(
                net.forward(images.clone(), tokens.clone()).dims(),
                [2, 5, 20]
            );
        }
    }

    #[test]
    fn transformer_logits_do_not_see_later_tokens() {
        let device = Device::flex();
        let net = CaptionerConfig::new(20)
            .with_d_model(32)
            .with_channels(8)
            .init_transformer(&device);
        let images = Tensor::<4>::random(
            [1, 3, IMAGE_SIDE, IMAGE_SIDE],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let memory = net.encode(images);
        let short = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 7], [1, 3]), &device);
        let long =
            Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 7, 9, 3], [1, 5]), &device);
        let first = net.decode(memory.clone(), short).slice(s![.., 0..3, ..]);
        let second = net.decode(memory, long).slice(s![.., 0..3, ..]);
        first
            .into_data()
            .assert_approx_eq::<f32>(&second.into_data(), Default::default());
    }
}
