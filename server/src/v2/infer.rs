//! Inference on raw tensors for every model: what `POST /v2/models/{m}/infer` and gRPC
//! `ModelInfer` do once their wire format is decoded. Each row of a request goes to the
//! model's batcher as its own item, all at once, so the rows of one request and those of
//! concurrent requests share batches — the same batcher the task routes use.

use std::time::Duration;

use futures_util::future::try_join_all;
use kiln_zoo::classifier::softmax_in_place;
use kiln_zoo::text::tokenizer::BOS_ID;
use tokio::time::Instant;

use super::describe::{
    CAPTION_OUTPUT, CAPTION_SCORE_OUTPUT, CLASSIFIER_INPUT, CLASSIFIER_LOGITS_OUTPUT,
    CLASSIFIER_OUTPUT, LM_LOG_PROBS_OUTPUT, LM_TEXT_INPUT, LM_TOKEN_IDS_INPUT,
};
use super::tensor::{InputTensor, OutputTensor, TensorData};
use crate::deadline::deadline_error;
use crate::error::KilnError;
use crate::registry::{
    CaptionerRunner, ClassifierRunner, LanguageModelRunner, ModelHandle, TaskRunner,
};
use crate::tasks::decode_off_thread_if_large;
use crate::tasks::text_input::check_prompt_length;

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
            let logits = classify_rows(c, inputs, deadline).await?;
            // Logits are copied only when asked for; the probabilities reuse their rows.
            let wants_logits = requested.iter().any(|o| o.name == CLASSIFIER_LOGITS_OUTPUT);
            let (mut probabilities, logits) = if wants_logits {
                (logits.clone(), Some(logits))
            } else {
                (logits, None)
            };
            for row in &mut probabilities {
                softmax_in_place(row);
            }
            let mut outputs = vec![(CLASSIFIER_OUTPUT, probabilities)];
            outputs.extend(logits.map(|logits| (CLASSIFIER_LOGITS_OUTPUT, logits)));
            (outputs, Labels::Classes(&c.labels))
        }
        TaskRunner::LanguageModel(lm) => {
            check_outputs(&requested, &[LM_LOG_PROBS_OUTPUT])?;
            let rows = next_token_rows(lm, inputs, deadline).await?;
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
    let spec = captioner.input_spec().clone();
    let images = decode_off_thread_if_large(input.data.byte_len(), move || {
        preprocess_images(&spec, input)
    })
    .await?;
    let options = captioner.options(None, None)?;
    let captions = try_join_all(
        images
            .into_iter()
            .map(|image| captioner.caption(image, options, Some(deadline))),
    )
    .await
    .map_err(KilnError::from)?;
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

/// Preprocess each image, then run them through the classifier's batcher together; the
/// network's logits for each.
async fn classify_rows(
    classifier: &ClassifierRunner,
    inputs: Vec<InputTensor>,
    deadline: Instant,
) -> Result<Vec<Vec<f32>>, KilnError> {
    let input = single_input(inputs, &[CLASSIFIER_INPUT])?;
    let spec = classifier.input_spec().clone();
    let images = decode_off_thread_if_large(input.data.byte_len(), move || {
        preprocess_images(&spec, input)
    })
    .await?;
    try_join_all(
        images
            .into_iter()
            .map(|image| classifier.logits(image, Some(deadline))),
    )
    .await
    .map_err(KilnError::from)
}

/// Model inputs from FP32 `[N, C, H, W]` (already normalised), UINT8 `[N, H, W, C]` (pixels
/// 0–255), or BYTES `[N]` (PNG/JPEG/WebP files).
fn preprocess_images(
    spec: &kiln_zoo::image_input::ImageSpec,
    input: InputTensor,
) -> Result<Vec<Vec<f32>>, KilnError> {
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
    match &input.data {
        TensorData::Fp32(values) => {
            if input.shape.len() != 4 || input.shape[1..] != [c, h, w] {
                return Err(wrong_shape("N, C, H, W", [c, h, w]));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(KilnError::unprocessable("FP32 input holds NaN or infinity"));
            }
            Ok(values
                .chunks_exact(c * h * w)
                .map(<[f32]>::to_vec)
                .collect())
        }
        TensorData::Uint8(pixels) => {
            if input.shape.len() != 4 || input.shape[1..] != [h, w, c] {
                return Err(wrong_shape("N, H, W, C", [h, w, c]));
            }
            pixels
                .chunks_exact(h * w * c)
                .map(|image| {
                    let hwc: Vec<f32> = image.iter().map(|&p| f32::from(p)).collect();
                    spec.from_pixels(h, w, c, &hwc).map_err(KilnError::from)
                })
                .collect()
        }
        TensorData::Bytes(files) => {
            string_rows(&input)?;
            files
                .iter()
                .map(|file| spec.decode(file).map_err(KilnError::from))
                .collect()
        }
        TensorData::Int32(_) | TensorData::Int64(_) => Err(KilnError::unprocessable(
            "an image input is FP32 [N, C, H, W], UINT8 [N, H, W, C] or BYTES [N] (encoded images)",
        )),
    }
}

/// Next-token log-probabilities for each prompt: BYTES `text` `[N]`, or token ids `[N, L]`
/// (INT64 or INT32) after which the model predicts.
async fn next_token_rows(
    lm: &LanguageModelRunner,
    inputs: Vec<InputTensor>,
    deadline: Instant,
) -> Result<Vec<Vec<f32>>, KilnError> {
    let input = single_input(inputs, &[LM_TEXT_INPUT, LM_TOKEN_IDS_INPUT])?;
    let prompts = prompts(lm, &input)?;
    for prompt in &prompts {
        check_prompt_length(prompt.len(), &lm.config.generation, lm.context_length())?;
    }
    try_join_all(
        prompts
            .into_iter()
            .map(|prompt| lm.log_probs(prompt, Some(deadline))),
    )
    .await
    .map_err(KilnError::from)
}

/// `<bos>` and each prompt's tokens.
fn prompts(lm: &LanguageModelRunner, input: &InputTensor) -> Result<Vec<Vec<u32>>, KilnError> {
    match (&input.name[..], &input.data) {
        (LM_TEXT_INPUT, TensorData::Bytes(texts)) => {
            string_rows(input)?;
            texts
                .iter()
                .map(|t| {
                    std::str::from_utf8(t)
                        .map(|text| lm.encode_prompt(text))
                        .map_err(|_| KilnError::bad_input("a text element is not valid UTF-8"))
                })
                .collect()
        }
        (LM_TOKEN_IDS_INPUT, TensorData::Int64(ids)) => id_prompts(lm, &input.shape, ids),
        (LM_TOKEN_IDS_INPUT, TensorData::Int32(ids)) => {
            let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
            id_prompts(lm, &input.shape, &ids)
        }
        (name, data) => Err(KilnError::unprocessable(format!(
            "input '{name}' cannot be {}: '{LM_TEXT_INPUT}' is BYTES, '{LM_TOKEN_IDS_INPUT}' INT64 or INT32",
            data.datatype().name()
        ))),
    }
}

/// Rows of token ids, `[N, L]`, each checked against the vocabulary.
fn id_prompts(
    lm: &LanguageModelRunner,
    shape: &[usize],
    ids: &[i64],
) -> Result<Vec<Vec<u32>>, KilnError> {
    let &[rows, len] = shape else {
        return Err(KilnError::unprocessable(format!(
            "'{LM_TOKEN_IDS_INPUT}' must have shape [N, L], not {shape:?}"
        )));
    };
    let vocab = lm.tokenizer.vocab_size();
    (0..rows)
        .map(|r| {
            std::iter::once(Ok(BOS_ID))
                .chain(ids[r * len..(r + 1) * len].iter().map(|&id| {
                    usize::try_from(id)
                        .ok()
                        .filter(|&i| i < vocab)
                        .map(|i| i as u32)
                        .ok_or_else(|| {
                            KilnError::unprocessable(format!(
                                "token id {id} is outside this model's vocabulary of {vocab}"
                            ))
                        })
                }))
                .collect()
        })
        .collect()
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
