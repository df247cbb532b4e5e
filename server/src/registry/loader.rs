//! Loading one model folder: weights onto the device, a warm-up pass, executor threads.

use kiln_zoo::{BackendKind, Device};
use std::path::PathBuf;

use kiln_zoo::captioning::captioner::{CaptionOptions, Captioner};
use kiln_zoo::classifier::{ClassifierArchitecture, ImageClassifier};
use kiln_zoo::weights::KeyRemap;

use std::sync::Arc;

use kiln_zoo::language_model::LanguageModel;
use kiln_zoo::text::tokenizer::{BOS_ID, EOS_ID, Tokenizer};

use super::language::NextWordExecutor;
use super::{CaptionerRunner, ClassifierRunner, LanguageModelRunner, ModelHandle, TaskRunner};
use crate::batching::{BatchExecutor, BatchPolicy, Batcher, ExecutorError};
use crate::captioning::{CaptionPolicy, CaptionScheduler};
use crate::generation::{Generator, SchedulerPolicy};
use crate::metrics::Metrics;
use crate::repository::{
    BatchingConfig, CaptionerModelConfig, ClassifierConfig, LanguageModelConfig, ModelConfig,
    ModelEntry, read_labels,
};

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
    key_remap: Vec<KeyRemap>,
    input_shape: [usize; 3],
    device: Device,
}

impl ClassifierSource {
    fn load(&self) -> Result<ImageClassifier, String> {
        ImageClassifier::load(
            &self.architecture,
            &self.weights,
            &self.key_remap,
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
            .logits_batch(&refs)
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
    match entry.config.clone()? {
        ModelConfig::Classify(config) => load_classifier(entry, config, default_backend, metrics),
        ModelConfig::LanguageModel(config) => {
            load_language_model(entry, config, default_backend, metrics)
        }
        ModelConfig::Caption(config) => load_captioner(entry, config, default_backend, metrics),
    }
}

fn batch_policy(batching: &BatchingConfig, instances: usize) -> BatchPolicy {
    BatchPolicy {
        max_batch_size: batching.max_batch_size,
        max_queue_delay: batching.max_queue_delay(),
        preferred_batch_sizes: batching.preferred_batch_sizes.clone(),
        max_queue_size: batching.max_queue_size,
        instances,
    }
}

fn load_language_model(
    entry: &ModelEntry,
    config: LanguageModelConfig,
    default_backend: BackendKind,
    metrics: &Metrics,
) -> Result<ModelHandle, String> {
    let backend = config.backend.unwrap_or(default_backend);
    let device = backend.device().map_err(|e| e.to_string())?;
    let tokenizer = Tokenizer::load(&entry.dir.join(&config.vocab)).map_err(|e| e.to_string())?;
    if tokenizer.vocab_size() != config.architecture.vocab_size() {
        return Err(format!(
            "{} has {} tokens but the model's vocabulary is {}",
            config.vocab.display(),
            tokenizer.vocab_size(),
            config.architecture.vocab_size()
        ));
    }
    let architecture = config.architecture.clone();
    let weights = entry.dir.join(&config.weights);
    let load =
        move || LanguageModel::load(&architecture, &weights, &device).map_err(|e| e.to_string());
    let mut executors: Vec<Box<dyn BatchExecutor<Vec<u32>, Vec<f32>>>> = Vec::new();
    for _ in 0..config.instances {
        let model = load()?;
        warm_up_language_model(&model, config.batching.max_batch_size)?;
        let reload = load.clone();
        executors.push(Box::new(NextWordExecutor {
            model,
            reload: Box::new(reload),
        }));
    }
    let model_metrics = metrics.for_model(&entry.name, &config.version, backend.name());
    let next_word = Batcher::spawn(
        &entry.name,
        batch_policy(&config.batching, config.instances),
        executors,
        model_metrics.clone(),
    )
    .map_err(|e| format!("cannot start executor threads: {e}"))?;
    let tokenizer = Arc::new(tokenizer);
    let g = &config.generation;
    let generator = Generator::spawn(
        &entry.name,
        load()?,
        tokenizer.clone(),
        SchedulerPolicy {
            max_active_sequences: g.max_active_sequences,
            continuous_batching: g.continuous_batching,
            max_queue_size: g.max_queue_size,
        },
        metrics.for_generation(&model_metrics),
    )
    .map_err(|e| format!("cannot start the generation thread: {e}"))?;
    Ok(ModelHandle {
        name: entry.name.clone(),
        version: config.version.clone(),
        backend,
        metrics: model_metrics,
        runner: TaskRunner::LanguageModel(LanguageModelRunner {
            config,
            tokenizer,
            next_word,
            generator,
        }),
    })
}

/// Next-word passes at batch 1 and at the largest batch, and a prefill plus two decoding
/// steps, so a model that cannot run is caught before it reports ready.
fn warm_up_language_model(model: &LanguageModel, max_batch_size: usize) -> Result<(), String> {
    let prompt = [BOS_ID, EOS_ID, BOS_ID];
    let fail = |e: kiln_zoo::ZooError| format!("warm-up failed: {e}");
    for size in [1, max_batch_size] {
        let out = model
            .next_token_log_probs(&vec![&prompt[..]; size])
            .map_err(fail)?;
        if out.iter().flatten().any(|p| p.is_nan()) {
            return Err("warm-up produced NaN outputs".into());
        }
    }
    let (_, state) = model.prefill(&prompt).map_err(fail)?;
    let (_, states) = model.decode(&[EOS_ID], vec![state]).map_err(fail)?;
    model.decode(&[BOS_ID], states).map_err(fail)?;
    Ok(())
}

fn load_classifier(
    entry: &ModelEntry,
    config: ClassifierConfig,
    default_backend: BackendKind,
    metrics: &Metrics,
) -> Result<ModelHandle, String> {
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
        key_remap: config.key_remap.clone(),
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
    let policy = batch_policy(&config.batching, config.instances);
    let batcher = Batcher::spawn(&entry.name, policy, executors, model_metrics.clone())
        .map_err(|e| format!("cannot start executor threads: {e}"))?;
    Ok(ModelHandle {
        name: entry.name.clone(),
        version: config.version.clone(),
        backend,
        metrics: model_metrics,
        runner: TaskRunner::Classifier(ClassifierRunner {
            config,
            labels,
            batcher,
        }),
    })
}

/// Real forward passes at batch 1 and at the largest batch, so the first request pays no
/// start-up cost and a model that cannot run is caught before it reports ready.
fn warm_up(classifier: &ImageClassifier, max_batch_size: usize) -> Result<(), String> {
    let image = vec![0.0; classifier.input_len()];
    for size in [1, max_batch_size] {
        let batch: Vec<&[f32]> = vec![image.as_slice(); size];
        let out = classifier
            .logits_batch(&batch)
            .map_err(|e| format!("warm-up failed: {e}"))?;
        if out.iter().flatten().any(|p| !p.is_finite()) {
            return Err("warm-up produced non-finite outputs".into());
        }
    }
    Ok(())
}

fn load_captioner(
    entry: &ModelEntry,
    config: CaptionerModelConfig,
    default_backend: BackendKind,
    metrics: &Metrics,
) -> Result<ModelHandle, String> {
    let backend = config.backend.unwrap_or(default_backend);
    let device = backend.device().map_err(|e| e.to_string())?;
    let captioner = Captioner::load(
        &config.architecture,
        &entry.dir.join(&config.weights),
        &device,
    )
    .map_err(|e| e.to_string())?;
    let max_tokens_limit = captioner.max_tokens_limit();
    warm_up_captioner(&captioner, &config)?;
    let model_metrics = metrics.for_model(&entry.name, &config.version, backend.name());
    let d = &config.decoding;
    let scheduler = CaptionScheduler::spawn(
        &entry.name,
        captioner,
        CaptionPolicy {
            max_encoder_batch_size: d.max_encoder_batch_size,
            max_active_hypotheses: d.max_active_hypotheses,
            max_queue_size: d.max_queue_size,
        },
        metrics.for_captioning(&model_metrics),
    )
    .map_err(|e| format!("cannot start the captioning thread: {e}"))?;
    Ok(ModelHandle {
        name: entry.name.clone(),
        version: config.version.clone(),
        backend,
        metrics: model_metrics,
        runner: TaskRunner::Captioner(CaptionerRunner {
            config,
            max_tokens_limit,
            scheduler,
        }),
    })
}

/// Captions of one image and of a full encoder batch, by beam search, so a model that
/// cannot run is caught before it reports ready.
fn warm_up_captioner(captioner: &Captioner, config: &CaptionerModelConfig) -> Result<(), String> {
    let image = vec![0.0; config.input.shape().iter().product()];
    let options = CaptionOptions {
        beam_size: 2,
        max_tokens: 4.min(captioner.max_tokens_limit()),
    };
    for size in [1, config.decoding.max_encoder_batch_size] {
        let captions = captioner
            .caption(&vec![image.clone(); size], &options)
            .map_err(|e| format!("warm-up failed: {e}"))?;
        if captions.iter().any(|c| !c.score.is_finite()) {
            return Err("warm-up produced non-finite scores".into());
        }
    }
    Ok(())
}
