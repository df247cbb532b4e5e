//! Inference on raw tensors for every model: what `POST /v2/models/{m}/infer` and gRPC
//! `ModelInfer` do once their wire format is decoded. The tensor's rows become the task's
//! own inputs and go to its entry point together, each as its own item, so the rows of one
//! request and those of concurrent requests share batches — the same batcher or step loop
//! the task routes use.

use std::time::Duration;

use tokio::time::Instant;

use super::describe::{
    CAPTION_OUTPUT, CAPTION_SCORE_OUTPUT, CLASSIFIER_INPUT, CLASSIFIER_LOGITS_OUTPUT,
    CLASSIFIER_OUTPUT, LM_LOG_PROBS_OUTPUT, LM_TEXT_INPUT, LM_TOKEN_IDS_INPUT,
};
use super::tensor::{InputTensor, OutputTensor, TensorData};
use crate::error::KilnError;
use crate::registry::{ModelHandle, TaskRunner};
use crate::task::caption::{CaptionRequestOptions, CaptionerRunner};
use crate::task::deadline_error;
use crate::task::image::ImageInput;
use crate::task::language::{LanguageModelRunner, Prompt};

/// Most classes a classification output may ask for.
pub const MAX_CLASSIFICATION: usize = 1000;

/// An output the caller wants; `classification: Some(k)` asks for the top `k` classes as
/// `"<value>:<index>:<label>"` strings instead of the raw scores.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub classification: Option<usize>,
}

/// The request parameter `timeout`: a positive number of microseconds.
pub fn timeout_micros(value: Option<u64>) -> Result<Duration, KilnError> {
    value
        .filter(|&us| us > 0)
        .map(Duration::from_micros)
        .ok_or_else(|| KilnError::bad_input("timeout must be a positive number of microseconds"))
}

/// Run one request; the outputs come in the order asked for (every output when none were).
/// `timeout`, the request's own parameter, can only bring the deadline closer.
pub async fn infer(
    handle: &ModelHandle,
    inputs: Vec<InputTensor>,
    requested: Vec<RequestedOutput>,
    deadline: Instant,
    timeout: Option<Duration>,
) -> Result<Vec<OutputTensor>, KilnError> {
    let Some(timeout) = timeout else {
        return run(handle, inputs, requested, deadline).await;
    };
    let now = Instant::now();
    let timeout = timeout.min(deadline.saturating_duration_since(now));
    let deadline = now + timeout;
    tokio::time::timeout_at(deadline, run(handle, inputs, requested, deadline))
        .await
        .unwrap_or_else(|_| Err(deadline_error(timeout)))
}

async fn run(
    handle: &ModelHandle,
    inputs: Vec<InputTensor>,
    requested: Vec<RequestedOutput>,
    deadline: Instant,
) -> Result<Vec<OutputTensor>, KilnError> {
    // Every output the model can give, the default one first.
    let (outputs, labels): (Vec<NamedRows>, _) = match &handle.runner {
        TaskRunner::Captioner(c) => return caption_rows(c, inputs, requested, deadline).await,
        TaskRunner::Classifier(c) => {
            check_outputs(&requested, &[CLASSIFIER_OUTPUT, CLASSIFIER_LOGITS_OUTPUT])?;
            let images = image_inputs(single_input(inputs, &[CLASSIFIER_INPUT])?, c.input_spec())?;
            let (logits, probabilities): (Vec<Vec<f32>>, Vec<Vec<f32>>) = c
                .scores(images, deadline)
                .await?
                .into_iter()
                .map(|s| (s.logits, s.probabilities))
                .unzip();
            let outputs = vec![
                (CLASSIFIER_OUTPUT, probabilities),
                (CLASSIFIER_LOGITS_OUTPUT, logits),
            ];
            (outputs, Labels::Classes(&c.labels))
        }
        TaskRunner::LanguageModel(lm) => {
            check_outputs(&requested, &[LM_LOG_PROBS_OUTPUT])?;
            let input = single_input(inputs, &[LM_TEXT_INPUT, LM_TOKEN_IDS_INPUT])?;
            let rows = lm.log_probs(prompts(&input)?, deadline).await?;
            (vec![(LM_LOG_PROBS_OUTPUT, rows)], Labels::Words(lm))
        }
    };
    let requested = if requested.is_empty() {
        vec![RequestedOutput {
            name: outputs[0].0.to_string(),
            classification: None,
        }]
    } else {
        requested
    };
    Ok(requested
        .into_iter()
        .map(|output| {
            let rows = outputs
                .iter()
                .find(|(name, _)| *name == output.name)
                .map_or(&[][..], |(_, rows)| rows.as_slice());
            match output.classification {
                Some(k) => classification(output.name, rows, k, &labels),
                None => scores(output.name, rows),
            }
        })
        .collect())
}

/// An output's name and its rows of scores.
type NamedRows = (&'static str, Vec<Vec<f32>>);

/// What the classification extension names each index after.
enum Labels<'a> {
    Classes(&'a [String]),
    Words(&'a LanguageModelRunner),
}

impl Labels<'_> {
    fn name(&self, index: usize) -> &str {
        match self {
            Labels::Classes(labels) => labels.get(index).map_or("", String::as_str),
            Labels::Words(lm) => lm.token_text(index as u32),
        }
    }
}

fn check_outputs(requested: &[RequestedOutput], available: &[&str]) -> Result<(), KilnError> {
    for output in requested {
        if !available.contains(&output.name.as_str()) {
            return Err(KilnError::bad_input(format!(
                "unknown output '{}'; this model has '{}'",
                output.name,
                available.join("', '")
            )));
        }
        if output.classification == Some(0) || output.classification > Some(MAX_CLASSIFICATION) {
            return Err(KilnError::bad_input(format!(
                "classification must ask for 1..={MAX_CLASSIFICATION} classes"
            )));
        }
    }
    Ok(())
}

/// The one input a model takes, refusing others.
fn single_input(inputs: Vec<InputTensor>, accepted: &[&str]) -> Result<InputTensor, KilnError> {
    let mut inputs = inputs.into_iter();
    match (inputs.next(), inputs.next()) {
        (Some(input), None) if accepted.contains(&input.name.as_str()) => Ok(input),
        (Some(input), None) => Err(KilnError::bad_input(format!(
            "unknown input '{}'; this model takes {}",
            input.name,
            accepted.join(" or ")
        ))),
        _ => Err(KilnError::bad_input(format!(
            "send exactly one input: {}",
            accepted.join(" or ")
        ))),
    }
}

/// Rows of a batch of strings: shape `[N]` or `[N, 1]`.
fn string_rows(input: &InputTensor) -> Result<usize, KilnError> {
    match input.shape.as_slice() {
        [n] | [n, 1] => Ok(*n),
        shape => Err(KilnError::unprocessable(format!(
            "BYTES input '{}' must have shape [N] or [N, 1], not {shape:?}",
            input.name
        ))),
    }
}

/// Preprocess each image and caption them all at once, with the model's default search;
/// outputs `caption` (BYTES `[N]`) and `score` (FP32 `[N]`).
async fn caption_rows(
    captioner: &CaptionerRunner,
    inputs: Vec<InputTensor>,
    requested: Vec<RequestedOutput>,
    deadline: Instant,
) -> Result<Vec<OutputTensor>, KilnError> {
    check_outputs(&requested, &[CAPTION_OUTPUT, CAPTION_SCORE_OUTPUT])?;
    if requested.iter().any(|o| o.classification.is_some()) {
        return Err(KilnError::bad_input(
            "a captioner's outputs have no classes to rank",
        ));
    }
    let input = single_input(inputs, &[CLASSIFIER_INPUT])?;
    let images = image_inputs(input, captioner.input_spec())?;
    let captions = captioner
        .caption(images, CaptionRequestOptions::default(), deadline)
        .await?;
    let names: Vec<String> = if requested.is_empty() {
        vec![CAPTION_OUTPUT.to_string()]
    } else {
        requested.into_iter().map(|o| o.name).collect()
    };
    Ok(names
        .into_iter()
        .map(|name| {
            let data = if name == CAPTION_OUTPUT {
                TensorData::Bytes(
                    captions
                        .iter()
                        .map(|c| c.text.clone().into_bytes())
                        .collect(),
                )
            } else {
                TensorData::Fp32(captions.iter().map(|c| c.score).collect())
            };
            OutputTensor {
                name,
                shape: vec![captions.len()],
                data,
            }
        })
        .collect())
}

/// Each image of an image input: FP32 `[N, C, H, W]` (already normalised), UINT8
/// `[N, H, W, C]` (pixels 0–255), or BYTES `[N]` (PNG/JPEG/WebP files).
fn image_inputs(
    input: InputTensor,
    spec: &kiln_zoo::image_input::ImageSpec,
) -> Result<Vec<ImageInput>, KilnError> {
    let (c, h, w) = (spec.channels, spec.height, spec.width);
    let wrong_shape = |layout: &str, expected: [usize; 3]| {
        KilnError::unprocessable(format!(
            "{} input must have shape [N, {}, {}, {}] ({layout}), not {:?}",
            input.data.datatype().name(),
            expected[0],
            expected[1],
            expected[2],
            input.shape
        ))
    };
    let images = match &input.data {
        TensorData::Fp32(values) => {
            if input.shape.len() != 4 || input.shape[1..] != [c, h, w] {
                return Err(wrong_shape("N, C, H, W", [c, h, w]));
            }
            values
                .chunks_exact(c * h * w)
                .map(|image| ImageInput::Tensor(image.to_vec()))
                .collect()
        }
        TensorData::Uint8(pixels) => {
            if input.shape.len() != 4 || input.shape[1..] != [h, w, c] {
                return Err(wrong_shape("N, H, W, C", [h, w, c]));
            }
            pixels
                .chunks_exact(h * w * c)
                .map(|image| ImageInput::Pixels {
                    height: h,
                    width: w,
                    channels: c,
                    values: image.iter().map(|&p| f32::from(p)).collect(),
                })
                .collect()
        }
        TensorData::Bytes(_) => {
            string_rows(&input)?;
            Vec::new()
        }
        TensorData::Int32(_) | TensorData::Int64(_) => {
            return Err(KilnError::unprocessable(
                "an image input is FP32 [N, C, H, W], UINT8 [N, H, W, C] or BYTES [N] (encoded images)",
            ));
        }
    };
    Ok(match input.data {
        TensorData::Bytes(files) => files.into_iter().map(ImageInput::Encoded).collect(),
        _ => images,
    })
}

/// Each prompt of a language model's input: BYTES `text` `[N]`, or token ids `[N, L]`
/// (INT64 or INT32) after which the model predicts.
fn prompts(input: &InputTensor) -> Result<Vec<Prompt>, KilnError> {
    match (&input.name[..], &input.data) {
        (LM_TEXT_INPUT, TensorData::Bytes(texts)) => {
            string_rows(input)?;
            texts
                .iter()
                .map(|t| {
                    std::str::from_utf8(t)
                        .map(|text| Prompt::Text(text.to_string()))
                        .map_err(|_| KilnError::bad_input("a text element is not valid UTF-8"))
                })
                .collect()
        }
        (LM_TOKEN_IDS_INPUT, TensorData::Int64(ids)) => id_rows(&input.shape, ids),
        (LM_TOKEN_IDS_INPUT, TensorData::Int32(ids)) => {
            let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
            id_rows(&input.shape, &ids)
        }
        (name, data) => Err(KilnError::unprocessable(format!(
            "input '{name}' cannot be {}: '{LM_TEXT_INPUT}' is BYTES, '{LM_TOKEN_IDS_INPUT}' INT64 or INT32",
            data.datatype().name()
        ))),
    }
}

/// Rows of token ids, `[N, L]`.
fn id_rows(shape: &[usize], ids: &[i64]) -> Result<Vec<Prompt>, KilnError> {
    let &[_, len] = shape else {
        return Err(KilnError::unprocessable(format!(
            "'{LM_TOKEN_IDS_INPUT}' must have shape [N, L], not {shape:?}"
        )));
    };
    if len == 0 {
        return Ok(vec![Prompt::TokenIds(Vec::new()); shape[0]]);
    }
    Ok(ids
        .chunks_exact(len)
        .map(|row| Prompt::TokenIds(row.to_vec()))
        .collect())
}

/// The raw scores, `[N, width]` FP32.
fn scores(name: String, rows: &[Vec<f32>]) -> OutputTensor {
    let width = rows.first().map_or(0, Vec::len);
    OutputTensor {
        name,
        shape: vec![rows.len(), width],
        data: TensorData::Fp32(rows.concat()),
    }
}

/// The top `k` of each row as `"<value>:<index>:<label>"`, `[N, k]` BYTES.
fn classification(name: String, rows: &[Vec<f32>], k: usize, labels: &Labels<'_>) -> OutputTensor {
    let k = k.min(rows.first().map_or(0, Vec::len));
    let classes = rows
        .iter()
        .flat_map(|row| {
            kiln_zoo::classifier::top_k(row, k)
                .into_iter()
                .map(|i| format!("{:.6}:{i}:{}", row[i], labels.name(i)).into_bytes())
        })
        .collect();
    OutputTensor {
        name,
        shape: vec![rows.len(), k],
        data: TensorData::Bytes(classes),
    }
}
