//! Loading one model folder: weights onto the device, a warm-up pass, executor threads.

use kiln_zoo::Device;
use std::path::PathBuf;

use kiln_zoo::captioning::captioner::{CaptionOptions, Captioner};
use kiln_zoo::classifier::{ImageClassifier, batch_buckets};

use std::sync::Arc;

use kiln_zoo::language_model::LanguageModel;
use kiln_zoo::text::tokenizer::{BOS_ID, EOS_ID, Tokenizer};

use super::language::NextWordExecutor;
use super::{CaptionerRunner, ClassifierRunner, LanguageModelRunner, ModelHandle, TaskRunner};
use crate::batching::{BatchExecutor, BatchPolicy, Batcher, ExecutorError};
use crate::captioning::{CaptionPolicy, CaptionScheduler};
use crate::generation::{Generator, SchedulerPolicy};
use crate::metrics::Metrics;
use crate::placement::Placement;
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
    config: ClassifierConfig,
    dir: PathBuf,
    device: Device,
    /// Batch sizes batches are padded to, on backends that compile kernels per shape.
    batch_buckets: Vec<usize>,
}

impl ClassifierSource {
    fn load(&self) -> Result<ImageClassifier, String> {
        self.config
            .load_classifier(&self.dir, &self.device)?
            .with_precision(self.config.precision)
            .map(|c| c.with_batch_buckets(self.batch_buckets.clone()))
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
    server: &Placement,
    metrics: &Metrics,
) -> Result<ModelHandle, String> {
    match entry.config.clone()? {
        ModelConfig::Classify(config) => load_classifier(entry, config, server, metrics),
        ModelConfig::LanguageModel(config) => load_language_model(entry, config, server, metrics),
        ModelConfig::Caption(config) => load_captioner(entry, config, server, metrics),
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
    server: &Placement,
    metrics: &Metrics,
) -> Result<ModelHandle, String> {
    let placement = server.for_model(config.backend, config.device);
    let backend = placement.backend;
    let device = placement.open()?;
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
    mut config: ClassifierConfig,
    server: &Placement,
    metrics: &Metrics,
) -> Result<ModelHandle, String> {
    let placement = server.for_model(config.backend, config.device);
    let backend = placement.backend;
    let device = placement.open()?;
    let labels = read_labels(&entry.dir.join(&config.labels))?;
    if labels.len() != config.architecture.num_classes() {
        return Err(format!(
            "{} has {} labels but the model has {} classes",
            config.labels.display(),
            labels.len(),
            config.architecture.num_classes()
        ));
    }
    let mut source = ClassifierSource {
        config: config.clone(),
        dir: entry.dir.clone(),
        device: device.clone(),
        batch_buckets: if backend.compiles_kernels_per_shape() {
            batch_buckets(config.batching.max_batch_size)
        } else {
            Vec::new()
        },
    };
    let reserved_before = kiln_zoo::gpu::reserved_bytes(&device);
    let mut executors: Vec<Box<dyn BatchExecutor<Vec<f32>, Vec<f32>>>> = Vec::new();
    for _ in 0..config.instances {
        let classifier = source.load()?;
        let warm_sizes = match source.batch_buckets.as_slice() {
            [] => vec![1, config.batching.max_batch_size],
            buckets => buckets.to_vec(),
        };
        let fits = warm_up(
            &classifier,
            &warm_sizes,
            &device,
            placement.memory_limit_bytes,
        )?;
        if fits < config.batching.max_batch_size {
            tracing::warn!(
                model = %entry.name,
                configured = config.batching.max_batch_size,
                max_batch_size = fits,
                "largest batch lowered to stay within the device memory limit"
            );
            config.batching.cap_max_batch_size(fits);
            source.batch_buckets.retain(|&b| b <= fits);
        }
        executors.push(Box::new(ClassifierExecutor {
            classifier: classifier.with_batch_buckets(source.batch_buckets.clone()),
            source: source.clone(),
        }));
    }
    let model_metrics = metrics.for_model(&entry.name, &config.version, backend.name());
    if let (Some(before), Some(after)) = (reserved_before, kiln_zoo::gpu::reserved_bytes(&device)) {
        model_metrics.set_device_memory(after.saturating_sub(before));
    }
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

/// Real forward passes at each of `sizes` (ascending), so the first request pays no start-up
/// cost (kernels compiled and autotuned for every padded batch size on GPU backends) and a
/// model that cannot run is caught before it reports ready. With a device memory limit, sizes
/// whose memory would exceed it are not run: returns the largest size that fits.
fn warm_up(
    classifier: &ImageClassifier,
    sizes: &[usize],
    device: &Device,
    memory_limit_bytes: Option<u64>,
) -> Result<usize, String> {
    let image = vec![0.0; classifier.input_len()];
    let reserved = || kiln_zoo::gpu::reserved_bytes(device);
    let mut memory = memory_limit_bytes
        .zip(reserved())
        .map(|(limit, before)| MemoryGrowth::new(limit, before));
    let mut fits = 0;
    for &size in sizes {
        if let Some(growth) = &memory
            && growth.predicted(size) > growth.limit
        {
            break;
        }
        let batch: Vec<&[f32]> = vec![image.as_slice(); size];
        let out = classifier
            .logits_batch(&batch)
            .map_err(|e| format!("warm-up failed: {e}"))?;
        if out.iter().flatten().any(|p| !p.is_finite()) {
            return Err("warm-up produced non-finite outputs".into());
        }
        if let (Some(growth), Some(now)) = (&mut memory, reserved()) {
            growth.observe(size, now);
            if now > growth.limit {
                break;
            }
        }
        fits = size;
    }
    if fits == 0 {
        let limit = memory.map_or(0, |g| g.limit);
        return Err(format!(
            "one image does not fit in the device memory limit of {} MiB",
            limit >> 20
        ));
    }
    Ok(fits)
}

/// Device memory held after each warm-up batch, to predict what the next, larger one needs:
/// the pools grow about linearly with the batch size.
#[derive(Debug, Clone, Copy)]
struct MemoryGrowth {
    limit: u64,
    /// (batch size, bytes reserved after it) of the last batch run; size 0 before any.
    last: (usize, u64),
    /// Largest growth seen per extra image.
    bytes_per_image: f64,
}

impl MemoryGrowth {
    fn new(limit: u64, reserved_before: u64) -> Self {
        Self {
            limit,
            last: (0, reserved_before),
            bytes_per_image: 0.0,
        }
    }

    fn observe(&mut self, size: usize, reserved: u64) {
        let (last_size, last_reserved) = self.last;
        if size > last_size {
            let per_image =
                reserved.saturating_sub(last_reserved) as f64 / (size - last_size) as f64;
            self.bytes_per_image = self.bytes_per_image.max(per_image);
        }
        self.last = (size, reserved);
    }

    fn predicted(&self, size: usize) -> u64 {
        let (last_size, last_reserved) = self.last;
        let extra = size.saturating_sub(last_size) as f64 * self.bytes_per_image;
        last_reserved + extra as u64
    }
}

fn load_captioner(
    entry: &ModelEntry,
    config: CaptionerModelConfig,
    server: &Placement,
    metrics: &Metrics,
) -> Result<ModelHandle, String> {
    let placement = server.for_model(config.backend, config.device);
    let backend = placement.backend;
    let device = placement.open()?;
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

#[cfg(test)]
mod tests {
    use super::MemoryGrowth;

    #[test]
    fn memory_growth_predicts_linearly_from_the_steepest_step() {
        let mut growth = MemoryGrowth::new(1_000, 100);
        assert_eq!(
            growth.predicted(1),
            100,
            "nothing is known before the first batch"
        );
        growth.observe(1, 110);
        growth.observe(2, 120);
        growth.observe(4, 180); // 30 bytes per extra image
        assert_eq!(growth.predicted(8), 180 + 4 * 30);
        growth.observe(8, 200); // pages reused: the steepest step still counts
        assert_eq!(growth.predicted(16), 200 + 8 * 30);
    }
}
