//! The models a running server knows: each one's state (loading, ready or failed) and, once
//! ready, the handle that requests go through.

mod captioner;
mod language;
mod loader;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kiln_zoo::BackendKind;
use kiln_zoo::classifier::{softmax_in_place, top_k};
use kiln_zoo::image_input::ImageSpec;
use tokio::time::Instant;

pub use captioner::CaptionerRunner;
pub use language::{LanguageModelRunner, WordProbability};
pub use loader::load_model;

use crate::batching::{Batcher, InferError};
use crate::error::{ErrorKind, KilnError};
use crate::metrics::ModelMetrics;
use crate::repository::{ClassifierConfig, Task};

/// Where a model of the repository stands.
#[derive(Clone)]
pub enum ModelState {
    Loading,
    Ready(Arc<ModelHandle>),
    Failed(String),
}

/// A loaded model: its name, backend and metrics, and what runs its task.
pub struct ModelHandle {
    pub name: String,
    pub version: String,
    pub backend: BackendKind,
    pub metrics: Arc<ModelMetrics>,
    pub runner: TaskRunner,
}

/// The machinery behind one task.
pub enum TaskRunner {
    Classifier(ClassifierRunner),
    LanguageModel(LanguageModelRunner),
    Captioner(CaptionerRunner),
}

/// An image classifier behind its batcher.
pub struct ClassifierRunner {
    pub config: ClassifierConfig,
    pub labels: Vec<String>,
    batcher: Batcher<Vec<f32>, Vec<f32>>,
}

/// One ranked class of a classification answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Prediction {
    pub label: String,
    pub index: usize,
    pub probability: f32,
}

impl ModelHandle {
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn task(&self) -> Task {
        match self.runner {
            TaskRunner::Classifier(_) => Task::Classify,
            TaskRunner::LanguageModel(_) => Task::LanguageModel,
            TaskRunner::Captioner(_) => Task::Caption,
        }
    }

    /// The classifier behind this model, or the error for a request that needs one.
    pub fn classifier(&self) -> Result<&ClassifierRunner, KilnError> {
        match &self.runner {
            TaskRunner::Classifier(c) => Ok(c),
            _ => Err(self.wrong_task(Task::Classify)),
        }
    }

    /// The language model behind this model, or the error for a request that needs one.
    pub fn language_model(&self) -> Result<&LanguageModelRunner, KilnError> {
        match &self.runner {
            TaskRunner::LanguageModel(l) => Ok(l),
            _ => Err(self.wrong_task(Task::LanguageModel)),
        }
    }

    /// The captioner behind this model, or the error for a request that needs one.
    pub fn captioner(&self) -> Result<&CaptionerRunner, KilnError> {
        match &self.runner {
            TaskRunner::Captioner(c) => Ok(c),
            _ => Err(self.wrong_task(Task::Caption)),
        }
    }

    fn wrong_task(&self, wanted: Task) -> KilnError {
        KilnError::new(
            ErrorKind::BadInput,
            format!(
                "model '{}' is a {} model, not a {} model",
                self.name,
                self.task().name(),
                wanted.name()
            ),
        )
    }
}

impl ClassifierRunner {
    pub fn input_spec(&self) -> &ImageSpec {
        &self.config.input
    }

    /// Raw class scores for one preprocessed image, through the batcher. A request still
    /// queued at `deadline` is dropped before compute.
    pub async fn logits(
        &self,
        input: Vec<f32>,
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, InferError> {
        self.batcher.infer_by(input, deadline).await
    }

    /// Class probabilities for one preprocessed image.
    pub async fn probabilities(
        &self,
        input: Vec<f32>,
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, InferError> {
        let mut scores = self.logits(input, deadline).await?;
        softmax_in_place(&mut scores);
        Ok(scores)
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

    /// Take a model out; requests already holding its handle finish, and its batcher and
    /// threads stop once the last handle is gone.
    pub fn remove(&self, name: &str) -> Option<ModelState> {
        self.models.write().expect("registry lock").remove(name)
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
