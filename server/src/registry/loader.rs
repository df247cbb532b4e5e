//! Loading one model folder: weights onto the device, a warm-up pass, executor threads.

use kiln_zoo::{BackendKind, Device};
use std::path::PathBuf;

use kiln_zoo::classifier::{ClassifierArchitecture, ImageClassifier};

use super::ModelHandle;
use crate::batching::{BatchExecutor, BatchPolicy, Batcher, ExecutorError};
use crate::metrics::Metrics;
use crate::repository::{ModelEntry, read_labels};

/// Runs classification batches on one classifier instance.
struct ClassifierExecutor {
    classifier: ImageClassifier,
    /// What `restart` needs to build the instance again.
    source: ClassifierSource,
}

#[derive(Clone)]
struct ClassifierSource {
    architecture: ClassifierArchitecture,
    weights: PathBuf,
    input_shape: [usize; 3],
    device: Device,
}

impl ClassifierSource {
    fn load(&self) -> Result<ImageClassifier, String> {
        ImageClassifier::load(
            &self.architecture,
            &self.weights,
            self.input_shape,
            &self.device,
        )
        .map_err(|e| e.to_string())
    }
}

impl BatchExecutor<Vec<f32>, Vec<f32>> for ClassifierExecutor {
    fn execute(&mut self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ExecutorError> {
        let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        self.classifier
            .classify_batch(&refs)
            .map_err(|e| ExecutorError(e.to_string()))
    }

    fn restart(&mut self) -> Result<(), ExecutorError> {
        self.classifier = self.source.load().map_err(ExecutorError)?;
        tracing::info!("executor reloaded its model");
        Ok(())
    }
}

/// Load a model folder and start its batcher. Blocking: call it off the async workers.
/// Must run inside a tokio runtime context (the batcher task is spawned on it).
pub fn load_model(
    entry: &ModelEntry,
    default_backend: BackendKind,
    metrics: &Metrics,
) -> Result<ModelHandle, String> {
    let config = entry.config.clone()?;
    let backend = config.backend.unwrap_or(default_backend);
    let device = backend.device().map_err(|e| e.to_string())?;
    let labels = read_labels(&entry.dir.join(&config.labels))?;
    if labels.len() != config.architecture.num_classes() {
        return Err(format!(
            "{} has {} labels but the model has {} classes",
            config.labels.display(),
            labels.len(),
            config.architecture.num_classes()
        ));
    }
    let source = ClassifierSource {
        architecture: config.architecture.clone(),
        weights: entry.dir.join(&config.weights),
        input_shape: config.input.shape(),
        device,
    };
    let mut executors: Vec<Box<dyn BatchExecutor<Vec<f32>, Vec<f32>>>> = Vec::new();
    for _ in 0..config.instances {
        let classifier = source.load()?;
        warm_up(&classifier, config.batching.max_batch_size)?;
        executors.push(Box::new(ClassifierExecutor {
            classifier,
            source: source.clone(),
        }));
    }
    let model_metrics = metrics.for_model(&entry.name, &config.version, backend.name());
    let policy = BatchPolicy {
        max_batch_size: config.batching.max_batch_size,
        max_queue_delay: config.batching.max_queue_delay(),
        preferred_batch_sizes: config.batching.preferred_batch_sizes.clone(),
        max_queue_size: config.batching.max_queue_size,
        instances: config.instances,
    };
    let batcher = Batcher::spawn(&entry.name, policy, executors, model_metrics.clone())
        .map_err(|e| format!("cannot start executor threads: {e}"))?;
    Ok(ModelHandle {
        name: entry.name.clone(),
        config,
        backend,
        labels,
        metrics: model_metrics,
        batcher,
    })
}

/// Real forward passes at batch 1 and at the largest batch, so the first request pays no
/// start-up cost and a model that cannot run is caught before it reports ready.
fn warm_up(classifier: &ImageClassifier, max_batch_size: usize) -> Result<(), String> {
    let image = vec![0.0; classifier.input_len()];
    for size in [1, max_batch_size] {
        let batch: Vec<&[f32]> = vec![image.as_slice(); size];
        let out = classifier
            .classify_batch(&batch)
            .map_err(|e| format!("warm-up failed: {e}"))?;
        if out.iter().flatten().any(|p| !p.is_finite()) {
            return Err("warm-up produced non-finite outputs".into());
        }
    }
    Ok(())
}
