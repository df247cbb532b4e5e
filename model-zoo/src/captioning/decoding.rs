//! Step-by-step decoding over many captions at once. Each caption hypothesis carries its
//! own [`DecoderState`]; a step stacks the states of any set of hypotheses — of different
//! images, at different lengths — runs the decoder once for all of them and splits the new
//! states back out, so hypotheses can join and leave between steps.

use burn::nn::lstm::LstmState;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::error::{Result, ZooError};
use crate::models::captioner::{CaptionNet, IMAGE_SIDE, KeyValue};

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
    pub fn tokens_read(&self) -> Option<usize> {
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
                    regions: regions.iter().map(|kv| kv_row(kv, i, None)).collect(),
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
    let longest = per_row.iter().map(|(_, _, read)| *read).max().unwrap_or(0);
    let stack = |pick: &dyn Fn(usize) -> Vec<Tensor<4>>| -> Vec<Tensor<4>> {
        (0..layers)
            .map(|l| Tensor::cat(pick(l), 0))
            .collect::<Vec<_>>()
    };
    let region_keys = stack(&|l| per_row.iter().map(|r| r.0[l].keys.clone()).collect());
    let region_values = stack(&|l| per_row.iter().map(|r| r.0[l].values.clone()).collect());
    let regions: Vec<KeyValue> = region_keys
        .into_iter()
        .zip(region_values)
        .map(|(keys, values)| KeyValue { keys, values })
        .collect();
    // Every row's past is padded to the longest; the mask hides the padding, and the new
    // token's own key sits after it, at index `longest`.
    let past = (longest > 0).then(|| {
        let padded = |t: Option<&Tensor<4>>, read: usize, like: &Tensor<4>| {
            let [_, heads, _, d_k] = like.dims();
            let padding = Tensor::zeros([1, heads, longest - read, d_k], device);
            match t {
                Some(t) if read == longest => t.clone(),
                Some(t) => Tensor::cat(vec![t.clone(), padding], 2),
                None => padding,
            }
        };
        (0..layers)
            .map(|l| {
                let like = &per_row[0].0[l].keys;
                let pick = |values: bool| {
                    per_row
                        .iter()
                        .map(|(_, tokens, read)| {
                            let kv = tokens.as_ref().map(|t| &t[l]);
                            let t = kv.map(|kv| if values { &kv.values } else { &kv.keys });
                            padded(t, *read, like)
                        })
                        .collect::<Vec<_>>()
                };
                KeyValue {
                    keys: Tensor::cat(pick(false), 0),
                    values: Tensor::cat(pick(true), 0),
                }
            })
            .collect::<Vec<_>>()
    });
    let mut hidden_mask = Vec::with_capacity(batch * (longest + 1));
    for (_, _, read) in &per_row {
        hidden_mask.extend((0..=longest).map(|j| j >= *read && j < longest));
    }
    let mask = Tensor::<4, Bool>::from_data(
        TensorData::new(hidden_mask, [batch, 1, 1, longest + 1]),
        device,
    );
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
    let (logits, seen) = net.step(ids, positions, past, regions, mask);
    let states = per_row
        .into_iter()
        .enumerate()
        .map(|(i, (regions, _, read))| DecoderState::Transformer {
            regions,
            tokens: Some(
                seen.iter()
                    .map(|kv| kv_row(kv, i, Some((read, longest))))
                    .collect(),
            ),
            read: read + 1,
        })
        .collect();
    Ok((logits, states))
}

/// Row `i` of a `[batch, d]` tensor, as `[1, d]`.
fn row(t: &Tensor<2>, i: usize) -> Tensor<2> {
    t.clone().slice(s![i..i + 1, ..])
}

/// Row `i` of a batched key/value pair; with `Some((read, longest))` only the row's own
/// `read` positions and the new one at `longest` are kept, dropping its padding.
fn kv_row(kv: &KeyValue, i: usize, padded: Option<(usize, usize)>) -> KeyValue {
    let keep = |t: &Tensor<4>| match padded {
        None => t.clone().slice(s![i..i + 1, .., .., ..]),
        Some((read, longest)) => {
            let new = t.clone().slice(s![i..i + 1, .., longest..longest + 1, ..]);
            if read == 0 {
                new
            } else {
                let own = t.clone().slice(s![i..i + 1, .., 0..read, ..]);
                Tensor::cat(vec![own, new], 2)
            }
        }
    };
    KeyValue {
        keys: keep(&kv.keys),
        values: keep(&kv.values),
    }
}

fn foreign_state() -> ZooError {
    ZooError::InvalidInput("the decoder state belongs to another captioner".into())
}
