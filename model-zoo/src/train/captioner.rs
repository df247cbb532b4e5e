//! Training captioners on composed scenes: teacher forcing (the decoder reads the true
//! caption shifted by one), cross-entropy over the words and the end token with padding
//! ignored, Adam with gradient-norm clipping. Each epoch draws fresh scenes, so the
//! models never see the same image twice.
//!
//! Beside the caption, the encoder learns which classes and colours a scene holds: a 1×1
//! convolution scores each class and colour at every region, the best region's score is
//! the scene's, and a binary cross-entropy against what the scene holds is added to the
//! loss. The caption's gradient alone reaches the encoder through the decoder, and learns
//! to find objects slowly once they may be anywhere and any size; the presence head is
//! dropped after training.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLoss};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;

use crate::backend::BackendKind;
use crate::captioning::captioner::{CaptionOptions, Captioner, CaptionerArchitecture};
use crate::captioning::vocabulary::{CaptionVocabulary, PAD};
use crate::data::scenes::{CANVAS_SIDE, COLOURS, Scene, SceneGenerator};
use crate::error::Result;
use crate::eval::{SceneCaptionScore, evaluate_captioner};
use crate::models::captioner::CaptionNet;
use crate::train::encoder::load_encoder;
use crate::weights::load_weights;

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct CaptionerTraining {
    pub epochs: usize,
    /// Scenes drawn per epoch.
    pub scenes_per_epoch: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub clip_norm: f32,
    pub seed: u64,
    pub backend: BackendKind,
    /// Weights to continue from instead of a fresh initialisation.
    pub resume: Option<std::path::PathBuf>,
    /// A pretrained encoder to start from (an `EncoderClassifier` saved by
    /// `examples/encoder_probe.rs`), in place of the fresh or resumed one.
    pub encoder: Option<std::path::PathBuf>,
    /// Weight of the presence loss beside the captions' (0: no presence head).
    pub presence_weight: f32,
}

impl Default for CaptionerTraining {
    fn default() -> Self {
        Self {
            epochs: 10,
            scenes_per_epoch: 20_000,
            batch_size: 64,
            learning_rate: 2e-3,
            clip_norm: 1.0,
            seed: 42,
            backend: BackendKind::Flex,
            resume: None,
            encoder: None,
            presence_weight: 1.0,
        }
    }
}

/// What one epoch achieved.
#[derive(Debug, Clone, Copy)]
pub struct CaptionerEpochReport {
    pub epoch: usize,
    /// Mean cross-entropy of the captions' tokens (the presence loss not included).
    pub mean_loss: f64,
    /// Greedy captions of the validation scenes.
    pub validation: SceneCaptionScore,
}

/// Presence outputs: Fashion-MNIST's classes, then the colours.
const PRESENCE: usize = 10 + COLOURS.len();

/// The captioner with the presence head it trains beside (none when its weight is 0).
#[derive(Module, Debug)]
struct WithPresence {
    net: CaptionNet,
    presence: Option<Conv2d>,
}

impl WithPresence {
    /// Caption logits `[batch, time, vocab]` and, with a head, presence logits
    /// `[batch, PRESENCE]`.
    fn forward(&self, images: Tensor<4>, tokens: Tensor<2, Int>) -> (Tensor<3>, Option<Tensor<2>>) {
        let grid = self.net.grid(images);
        let presence = self.presence.as_ref().map(|head| {
            let scores = head.forward(grid.clone());
            let [batch, outputs, rows, columns] = scores.dims();
            scores
                .reshape([batch, outputs, rows * columns])
                .max_dim(2)
                .reshape([batch, outputs])
        });
        let logits = self.net.decode(self.net.encode_grid(grid), tokens);
        (logits, presence)
    }
}

/// What each scene holds, `[batch, PRESENCE]`: 1 for every class and colour in it.
fn presence_targets(scenes: &[Scene], device: &Device) -> Tensor<2, Int> {
    let mut targets = vec![0i64; scenes.len() * PRESENCE];
    for (row, scene) in targets.chunks_exact_mut(PRESENCE).zip(scenes) {
        for object in &scene.objects {
            row[object.label] = 1;
            row[10 + object.colour] = 1;
        }
    }
    Tensor::from_data(TensorData::new(targets, [scenes.len(), PRESENCE]), device)
}

/// Images `[batch, 3, 64, 64]`, decoder inputs `[batch, longest]` (`<bos>` + words) and
/// targets `[batch × longest]` (words + `<eos>`, padding after).
pub fn teacher_forcing_batch(
    scenes: &[Scene],
    device: &Device,
) -> Result<(Tensor<4>, Tensor<2, Int>, Tensor<1, Int>)> {
    let vocabulary = CaptionVocabulary;
    let encoded = scenes
        .iter()
        .map(|scene| vocabulary.encode(&scene.caption))
        .collect::<Result<Vec<_>>>()?;
    let longest = encoded.iter().map(|ids| ids.len() - 1).max().unwrap_or(0);
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    for ids in &encoded {
        let pad = longest - (ids.len() - 1);
        inputs.extend(ids[..ids.len() - 1].iter().map(|&t| i64::from(t)));
        inputs.extend(std::iter::repeat_n(i64::from(PAD), pad));
        targets.extend(ids[1..].iter().map(|&t| i64::from(t)));
        targets.extend(std::iter::repeat_n(i64::from(PAD), pad));
    }
    let batch = scenes.len();
    let pixels: Vec<f32> = scenes.iter().flat_map(Scene::input).collect();
    Ok((
        Tensor::from_data(
            TensorData::new(pixels, [batch, 3, CANVAS_SIDE, CANVAS_SIDE]),
            device,
        ),
        Tensor::from_data(TensorData::new(inputs, [batch, longest]), device),
        Tensor::from_data(TensorData::new(targets, [batch * longest]), device),
    ))
}

impl CaptionerTraining {
    /// Train `architecture` from scratch on scenes from `train`, scoring `validation`
    /// after each epoch; returns the trained captioner.
    pub fn run(
        &self,
        architecture: &CaptionerArchitecture,
        train: &mut SceneGenerator<'_>,
        validation: &[Scene],
        mut on_epoch: impl FnMut(&CaptionerEpochReport),
    ) -> Result<Captioner> {
        let device = self.backend.device()?;
        device.seed(self.seed);
        let inference_device = device.clone();
        let device = device.autodiff();
        let mut net = architecture.init(&device);
        if let Some(weights) = &self.resume {
            load_weights(&mut net, weights, &[])?;
        }
        if let Some(encoder) = &self.encoder {
            let shape = architecture.config().encoder_shape();
            let pretrained = load_encoder(encoder, shape, &device)?;
            net = net.with_encoder(pretrained);
        }
        let presence = (self.presence_weight > 0.0)
            .then(|| Conv2dConfig::new([net.grid_channels(), PRESENCE], [1, 1]).init(&device));
        let mut model = WithPresence { net, presence };
        let mut optimizer = AdamConfig::new()
            .with_grad_clipping(Some(GradientClippingConfig::Norm(self.clip_norm)))
            .init();
        let loss_fn = CrossEntropyLoss::new(Some(PAD as usize), &device);
        let presence_loss = BinaryCrossEntropyLossConfig::new()
            .with_logits(true)
            .init(&device);

        let mut result = None;
        for epoch in 1..=self.epochs {
            let scenes = train.scenes(self.scenes_per_epoch);
            let (mut loss_sum, mut batches) = (0.0, 0usize);
            for chunk in scenes.chunks(self.batch_size) {
                let (images, inputs, targets) = teacher_forcing_batch(chunk, &device)?;
                let (logits, presence) = model.forward(images, inputs);
                let [batch, time, vocab] = logits.dims();
                let caption_loss = loss_fn.forward(logits.reshape([batch * time, vocab]), targets);
                loss_sum += f64::from(caption_loss.clone().into_scalar::<f32>());
                let loss = match presence {
                    Some(presence) => {
                        caption_loss
                            + presence_loss.forward(presence, presence_targets(chunk, &device))
                                * self.presence_weight
                    }
                    None => caption_loss,
                };
                batches += 1;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(self.learning_rate, model, grads);
            }
            let captioner = Captioner::from_net(model.net.valid(), &inference_device);
            on_epoch(&CaptionerEpochReport {
                epoch,
                mean_loss: loss_sum / batches.max(1) as f64,
                validation: evaluate_captioner(
                    &captioner,
                    validation,
                    64,
                    &CaptionOptions::default(),
                    None,
                )?,
            });
            result = Some(captioner);
        }
        Ok(result.unwrap_or_else(|| Captioner::from_net(model.net.valid(), &inference_device)))
    }
}
