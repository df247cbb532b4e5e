//! The sequences a generation loop decodes together, their states kept stacked between
//! steps. A step then feeds the stacked states straight to the network, and the network's
//! grown states are the next step's input: nothing is padded, split or copied per sequence.
//! Rows are rebuilt only when the set changes: rows that leave are dropped with one gather,
//! sequences that join are appended.
//!
//! Transformer caches are right-aligned: every row's newest position is the last column,
//! and a row that has read fewer tokens than the longest has hidden columns on its left.
//! A joining row is padded on the left; columns no row uses any more are cut off when rows
//! leave, so the batch is never wider than its longest sequence.

use burn::prelude::*;

use crate::error::{Result, ZooError};
use crate::language_model::SequenceState;
use crate::models::recurrent_lm::LayerState;
use crate::models::transformer_lm::KeyValue;

/// Sequences decoded together, each row known by the caller's id.
#[derive(Debug, Default)]
pub struct DecodeBatch {
    ids: Vec<u64>,
    stacked: Option<Stacked>,
}

/// The rows' states, stacked along the batch dimension.
#[derive(Debug, Clone)]
pub(crate) enum Stacked {
    /// Per layer, hidden (and cell) state `[rows, d_model]`.
    Recurrent(Vec<LayerState>),
    /// Per layer, keys and values `[rows, heads, columns, d_k]`, right-aligned, with the
    /// number of tokens each row has read.
    Transformer {
        caches: Vec<KeyValue>,
        read: Vec<usize>,
    },
}

impl DecodeBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The rows' ids, in the order of a step's tokens and outputs.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Keep only the rows whose id `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let kept: Vec<usize> = (0..self.ids.len()).filter(|&i| keep(self.ids[i])).collect();
        if kept.len() == self.ids.len() {
            return;
        }
        self.ids = kept.iter().map(|&i| self.ids[i]).collect();
        if kept.is_empty() {
            self.stacked = None;
            return;
        }
        let Some(stacked) = self.stacked.take() else {
            return;
        };
        let device = stacked.device();
        let rows = Tensor::<1, Int>::from_data(
            TensorData::new(kept.iter().map(|&i| i as i64).collect(), [kept.len()]),
            &device,
        );
        self.stacked = Some(match stacked {
            Stacked::Recurrent(layers) => Stacked::Recurrent(
                layers
                    .into_iter()
                    .map(|l| LayerState {
                        hidden: l.hidden.select(0, rows.clone()),
                        cell: l.cell.map(|c| c.select(0, rows.clone())),
                    })
                    .collect(),
            ),
            Stacked::Transformer { caches, read } => {
                let read: Vec<usize> = kept.iter().map(|&i| read[i]).collect();
                let columns = caches.first().map_or(0, |kv| kv.keys.dims()[2]);
                // Columns left of the longest remaining row hide every row: cut them off.
                let unused = columns - read.iter().copied().max().unwrap_or(0);
                let keep = |t: Tensor<4>| {
                    let t = t.select(0, rows.clone());
                    if unused == 0 {
                        t
                    } else {
                        t.slice(s![.., .., unused..columns, ..])
                    }
                };
                Stacked::Transformer {
                    caches: caches.into_iter().map(|kv| kv.map(keep)).collect(),
                    read,
                }
            }
        });
    }

    /// Add sequences, each with the state its prefill returned. States of another kind
    /// than the batch's are refused, and the batch is left as it was.
    pub fn join(&mut self, joining: Vec<(u64, SequenceState)>) -> Result<()> {
        let recurrent = |s: &SequenceState| matches!(s, SequenceState::Recurrent(_));
        let Some(first) = joining.first() else {
            return Ok(());
        };
        let kind = match &self.stacked {
            Some(Stacked::Recurrent(_)) => true,
            Some(Stacked::Transformer { .. }) => false,
            None => recurrent(&first.1),
        };
        if joining.iter().any(|(_, s)| recurrent(s) != kind) {
            return Err(ZooError::InvalidInput(
                "state belongs to another model".into(),
            ));
        }
        let stacked = self.stacked.take();
        let mut layer_parts = Vec::with_capacity(joining.len() + 1);
        let mut cache_parts = Vec::with_capacity(joining.len() + 1);
        match stacked {
            Some(Stacked::Recurrent(layers)) => layer_parts.push(layers),
            Some(Stacked::Transformer { caches, read }) => cache_parts.push((caches, read)),
            None => {}
        }
        for (id, state) in joining {
            self.ids.push(id);
            match state {
                SequenceState::Recurrent(layers) => layer_parts.push(layers),
                SequenceState::Transformer(cache) => {
                    let read = cache.first().map_or(0, |kv| kv.keys.dims()[2]);
                    cache_parts.push((cache, vec![read]));
                }
            }
        }
        self.stacked = Some(if kind {
            Stacked::Recurrent(cat_layers(layer_parts))
        } else {
            cat_right_aligned(cache_parts)
        });
        Ok(())
    }

    pub(crate) fn stacked(&self) -> Option<&Stacked> {
        self.stacked.as_ref()
    }

    /// The states after a step, for the same rows.
    pub(crate) fn advance(&mut self, stacked: Stacked) {
        self.stacked = Some(stacked);
    }
}

impl Stacked {
    fn device(&self) -> Device {
        match self {
            Stacked::Recurrent(layers) => layers[0].hidden.device(),
            Stacked::Transformer { caches, .. } => caches[0].keys.device(),
        }
    }
}

/// Recurrent states of several groups of rows, one group after the other.
fn cat_layers(parts: Vec<Vec<LayerState>>) -> Vec<LayerState> {
    let layers = parts.first().map_or(0, Vec::len);
    (0..layers)
        .map(|l| LayerState {
            hidden: Tensor::cat(parts.iter().map(|p| p[l].hidden.clone()).collect(), 0),
            cell: parts[0][l]
                .cell
                .as_ref()
                .map(|_| Tensor::cat(parts.iter().filter_map(|p| p[l].cell.clone()).collect(), 0)),
        })
        .collect()
}

/// Right-aligned caches of several groups of rows, one after the other, each padded on the
/// left to the widest.
fn cat_right_aligned(parts: Vec<(Vec<KeyValue>, Vec<usize>)>) -> Stacked {
    let width = |caches: &[KeyValue]| caches.first().map_or(0, |kv| kv.keys.dims()[2]);
    let columns = parts.iter().map(|(c, _)| width(c)).max().unwrap_or(0);
    let layers = parts.first().map_or(0, |(c, _)| c.len());
    let pad_left = |t: &Tensor<4>| {
        let [rows, heads, have, d_k] = t.dims();
        if have == columns {
            return t.clone();
        }
        let padding = Tensor::zeros([rows, heads, columns - have, d_k], &t.device());
        Tensor::cat(vec![padding, t.clone()], 2)
    };
    let caches = (0..layers)
        .map(|l| KeyValue {
            keys: Tensor::cat(parts.iter().map(|(c, _)| pad_left(&c[l].keys)).collect(), 0),
            values: Tensor::cat(
                parts.iter().map(|(c, _)| pad_left(&c[l].values)).collect(),
                0,
            ),
        })
        .collect();
    let read = parts.into_iter().flat_map(|(_, r)| r).collect();
    Stacked::Transformer { caches, read }
}

/// The attention mask of one step over right-aligned caches of `columns` columns:
/// `[rows, 1, 1, columns + 1]`, true where a row's column is padding (left of what it has
/// read); the new token's own column, last, is never hidden.
pub(crate) fn right_aligned_mask(
    read: &[usize],
    columns: usize,
    device: &Device,
) -> Tensor<4, Bool> {
    let mut hidden = Vec::with_capacity(read.len() * (columns + 1));
    for &r in read {
        hidden.extend((0..=columns).map(|j| j + r < columns));
    }
    Tensor::from_data(
        TensorData::new(hidden, [read.len(), 1, 1, columns + 1]),
        device,
    )
}
