//! Image classification: an image in, class scores out. Entry points:
//! [`ClassifierRunner::classify`] (the top-k classes of one image, for the task routes) and
//! [`ClassifierRunner::scores`] (logits and probabilities of many, for the Open Inference
//! Protocol). Images are prepared here, whatever form the protocol delivered them in, and
//! run through the model's batcher.

mod config;
mod load;

use std::sync::Arc;

use kiln_zoo::classifier::{softmax_in_place, top_k};
use kiln_zoo::image_input::ImageSpec;
use tokio::time::Instant;

pub use config::{ClassifierConfig, read_labels};
pub use load::load;

use super::image::{ImageInput, prepare_all};
use crate::batching::{Batcher, Choice, LatencyTarget};
use crate::error::KilnError;
use crate::metrics::ModelMetrics;

/// Classes returned when the caller does not say.
pub const DEFAULT_CLASSES: usize = 5;

/// An image classifier behind its batcher.
pub struct ClassifierRunner {
    pub config: ClassifierConfig,
    pub labels: Vec<String>,
    batcher: Batcher<Vec<f32>, Vec<f32>>,
    metrics: Arc<ModelMetrics>,
}

/// One ranked class of a classification answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Prediction {
    pub label: String,
    pub index: usize,
    pub probability: f32,
}

/// A classifier's scores for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    /// The network's raw scores.
    pub logits: Vec<f32>,
    /// Softmax of the logits.
    pub probabilities: Vec<f32>,
}

impl ClassifierRunner {
    pub fn input_spec(&self) -> &ImageSpec {
        &self.config.input
    }

    /// The batch size and delay the batcher uses now, and its latency target.
    pub fn batching(&self) -> (Choice, Option<LatencyTarget>) {
        self.batcher.settings()
    }

    pub fn metrics(&self) -> &Arc<ModelMetrics> {
        &self.metrics
    }

    /// The `top_k` (default [`DEFAULT_CLASSES`]) likeliest classes of one image, most
    /// likely first. A request still queued at `deadline` is dropped before compute.
    pub async fn classify(
        &self,
        image: ImageInput,
        top_k: Option<usize>,
        deadline: Instant,
    ) -> Result<Vec<Prediction>, KilnError> {
        let k = class_count(top_k, self.labels.len())?;
        let scores = self.scores(vec![image], deadline).await?;
        Ok(self.ranked(&scores[0].probabilities, k))
    }

    /// Logits and probabilities of every image, run through the batcher together.
    pub async fn scores(
        &self,
        images: Vec<ImageInput>,
        deadline: Instant,
    ) -> Result<Vec<ClassScores>, KilnError> {
        let arrived = Instant::now();
        // Under a latency target, a request that would be refused is refused before its
        // images are decoded: under overload, decoding is where its CPU would go.
        self.batcher.check_room(images.len())?;
        let inputs = prepare_all(self.input_spec(), images).await?;
        let logits = futures_util::future::try_join_all(
            inputs
                .into_iter()
                .map(|input| self.batcher.infer_by(input, Some(deadline))),
        )
        .await?;
        self.batcher.answered(arrived);
        Ok(logits
            .into_iter()
            .map(|logits| {
                let mut probabilities = logits.clone();
                softmax_in_place(&mut probabilities);
                ClassScores {
                    logits,
                    probabilities,
                }
            })
            .collect())
    }

    /// The `k` highest of `probabilities`, named after their labels.
    fn ranked(&self, probabilities: &[f32], k: usize) -> Vec<Prediction> {
        top_k(probabilities, k)
            .into_iter()
            .map(|index| Prediction {
                label: self
                    .labels
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| index.to_string()),
                index,
                probability: probabilities[index],
            })
            .collect()
    }
}

/// How many classes to return out of `classes`.
pub fn class_count(requested: Option<usize>, classes: usize) -> Result<usize, KilnError> {
    match requested {
        Some(0) => Err(KilnError::bad_input("top_k must be at least 1")),
        Some(k) => Ok(k.min(classes)),
        None => Ok(DEFAULT_CLASSES.min(classes)),
    }
}
