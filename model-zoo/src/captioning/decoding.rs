//! Step-by-step decoding over many captions at once, their decoder states kept stacked
//! between steps. Each row of a [`HypothesisBatch`] is one live hypothesis; rows are grouped
//! by the search (the image) they belong to. A step feeds the stacked states straight to the
//! network and keeps its grown states; after it, each search names the rows its
//! continuations extend, and the rows are rebuilt with one gather — none when every search
//! kept its rows in place, as greedy search does. Searches join when their images are
//! encoded and leave when they finish or are dropped.
//!
//! Every hypothesis of a search shares the image's state (the LSTM's image embedding, the
//! Transformer's region keys and values): those rows are gathered only when a search's
//! number of rows changes. Transformer token caches are right-aligned as in
//! `decode_batch`: a row's newest position is the last column, a row that has read fewer
//! tokens than the longest has hidden columns on its left, and columns no row uses are cut.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::error::{Result, ZooError};
use crate::models::captioner::{CaptionNet, KeyValue, TransformerCaptioner};

/// The live hypotheses of many searches, their decoder states stacked.
#[derive(Debug, Default)]
pub struct HypothesisBatch {
    /// Per search, in row order: its id and how many rows it has.
    groups: Vec<(u64, usize)>,
    stacked: Option<Stacked>,
    /// The id the last search got.
    last_id: u64,
}

/// The rows' states, stacked along the batch dimension.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per batch: boxing would buy nothing
enum Stacked {
    /// LSTM hidden and cell state and the image embedding read beside every word,
    /// `[rows, d_model]` each.
    Lstm {
        hidden: Tensor<2>,
        cell: Tensor<2>,
        image: Tensor<2>,
    },
    /// Per layer: keys and values of the image regions (`[rows, heads, 64, d_k]`) and of
    /// the tokens read so far (`[rows, heads, columns, d_k]`, right-aligned; `None` while no
    /// row has read a token), with the number of tokens each row has read.
    Transformer {
        regions: Vec<KeyValue>,
        tokens: Option<Vec<KeyValue>>,
        read: Vec<usize>,
    },
}

impl HypothesisBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The searches' ids, in row order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.groups.iter().map(|&(id, _)| id)
    }

    /// Rows of each search, in row order.
    pub fn group_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.groups.iter().map(|&(_, rows)| rows)
    }

    /// Live hypotheses, all searches together.
    pub fn rows(&self) -> usize {
        self.groups.iter().map(|&(_, rows)| rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Add one row for each image of `memory` (the encoder's output for a batch of images,
    /// see `CaptionNet::encode`): its search's first hypothesis. Returns the new searches'
    /// ids, in order. On an error the batch is left as it was.
    pub fn join(&mut self, net: &CaptionNet, memory: Tensor<3>) -> Result<Vec<u64>> {
        let count = memory.dims()[0];
        if count == 0 {
            return Ok(Vec::new());
        }
        let joining = match net {
            CaptionNet::Lstm(lstm) => {
                let d = memory.dims()[2];
                let image = memory.clone().reshape([count, d]);
                let state = lstm.start(memory);
                Stacked::Lstm {
                    hidden: state.hidden,
                    cell: state.cell,
                    image,
                }
            }
            CaptionNet::Transformer(transformer) => Stacked::Transformer {
                regions: transformer.start(memory),
                tokens: None,
                read: vec![0; count],
            },
        };
        self.stacked = Some(match self.stacked.take() {
            None => joining,
            Some(stacked) => match stacked.append(joining) {
                Ok(stacked) => stacked,
                Err((stacked, error)) => {
                    self.stacked = Some(stacked);
                    return Err(error);
                }
            },
        });
        let ids: Vec<u64> = (1..=count as u64).map(|i| self.last_id + i).collect();
        self.last_id += count as u64;
        self.groups.extend(ids.iter().map(|&id| (id, 1)));
        Ok(ids)
    }

    /// Keep only the searches whose id `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let kept: Vec<Vec<usize>> = self
            .groups
            .iter()
            .map(|&(id, rows)| {
                if keep(id) {
                    (0..rows).collect()
                } else {
                    Vec::new()
                }
            })
            .collect();
        if kept.iter().zip(&self.groups).all(|(k, g)| k.len() == g.1) {
            return;
        }
        self.regroup(&kept);
    }

    /// Feed `tokens[i]` to row `i`, all rows in one step: each row's log-probabilities of
    /// the next token. The batch then holds the grown states; on an error it is left as it
    /// was.
    pub fn step(
        &mut self,
        net: &CaptionNet,
        tokens: &[u32],
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        if tokens.len() != self.rows() {
            return Err(ZooError::InvalidInput(format!(
                "{} tokens for {} hypotheses",
                tokens.len(),
                self.rows()
            )));
        }
        let Some(stacked) = &self.stacked else {
            return Ok(Vec::new());
        };
        let rows = tokens.len();
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(tokens.iter().map(|&t| i64::from(t)).collect(), [rows]),
            device,
        );
        let (logits, grown) = match (net, stacked) {
            (
                CaptionNet::Lstm(lstm),
                Stacked::Lstm {
                    hidden,
                    cell,
                    image,
                },
            ) => {
                let state = burn::nn::lstm::LstmState::new(cell.clone(), hidden.clone());
                let (logits, state) = lstm.step(ids, image.clone(), state);
                let grown = Stacked::Lstm {
                    hidden: state.hidden,
                    cell: state.cell,
                    image: image.clone(),
                };
                (logits, grown)
            }
            (
                CaptionNet::Transformer(transformer),
                Stacked::Transformer {
                    regions,
                    tokens,
                    read,
                },
            ) => step_transformer(transformer, ids, regions, tokens.as_deref(), read, device)?,
            _ => return Err(foreign_state()),
        };
        let vocab = logits.dims()[1];
        let values: Vec<f32> = log_softmax(logits, 1)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| ZooError::InvalidInput(format!("{e:?}")))?;
        self.stacked = Some(grown);
        Ok(values.chunks(vocab).map(<[f32]>::to_vec).collect())
    }

    /// After a step, the rows each search goes on with: `parents[g]` lists, for search `g`
    /// in row order, the rows (counted within the search) its continuations extend, in
    /// their new order. A search given no rows leaves the batch.
    pub fn advance(&mut self, parents: &[Vec<usize>]) -> Result<()> {
        if parents.len() != self.groups.len() {
            return Err(ZooError::InvalidInput(format!(
                "continuations for {} searches, but {} are decoding",
                parents.len(),
                self.groups.len()
            )));
        }
        for (rows, &(id, have)) in parents.iter().zip(&self.groups) {
            if let Some(bad) = rows.iter().find(|&&row| row >= have) {
                return Err(ZooError::InvalidInput(format!(
                    "search {id} has {have} hypotheses, not a row {bad}"
                )));
            }
        }
        let in_place = parents.iter().zip(&self.groups).all(|(rows, &(_, have))| {
            rows.len() == have && rows.iter().enumerate().all(|(i, &r)| i == r)
        });
        if !in_place {
            self.regroup(parents);
        }
        Ok(())
    }

    /// Rebuild the rows: search `g` keeps its rows `rows[g]`, in that order.
    fn regroup(&mut self, rows: &[Vec<usize>]) {
        let mut offset = 0;
        let mut gather = Vec::new();
        let mut groups = Vec::with_capacity(self.groups.len());
        for (kept, &(id, have)) in rows.iter().zip(&self.groups) {
            gather.extend(kept.iter().map(|&row| (offset + row) as i64));
            if !kept.is_empty() {
                groups.push((id, kept.len()));
            }
            offset += have;
        }
        // Every row of a search holds the same image state: it moves only when the number
        // of a search's rows changes.
        let image_moves = rows
            .iter()
            .zip(&self.groups)
            .any(|(kept, &(_, have))| kept.len() != have);
        self.groups = groups;
        let Some(stacked) = self.stacked.take() else {
            return;
        };
        if gather.is_empty() {
            return;
        }
        let device = stacked.device();
        let index =
            Tensor::<1, Int>::from_data(TensorData::new(gather.clone(), [gather.len()]), &device);
        let pick = |t: Tensor<2>| t.select(0, index.clone());
        let pick_image = |t: Tensor<2>| {
            if image_moves {
                t.select(0, index.clone())
            } else {
                t
            }
        };
        self.stacked = Some(match stacked {
            Stacked::Lstm {
                hidden,
                cell,
                image,
            } => Stacked::Lstm {
                hidden: pick(hidden),
                cell: pick(cell),
                image: pick_image(image),
            },
            Stacked::Transformer {
                regions,
                tokens,
                read,
            } => {
                let read: Vec<usize> = gather.iter().map(|&row| read[row as usize]).collect();
                let longest = read.iter().copied().max().unwrap_or(0);
                let tokens = tokens.filter(|_| longest > 0).map(|caches| {
                    let columns = caches[0].keys.dims()[2];
                    // Columns left of the longest remaining row hide every row: cut them.
                    let unused = columns - longest;
                    let keep = |t: Tensor<4>| {
                        let t = t.select(0, index.clone());
                        if unused == 0 {
                            t
                        } else {
                            t.slice(s![.., .., unused..columns, ..])
                        }
                    };
                    caches.into_iter().map(|kv| kv.map(keep)).collect()
                });
                let regions = if image_moves {
                    regions
                        .into_iter()
                        .map(|kv| kv.map(|t| t.select(0, index.clone())))
                        .collect()
                } else {
                    regions
                };
                Stacked::Transformer {
                    regions,
                    tokens,
                    read,
                }
            }
        });
    }
}

impl Stacked {
    fn device(&self) -> Device {
        match self {
            Stacked::Lstm { hidden, .. } => hidden.device(),
            Stacked::Transformer { regions, .. } => regions[0].keys.device(),
        }
    }

    /// These rows, then `joining`'s; both are handed back with the error when the two
    /// belong to different captioners.
    #[allow(clippy::result_large_err)] // handed back once, on a misuse
    fn append(self, joining: Stacked) -> std::result::Result<Stacked, (Stacked, ZooError)> {
        match (self, joining) {
            (
                Stacked::Lstm {
                    hidden,
                    cell,
                    image,
                },
                Stacked::Lstm {
                    hidden: h,
                    cell: c,
                    image: i,
                },
            ) => Ok(Stacked::Lstm {
                hidden: Tensor::cat(vec![hidden, h], 0),
                cell: Tensor::cat(vec![cell, c], 0),
                image: Tensor::cat(vec![image, i], 0),
            }),
            (
                Stacked::Transformer {
                    regions,
                    tokens,
                    mut read,
                },
                Stacked::Transformer {
                    regions: joining_regions,
                    read: joining_read,
                    ..
                },
            ) => {
                // Joining rows have read nothing: all their columns are hidden padding.
                let tokens = tokens.map(|caches| {
                    caches
                        .into_iter()
                        .map(|kv| {
                            kv.map(|t| {
                                let [_, heads, columns, d_k] = t.dims();
                                let padding = Tensor::zeros(
                                    [joining_read.len(), heads, columns, d_k],
                                    &t.device(),
                                );
                                Tensor::cat(vec![t, padding], 0)
                            })
                        })
                        .collect()
                });
                let regions = regions
                    .into_iter()
                    .zip(joining_regions)
                    .map(|(kv, joining)| KeyValue {
                        keys: Tensor::cat(vec![kv.keys, joining.keys], 0),
                        values: Tensor::cat(vec![kv.values, joining.values], 0),
                    })
                    .collect();
                read.extend(joining_read);
                Ok(Stacked::Transformer {
                    regions,
                    tokens,
                    read,
                })
            }
            (stacked, _) => Err((stacked, foreign_state())),
        }
    }
}

/// One Transformer step over right-aligned caches: the logits and the grown state.
fn step_transformer(
    net: &TransformerCaptioner,
    ids: Tensor<1, Int>,
    regions: &[KeyValue],
    tokens: Option<&[KeyValue]>,
    read: &[usize],
    device: &Device,
) -> Result<(Tensor<2>, Stacked)> {
    if read.iter().any(|&r| r >= net.max_tokens()) {
        return Err(ZooError::InvalidInput(format!(
            "the caption has reached the decoder's limit of {} tokens",
            net.max_tokens()
        )));
    }
    let rows = read.len();
    let columns = tokens
        .and_then(<[KeyValue]>::first)
        .map_or(0, |kv| kv.keys.dims()[2]);
    let positions = Tensor::<1, Int>::from_data(
        TensorData::new(read.iter().map(|&r| r as i64).collect(), [rows]),
        device,
    );
    let mut hidden = Vec::with_capacity(rows * (columns + 1));
    for &r in read {
        hidden.extend((0..=columns).map(|j| j + r < columns));
    }
    let mask = Tensor::from_data(TensorData::new(hidden, [rows, 1, 1, columns + 1]), device);
    let past = tokens.filter(|_| columns > 0).map(<[KeyValue]>::to_vec);
    let (logits, grown) = net.step(ids, positions, past, regions.to_vec(), mask);
    Ok((
        logits,
        Stacked::Transformer {
            regions: regions.to_vec(),
            tokens: Some(grown),
            read: read.iter().map(|r| r + 1).collect(),
        },
    ))
}

fn foreign_state() -> ZooError {
    ZooError::InvalidInput("the decoder state belongs to another captioner".into())
}
