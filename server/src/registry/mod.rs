//! The models a running server knows: each one's state (loading, ready or failed) and, once
//! ready, the handle that requests go through.

mod loader;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kiln_zoo::BackendKind;
use kiln_zoo::classifier::top_k;
use kiln_zoo::image_input::ImageSpec;
use tokio::time::Instant;

pub use loader::load_model;

use crate::batching::{Batcher, InferError};
use crate::metrics::ModelMetrics;
use crate::repository::ModelConfig;

/// Where a model of the repository stands.
#[derive(Clone)]
pub enum ModelState {
    Loading,
    Ready(Arc<ModelHandle>),
    Failed(String),
}

/// A loaded model: its config, its batcher and its metrics.
pub struct ModelHandle {
    pub name: String,
    pub config: ModelConfig,
    pub backend: BackendKind,
    pub labels: Vec<String>,
    pub metrics: Arc<ModelMetrics>,
    batcher: Batcher<Vec<f32>, Vec<f32>>,
}

/// One ranked class of a classification answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub label: String,
    pub index: usize,
    pub probability: f32,
}

impl ModelHandle {
    pub fn input_spec(&self) -> &ImageSpec {
        &self.config.input
    }

    pub fn version(&self) -> &str {
        &self.config.version
    }

    /// Class probabilities for one preprocessed image, through the batcher. A request still
    /// queued at `deadline` is dropped before compute.
    pub async fn probabilities(
        &self,
        input: Vec<f32>,
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, InferError> {
        self.batcher.infer_by(input, deadline).await
    }

    /// The `k` most likely classes for one preprocessed image.
    pub async fn classify(
        &self,
        input: Vec<f32>,
        k: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<Prediction>, InferError> {
        let probabilities = self.probabilities(input, deadline).await?;
        Ok(top_k(&probabilities, k)
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
            .collect())
    }
}

/// Every model of the repository, by name.
#[derive(Default)]
pub struct ModelRegistry {
    models: RwLock<BTreeMap<String, ModelState>>,
}

impl ModelRegistry {
    pub fn set(&self, name: &str, state: ModelState) {
        self.models
            .write()
            .expect("registry lock")
            .insert(name.to_string(), state);
    }

    pub fn get(&self, name: &str) -> Option<ModelState> {
        self.models
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// Names and states, sorted by name.
    pub fn all(&self) -> Vec<(String, ModelState)> {
        self.models
            .read()
            .expect("registry lock")
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }
}
