//! Training LeNet-5 on Fashion-MNIST with Adam and cross-entropy.

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::backend::BackendKind;
use crate::classifier::{ClassifierNet, ImageClassifier};
use crate::data::fashion_mnist::FashionMnist;
use crate::error::Result;
use crate::eval::{Accuracy, evaluate_fashion_mnist, fashion_mnist_input};
use crate::image_input::ImageSpec;
use crate::models::lenet::{LeNet5, LeNet5Config};

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct LeNetTraining {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
    pub backend: BackendKind,
    /// Train on at most this many images (all when `None`); handy for quick checks.
    pub limit: Option<usize>,
}

impl Default for LeNetTraining {
    fn default() -> Self {
        Self {
            epochs: 12,
            batch_size: 64,
            learning_rate: 1e-3,
            seed: 42,
            backend: BackendKind::Flex,
            limit: None,
        }
    }
}

/// What one epoch achieved.
#[derive(Debug, Clone, Copy)]
pub struct EpochReport {
    pub epoch: usize,
    pub mean_loss: f64,
    pub test: Accuracy,
}

impl LeNetTraining {
    /// Train from scratch, reporting each epoch; returns the trained network (inference mode).
    pub fn run(
        &self,
        train: &FashionMnist,
        test: &FashionMnist,
        spec: &ImageSpec,
        mut on_epoch: impl FnMut(&EpochReport),
    ) -> Result<LeNet5> {
        let device = self.backend.device()?;
        device.seed(self.seed);
        let device = device.autodiff();
        let mut model = LeNet5Config::new().init(&device);
        let mut optimizer = AdamConfig::new().init();
        let loss_fn = CrossEntropyLoss::new(None, &device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let count = self.limit.unwrap_or(train.len()).min(train.len());
        let mut order: Vec<usize> = (0..count).collect();

        for epoch in 1..=self.epochs {
            order.shuffle(&mut rng);
            let (mut loss_sum, mut batches) = (0.0, 0usize);
            for chunk in order.chunks(self.batch_size) {
                let mut pixels = Vec::with_capacity(chunk.len() * 784);
                for &i in chunk {
                    pixels.extend(fashion_mnist_input(train, i, spec)?);
                }
                let labels: Vec<i64> = chunk.iter().map(|&i| train.label(i) as i64).collect();
                let images = Tensor::<4>::from_data(
                    TensorData::new(pixels, [chunk.len(), 1, 28, 28]),
                    &device,
                );
                let targets =
                    Tensor::<1, Int>::from_data(TensorData::new(labels, [chunk.len()]), &device);
                let loss = loss_fn.forward(model.forward(images), targets);
                loss_sum += f64::from(loss.clone().into_scalar::<f32>());
                batches += 1;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(self.learning_rate, model, grads);
            }
            let snapshot = ClassifierNet::LeNet5(model.valid());
            let classifier =
                ImageClassifier::from_net(snapshot, spec.shape(), &device.clone().inner());
            let report = EpochReport {
                epoch,
                mean_loss: loss_sum / batches.max(1) as f64,
                test: evaluate_fashion_mnist(&classifier, test, spec, 500)?,
            };
            on_epoch(&report);
        }
        Ok(model.valid())
    }
}
