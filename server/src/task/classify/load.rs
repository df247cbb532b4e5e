//! Loading a classifier: its weights onto the device, a warm-up at every batch size it will
//! run (within the device's memory limit), and one executor per instance behind a batcher.

use std::path::PathBuf;
use std::sync::Arc;

use kiln_zoo::Device;
use kiln_zoo::classifier::{ImageClassifier, batch_buckets};

use super::ClassifierRunner;
use super::config::{ClassifierConfig, read_labels};
use crate::batching::{Admission, BatchExecutor, Batcher, ExecutorError};
use crate::task::{LoadContext, LoadError, Loaded};

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
    fn load(&self) -> Result<ImageClassifier, LoadError> {
        Ok(self
            .config
            .load_classifier(&self.dir, &self.device)?
            .with_precision(self.config.precision)
            .map(|c| c.with_batch_buckets(self.batch_buckets.clone()))?)
    }
}

impl BatchExecutor<Vec<f32>, Vec<f32>> for ClassifierExecutor {
    fn execute(&mut self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ExecutorError> {
        let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        self.classifier
            .logits_batch(&refs)
            .map_err(ExecutorError::new)
    }

    fn restart(&mut self) -> Result<(), ExecutorError> {
        self.classifier = self.source.load().map_err(ExecutorError::new)?;
        tracing::info!("executor reloaded its model");
        Ok(())
    }
}

/// Load a classifier folder and start its batcher. Blocking: call it off the async workers,
/// inside a tokio runtime context (the batcher task is spawned on it).
pub fn load(
    context: &LoadContext<'_>,
    mut config: ClassifierConfig,
) -> Result<Loaded<ClassifierRunner>, LoadError> {
    let placement = context.placement.for_model(config.backend, config.device);
    let backend = placement.backend;
    let device = placement.open()?;
    let labels = read_labels(&context.dir.join(&config.labels))?;
    if labels.len() != config.architecture.num_classes() {
        return Err(LoadError::Mismatch(format!(
            "{} has {} labels but the model has {} classes",
            config.labels.display(),
            labels.len(),
            config.architecture.num_classes()
        )));
    }
    let mut source = ClassifierSource {
        config: config.clone(),
        dir: context.dir.to_path_buf(),
        device: device.clone(),
        batch_buckets: if backend.compiles_kernels_per_shape() {
            batch_buckets(config.batching.max_batch_size)
        } else {
            Vec::new()
        },
    };
    let reserved_before = kiln_zoo::gpu::reserved_bytes(&device);
    let mut executors: Vec<Box<dyn BatchExecutor<Vec<f32>, Vec<f32>>>> = Vec::new();
    for instance in 0..config.instances {
        let classifier = source.load()?;
        if instance == 0 {
            tracing::info!(
                model = %context.name,
                cpu_kernels = classifier.uses_cpu_kernels(),
                "network prepared: Kiln's CPU kernels where true, Burn's ops otherwise"
            );
        }
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
                model = %context.name,
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
    let metrics = context
        .metrics
        .for_model(context.name, &config.version, backend.name());
    if let (Some(before), Some(after)) = (reserved_before, kiln_zoo::gpu::reserved_bytes(&device)) {
        metrics.set_device_memory(after.saturating_sub(before));
    }
    let admission = Admission::counted(config.batching.max_queue_size, metrics.pending_gauge());
    let batcher = Batcher::spawn(
        context.name,
        config.batching.policy(),
        admission,
        executors,
        metrics.clone(),
    )
    .map_err(LoadError::Threads)?;
    Ok(Loaded {
        backend,
        metrics: metrics.clone(),
        runner: ClassifierRunner {
            config,
            labels,
            batcher,
            metrics: Arc::clone(&metrics),
        },
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
) -> Result<usize, LoadError> {
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
            .map_err(|e| LoadError::WarmUp(e.to_string()))?;
        if out.iter().flatten().any(|p| !p.is_finite()) {
            return Err(LoadError::WarmUp("non-finite outputs".into()));
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
        return Err(LoadError::DeviceMemory(format!(
            "one image does not fit in the device memory limit of {} MiB",
            limit >> 20
        )));
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
