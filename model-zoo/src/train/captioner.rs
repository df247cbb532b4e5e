//! Training captioners on composed scenes: teacher forcing (the decoder reads the true
//! caption shifted by one), cross-entropy over the words and the end token with padding
//! ignored, Adam with gradient-norm clipping. Each epoch draws fresh scenes, so the
//! models never see the same image twice.

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;

use crate::backend::BackendKind;
use crate::captioning::captioner::{CaptionOptions, Captioner, CaptionerArchitecture};
use crate::captioning::metrics::CaptionScore;
use crate::captioning::vocabulary::{CaptionVocabulary, PAD};
use crate::data::scenes::{CANVAS_SIDE, Scene, SceneGenerator};
use crate::error::Result;
use crate::eval::evaluate_captioner;

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
        }
    }
}

/// What one epoch achieved.
#[derive(Debug, Clone, Copy)]
pub struct CaptionerEpochReport {
    pub epoch: usize,
    pub mean_loss: f64,
    /// Greedy captions of the validation scenes.
    pub validation: CaptionScore,
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
        let mut optimizer = AdamConfig::new()
            .with_grad_clipping(Some(GradientClippingConfig::Norm(self.clip_norm)))
            .init();
        let loss_fn = CrossEntropyLoss::new(Some(PAD as usize), &device);

        let mut result = None;
        for epoch in 1..=self.epochs {
            let scenes = train.scenes(self.scenes_per_epoch);
            let (mut loss_sum, mut batches) = (0.0, 0usize);
            for chunk in scenes.chunks(self.batch_size) {
                let (images, inputs, targets) = teacher_forcing_batch(chunk, &device)?;
                let logits = net.forward(images, inputs);
                let [batch, time, vocab] = logits.dims();
                let loss = loss_fn.forward(logits.reshape([batch * time, vocab]), targets);
                loss_sum += f64::from(loss.clone().into_scalar::<f32>());
                batches += 1;
                let grads = GradientsParams::from_grads(loss.backward(), &net);
                net = optimizer.step(self.learning_rate, net, grads);
            }
            let captioner = Captioner::from_net(net.valid(), &inference_device);
            on_epoch(&CaptionerEpochReport {
                epoch,
                mean_loss: loss_sum / batches.max(1) as f64,
                validation: evaluate_captioner(
                    &captioner,
                    validation,
                    64,
                    &CaptionOptions::default(),
                )?,
            });
            result = Some(captioner);
        }
        Ok(result.unwrap_or_else(|| Captioner::from_net(net.valid(), &inference_device)))
    }
}
