//! Step-by-step decoding over many captions at once. Each caption hypothesis carries its
//! own [`DecoderState`]; a step stacks the states of any set of hypotheses — of different
//! images, at different lengths — runs the decoder once for all of them and splits the new
//! states back out, so hypotheses can join and leave between steps.

use burn::nn::lstm::LstmState;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::error::{Result, ZooError};
use crate::models::captioner::{CaptionNet, IMAGE_SIDE, KeyValue};
use crate::models::kv_cache;

/// What one caption hypothesis carries from one decoding step to the next.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a few hundred bytes of handles: boxing would buy nothing
pub enum DecoderState {
    /// LSTM hidden and cell state and the image embedding read beside every word,
    /// `[1, d_model]` each.
    Lstm {
        hidden: Tensor<2>,
        cell: Tensor<2>,
        image: Tensor<2>,
    },
    /// Per layer: keys and values of the image regions (`[1, heads, 64, d_k]`, fixed for
    /// the image) and of the tokens read so far (`[1, heads, read, d_k]`, none yet when
    /// `read` is 0).
    Transformer {
        regions: Vec<KeyValue>,
        tokens: Option<Vec<KeyValue>>,
        read: usize,
    },
}

impl DecoderState {
    /// Tokens the decoder has read for this hypothesis.
    #[cfg(test)]
    pub(crate) fn tokens_read(&self) -> Option<usize> {
        match self {
            DecoderState::Lstm { .. } => None,
            DecoderState::Transformer { read, .. } => Some(*read),
        }
    }
}

/// Encode images given as `[3, 64, 64]` floats each, in one batch, into the state each
/// caption starts from.
pub fn start(net: &CaptionNet, images: &[Vec<f32>], device: &Device) -> Result<Vec<DecoderState>> {
    let side = IMAGE_SIDE;
    if let Some(bad) = images.iter().find(|image| image.len() != 3 * side * side) {
        return Err(ZooError::InvalidInput(format!(
            "an image needs {} values (3×{side}×{side}), not {}",
            3 * side * side,
            bad.len()
        )));
    }
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let batch = images.len();
    let pixels: Vec<f32> = images.iter().flatten().copied().collect();
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [batch, 3, side, side]), device);
    let memory = net.encode(images);
    Ok(match net {
        CaptionNet::Lstm(lstm) => {
            let d = memory.dims()[2];
            let images = memory.clone().reshape([batch, d]);
            let state = lstm.start(memory);
            (0..batch)
                .map(|i| DecoderState::Lstm {
                    hidden: row(&state.hidden, i),
                    cell: row(&state.cell, i),
                    image: row(&images, i),
                })
                .collect()
        }
        CaptionNet::Transformer(transformer) => {
            let regions = transformer.start(memory);
            (0..batch)
                .map(|i| DecoderState::Transformer {
                    regions: regions.iter().map(|kv| kv_row(kv, i)).collect(),
                    tokens: None,
                    read: 0,
                })
                .collect()
        }
    })
}

/// Feed `tokens[i]` to the hypothesis in `states[i]`, all in one batch: the log-probabilities
/// of the next token for each, and their new states.
pub fn step(
    net: &CaptionNet,
    tokens: &[u32],
    states: Vec<DecoderState>,
    device: &Device,
) -> Result<(Vec<Vec<f32>>, Vec<DecoderState>)> {
    if tokens.len() != states.len() {
        return Err(ZooError::InvalidInput(format!(
            "{} tokens for {} decoder states",
            tokens.len(),
            states.len()
        )));
    }
    if tokens.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let batch = tokens.len();
    let ids = Tensor::<1, Int>::from_data(
        TensorData::new(
            tokens.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(),
            [batch],
        ),
        device,
    );
    let (logits, states) = match net {
        CaptionNet::Lstm(lstm) => {
            let (mut hidden, mut cell) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
            let mut images = Vec::with_capacity(batch);
            for state in states {
                match state {
                    DecoderState::Lstm {
                        hidden: h,
                        cell: c,
                        image,
                    } => {
                        hidden.push(h);
                        cell.push(c);
                        images.push(image);
                    }
                    DecoderState::Transformer { .. } => return Err(foreign_state()),
                }
            }
            let state = LstmState::new(Tensor::cat(cell, 0), Tensor::cat(hidden, 0));
            let (logits, state) = lstm.step(ids, Tensor::cat(images.clone(), 0), state);
            let states = images
                .into_iter()
                .enumerate()
                .map(|(i, image)| DecoderState::Lstm {
                    hidden: row(&state.hidden, i),
                    cell: row(&state.cell, i),
                    image,
                })
                .collect();
            (logits, states)
        }
        CaptionNet::Transformer(transformer) => step_transformer(transformer, ids, states, device)?,
    };
    let vocab = logits.dims()[1];
    let values: Vec<f32> = log_softmax(logits, 1)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| ZooError::InvalidInput(format!("{e:?}")))?;
    Ok((values.chunks(vocab).map(<[f32]>::to_vec).collect(), states))
}

fn step_transformer(
    net: &crate::models::captioner::TransformerCaptioner,
    ids: Tensor<1, Int>,
    states: Vec<DecoderState>,
    device: &Device,
) -> Result<(Tensor<2>, Vec<DecoderState>)> {
    let batch = states.len();
    let mut per_row = Vec::with_capacity(batch);
    for state in states {
        match state {
            DecoderState::Transformer {
                regions,
                tokens,
                read,
            } => {
                if read >= net.max_tokens() {
                    return Err(ZooError::InvalidInput(format!(
                        "the caption has reached the decoder's limit of {} tokens",
                        net.max_tokens()
                    )));
                }
                per_row.push((regions, tokens, read));
            }
            DecoderState::Lstm { .. } => return Err(foreign_state()),
        }
    }
    let layers = per_row[0].0.len();
    let regions: Vec<KeyValue> = (0..layers)
        .map(|l| KeyValue {
            keys: Tensor::cat(per_row.iter().map(|r| r.0[l].keys.clone()).collect(), 0),
            values: Tensor::cat(per_row.iter().map(|r| r.0[l].values.clone()).collect(), 0),
        })
        .collect();
    let rows: Vec<_> = per_row
        .iter()
        .map(|(_, tokens, read)| (tokens.as_deref(), *read))
        .collect();
    let stacked = kv_cache::stack(&rows, device);
    let positions = Tensor::<1, Int>::from_data(
        TensorData::new(
            per_row
                .iter()
                .map(|(_, _, read)| *read as i64)
                .collect::<Vec<_>>(),
            [batch],
        ),
        device,
    );
    let (logits, seen) = net.step(ids, positions, stacked.past, regions, stacked.mask);
    let states = per_row
        .into_iter()
        .enumerate()
        .map(|(i, (regions, _, read))| DecoderState::Transformer {
            regions,
            tokens: Some(kv_cache::row(&seen, i, read, stacked.longest)),
            read: read + 1,
        })
        .collect();
    Ok((logits, states))
}

/// Row `i` of a `[batch, d]` tensor, as `[1, d]`.
fn row(t: &Tensor<2>, i: usize) -> Tensor<2> {
    t.clone().slice(s![i..i + 1, ..])
}

/// Row `i` of a batched key/value pair, as `[1, heads, positions, d_k]`.
fn kv_row(kv: &KeyValue, i: usize) -> KeyValue {
    KeyValue {
        keys: kv.keys.clone().slice(s![i..i + 1, .., .., ..]),
        values: kv.values.clone().slice(s![i..i + 1, .., .., ..]),
    }
}

fn foreign_state() -> ZooError {
    ZooError::InvalidInput("the decoder state belongs to another captioner".into())
}
