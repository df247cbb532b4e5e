//! What a model looks like through the Open Inference Protocol: its tensors (metadata) and
//! its configuration, shared by the HTTP and gRPC endpoints.

use super::tensor::DataType;
use crate::batching::{BatchingConfig, Choice, LatencyTarget, Objective};
use crate::registry::{ModelHandle, TaskRunner};

/// A classifier's input: FP32 `[N, C, H, W]` (also UINT8 `[N, H, W, C]` or BYTES `[N]`).
pub const CLASSIFIER_INPUT: &str = "input";
/// A classifier's output: class probabilities `[N, classes]`.
pub const CLASSIFIER_OUTPUT: &str = "probabilities";
/// A classifier's other output: the network's raw scores `[N, classes]`, before softmax.
pub const CLASSIFIER_LOGITS_OUTPUT: &str = "logits";
/// A language model's text input: BYTES `[N]`.
pub const LM_TEXT_INPUT: &str = "text";
/// A language model's alternative input: token ids `[N, L]`.
pub const LM_TOKEN_IDS_INPUT: &str = "token_ids";
/// A language model's output: next-token log-probabilities `[N, vocabulary]`.
pub const LM_LOG_PROBS_OUTPUT: &str = "log_probabilities";
/// A captioner's output: the caption of each image, BYTES `[N]`.
pub const CAPTION_OUTPUT: &str = "caption";
/// A captioner's other output: each caption's log-probability, FP32 `[N]`.
pub const CAPTION_SCORE_OUTPUT: &str = "score";

/// Name, datatype and shape of one tensor; `-1` is a dimension of any size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct TensorMetadata {
    pub name: &'static str,
    #[serde(serialize_with = "datatype_name")]
    #[schema(value_type = String, example = "FP32")]
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

impl TensorMetadata {
    fn new(name: &'static str, datatype: DataType, shape: Vec<i64>) -> Self {
        Self {
            name,
            datatype,
            shape,
        }
    }
}

fn datatype_name<S: serde::Serializer>(datatype: &DataType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(datatype.name())
}

/// The tensors a model takes and gives. The batch dimension comes first, as `-1`.
pub fn tensors(handle: &ModelHandle) -> (Vec<TensorMetadata>, Vec<TensorMetadata>) {
    match &handle.runner {
        TaskRunner::Classifier(c) => {
            let spec = c.input_spec();
            let chw = [spec.channels, spec.height, spec.width].map(|d| d as i64);
            (
                vec![TensorMetadata::new(
                    CLASSIFIER_INPUT,
                    DataType::Fp32,
                    [&[-1][..], &chw].concat(),
                )],
                [CLASSIFIER_OUTPUT, CLASSIFIER_LOGITS_OUTPUT]
                    .map(|name| {
                        TensorMetadata::new(name, DataType::Fp32, vec![-1, c.labels.len() as i64])
                    })
                    .to_vec(),
            )
        }
        TaskRunner::LanguageModel(lm) => (
            vec![TensorMetadata::new(
                LM_TEXT_INPUT,
                DataType::Bytes,
                vec![-1],
            )],
            vec![TensorMetadata::new(
                LM_LOG_PROBS_OUTPUT,
                DataType::Fp32,
                vec![-1, lm.tokenizer.vocab_size() as i64],
            )],
        ),
        TaskRunner::Captioner(c) => {
            let spec = c.input_spec();
            let chw = [spec.channels, spec.height, spec.width].map(|d| d as i64);
            (
                vec![TensorMetadata::new(
                    CLASSIFIER_INPUT,
                    DataType::Fp32,
                    [&[-1][..], &chw].concat(),
                )],
                vec![
                    TensorMetadata::new(CAPTION_OUTPUT, DataType::Bytes, vec![-1]),
                    TensorMetadata::new(CAPTION_SCORE_OUTPUT, DataType::Fp32, vec![-1]),
                ],
            )
        }
    }
}

/// The platform a model reports: Kiln on the Burn backend it runs on.
pub fn platform(handle: &ModelHandle) -> String {
    format!("burn-{}", handle.backend)
}

/// A model's configuration in the protocol's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfigView {
    pub name: String,
    pub platform: String,
    pub max_batch_size: usize,
    pub preferred_batch_sizes: Vec<usize>,
    pub max_queue_delay_us: u64,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    /// For the output whose classes have names: the labels file.
    pub label_filename: Option<String>,
    /// With a latency target, what it is and what the batcher chose for it.
    pub latency_target: Option<LatencyTargetView>,
    /// With a step target (generation, captioning), what it is and the width chosen for it.
    pub step_target: Option<StepTargetView>,
}

/// A step loop's target and how many rows its steps may hold under it now.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct StepTargetView {
    pub target_step_p99_ms: f64,
    /// Sequences (generation) or hypotheses (captioning) a step may hold now.
    pub max_step_width: usize,
}

/// A latency target and the batcher's current choice under it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct LatencyTargetView {
    pub target_p99_ms: f64,
    #[schema(value_type = String, example = "throughput")]
    pub objective: Objective,
    /// The largest batch the batcher forms now.
    pub batch_size: usize,
    /// How long it lets a batch wait for company now.
    pub queue_delay_microseconds: u64,
}

pub fn config(handle: &ModelHandle) -> ModelConfigView {
    let (inputs, outputs) = tensors(handle);
    let (mut batching, label_filename, live, step) = match &handle.runner {
        TaskRunner::Classifier(c) => (
            c.config.batching.clone(),
            Some(c.config.labels.display().to_string()),
            Some(c.batching()),
            None,
        ),
        TaskRunner::LanguageModel(lm) => (
            lm.config.batching.clone(),
            Some(lm.config.vocab.display().to_string()),
            Some(lm.batching()),
            lm.step_target(),
        ),
        // Images are encoded in batches as they arrive; while captions decode, a group
        // gathers to the preferred size for at most the queue delay.
        TaskRunner::Captioner(c) => (
            BatchingConfig {
                max_batch_size: c.config.decoding.max_encoder_batch_size,
                max_queue_delay_us: (c.config.decoding.max_encoder_wait_ms * 1e3).round() as u64,
                preferred_batch_sizes: vec![c.config.decoding.min_encoder_batch_size],
                max_queue_size: c.config.decoding.max_queue_size,
                ..BatchingConfig::default()
            },
            None,
            None,
            c.step_target(),
        ),
    };
    let latency_target = live.and_then(|(choice, target)| {
        let target = target?;
        // Clients that size their batches by the preferred size see the current choice.
        batching.preferred_batch_sizes = vec![choice.batch_size];
        batching.max_queue_delay_us = choice.queue_delay.as_micros() as u64;
        Some(target_view(target, choice))
    });
    ModelConfigView {
        name: handle.name.clone(),
        platform: platform(handle),
        max_batch_size: batching.max_batch_size,
        preferred_batch_sizes: batching.preferred_batch_sizes,
        max_queue_delay_us: batching.max_queue_delay_us,
        inputs,
        outputs,
        label_filename,
        latency_target,
        step_target: step.map(|(target, width)| StepTargetView {
            target_step_p99_ms: target.step_p99.as_secs_f64() * 1e3,
            max_step_width: width,
        }),
    }
}

fn target_view(target: LatencyTarget, choice: Choice) -> LatencyTargetView {
    LatencyTargetView {
        target_p99_ms: target.p99.as_secs_f64() * 1e3,
        objective: target.objective,
        batch_size: choice.batch_size,
        queue_delay_microseconds: choice.queue_delay.as_micros() as u64,
    }
}

/// Extensions of the protocol Kiln implements, as `GET /v2` and `ServerMetadata` list them.
pub const EXTENSIONS: [&str; 5] = [
    "classification",
    "binary_tensor_data",
    "model_repository",
    "statistics",
    "model_configuration",
];
