//! Training language models on a token stream: verses are joined into one stream, cut into
//! windows of `window + 1` tokens (input and the same shifted by one as target), shuffled
//! each epoch, and fitted with Adam on cross-entropy, with warm-up, linear decay and
//! gradient-norm clipping (which keeps the Elman RNN's exploding gradients in check).

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::backend::BackendKind;
use crate::error::Result;
use crate::eval::LanguageModelScore;
use crate::language_model::{LanguageModel, LanguageModelArchitecture};

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct LanguageModelTraining {
    pub epochs: usize,
    pub batch_size: usize,
    /// Tokens per training window (truncated back-propagation span for recurrent models).
    pub window: usize,
    pub learning_rate: f64,
    /// Steps of linear warm-up from zero.
    pub warmup_steps: usize,
    /// Largest gradient L2 norm; larger gradients are scaled down to it.
    pub clip_norm: f32,
    pub seed: u64,
    pub backend: BackendKind,
    /// Stop after this many optimiser steps in all (handy for quick checks).
    pub max_steps: Option<usize>,
    /// Validation verses scored after each epoch (all when `None`).
    pub validation_limit: Option<usize>,
}

impl Default for LanguageModelTraining {
    fn default() -> Self {
        Self {
            epochs: 2,
            batch_size: 32,
            window: 32,
            learning_rate: 3e-3,
            warmup_steps: 200,
            clip_norm: 1.0,
            seed: 42,
            backend: BackendKind::Flex,
            max_steps: None,
            validation_limit: Some(2_000),
        }
    }
}

/// What one epoch achieved.
#[derive(Debug, Clone, Copy)]
pub struct LmEpochReport {
    pub epoch: usize,
    pub steps: usize,
    pub mean_loss: f64,
    pub validation: LanguageModelScore,
}

impl LanguageModelTraining {
    /// Train `architecture` from scratch on `train` verses; returns the trained model.
    pub fn run(
        &self,
        architecture: &LanguageModelArchitecture,
        train: &[Vec<u32>],
        validation: &[Vec<u32>],
        mut on_epoch: impl FnMut(&LmEpochReport),
    ) -> Result<LanguageModel> {
        architecture
            .validate()
            .map_err(crate::error::ZooError::InvalidInput)?;
        let device = self.backend.device()?;
        device.seed(self.seed);
        let inference_device = device.clone();
        let device = device.autodiff();
        let mut model = architecture.init(&device);
        let mut optimizer = AdamConfig::new()
            .with_grad_clipping(Some(GradientClippingConfig::Norm(self.clip_norm)))
            .init();
        let loss_fn = CrossEntropyLoss::new(None, &device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);

        let window = match architecture.context_length() {
            Some(limit) => self.window.min(limit),
            None => self.window,
        };
        let stream: Vec<i64> = train.iter().flatten().map(|&t| i64::from(t)).collect();
        let mut starts: Vec<usize> = (0..stream.len().saturating_sub(window + 1))
            .step_by(window)
            .collect();
        let steps_per_epoch = starts.len().div_ceil(self.batch_size);
        let total_steps = self
            .max_steps
            .unwrap_or(usize::MAX)
            .min(steps_per_epoch * self.epochs)
            .max(1);
        let validation = match self.validation_limit {
            Some(n) => &validation[..n.min(validation.len())],
            None => validation,
        };

        let mut step = 0usize;
        let mut result = None;
        for epoch in 1..=self.epochs {
            starts.shuffle(&mut rng);
            let (mut loss_sum, mut batches) = (0.0, 0usize);
            for chunk in starts.chunks(self.batch_size) {
                if step >= total_steps {
                    break;
                }
                let mut inputs = Vec::with_capacity(chunk.len() * window);
                let mut targets = Vec::with_capacity(chunk.len() * window);
                for &s in chunk {
                    inputs.extend_from_slice(&stream[s..s + window]);
                    targets.extend_from_slice(&stream[s + 1..s + window + 1]);
                }
                let batch = chunk.len();
                let inputs =
                    Tensor::<2, Int>::from_data(TensorData::new(inputs, [batch, window]), &device);
                let targets = Tensor::<1, Int>::from_data(
                    TensorData::new(targets, [batch * window]),
                    &device,
                );
                let logits = model.forward(inputs);
                let vocab = logits.dims()[2];
                let loss = loss_fn.forward(logits.reshape([batch * window, vocab]), targets);
                loss_sum += f64::from(loss.clone().into_scalar::<f32>());
                batches += 1;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(self.rate_at(step, total_steps), model, grads);
                step += 1;
            }
            let snapshot = LanguageModel::from_net(model.valid(), architecture, &inference_device);
            let report = LmEpochReport {
                epoch,
                steps: step,
                mean_loss: loss_sum / batches.max(1) as f64,
                validation: snapshot.score(validation, 64)?,
            };
            on_epoch(&report);
            result = Some(snapshot);
            if step >= total_steps {
                break;
            }
        }
        Ok(result.unwrap_or_else(|| {
            LanguageModel::from_net(model.valid(), architecture, &inference_device)
        }))
    }

    /// Learning rate: linear warm-up, then linear decay to a tenth of the peak.
    fn rate_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let progress = (step - self.warmup_steps) as f64
            / (total.saturating_sub(self.warmup_steps)).max(1) as f64;
        self.learning_rate * (1.0 - 0.9 * progress.min(1.0))
    }
}
