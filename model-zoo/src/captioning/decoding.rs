//! Step-by-step decoding over many captions at once, their decoder states kept in slots
//! between steps. Each row ("slot") of a [`HypothesisBatch`]'s tensors holds one live
//! hypothesis or is free; a search (one image) holds the slots of its live hypotheses. A
//! step feeds every slot to the network at once and keeps its grown states, so nothing is
//! stacked or split per hypothesis.
//!
//! Searches come and go without moving the others' states: a joining image's state is
//! written into free slots (the tensors grow only when none is free), a leaving search's
//! slots are freed, and a free slot is computed with the rest and its output ignored.
//! Once free slots outnumber a quarter of the live ones the slots are compacted with one
//! gather.
//! Beam search moves states only where a continuation lands in another slot than the
//! hypothesis it extends.
//!
//! Every hypothesis of a search reads the same image state (the LSTM's image embedding, or
//! on Kiln's CPU kernels its share of the LSTM's input gates; the Transformer's region keys
//! and values): it is written once per slot a search takes.
//! Transformer token caches are right-aligned: a slot's newest
//! position is the last column, a slot that has read fewer tokens than the longest has
//! hidden columns on its left (a joining slot hides them all), and columns no live slot
//! uses are cut.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::captioning::vocabulary::BOS;
use crate::decode_batch::{append_zero_rows, worth_compacting};
use crate::error::{Result, ZooError};
use crate::models::captioner::{CaptionNet, CpuLstmStep, KeyValue, TransformerCaptioner};
use crate::models::cpu::floats;

/// The live hypotheses of many searches, their decoder states in slots.
#[derive(Debug, Default)]
pub struct HypothesisBatch {
    /// Per search, in the order they joined: its id and the slots of its live hypotheses,
    /// in hypothesis order.
    searches: Vec<(u64, Vec<usize>)>,
    /// Slots no hypothesis holds.
    free: Vec<usize>,
    stacked: Option<Stacked>,
    /// The id the last search got.
    last_id: u64,
}

/// The slots' states, stacked along the batch dimension.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per batch: boxing would buy nothing
enum Stacked {
    /// LSTM hidden and cell state, `[slots, d_model]` each, and what every step reads of
    /// the image: its embedding (`[slots, d_model]`) on Burn's ops, its share of the input
    /// gates (`[slots, 4 · d_model]`, see [`CpuLstmStep::start`]) on Kiln's CPU kernels.
    Lstm {
        hidden: Tensor<2>,
        cell: Tensor<2>,
        image: Tensor<2>,
    },
    /// Per layer: keys and values of the image regions (`[slots, heads, 64, d_k]`) and of
    /// the tokens read so far (`[slots, heads, columns, d_k]`, right-aligned; `None` while
    /// no slot has read a token), with the number of tokens each slot has read (0 when
    /// free).
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

    /// The searches' ids, in the order of a step's hypotheses.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.searches.iter().map(|(id, _)| *id)
    }

    /// Live hypotheses of each search, in the same order.
    pub fn group_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.searches.iter().map(|(_, slots)| slots.len())
    }

    /// Live hypotheses, all searches together.
    pub fn rows(&self) -> usize {
        self.searches.iter().map(|(_, slots)| slots.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.searches.is_empty()
    }

    /// Rows of the tensors: live hypotheses and free slots.
    pub(crate) fn slots(&self) -> usize {
        self.stacked.as_ref().map_or(0, Stacked::rows)
    }

    /// Add one hypothesis for each image of `memory` (the encoder's output for a batch of
    /// images, see `CaptionNet::encode`): its search's first. `cpu_lstm` starts an LSTM
    /// decoder on Kiln's CPU kernels; the batch's steps must then take it too. Returns the
    /// new searches' ids, in order. On an error the batch is left as it was.
    pub fn join(
        &mut self,
        net: &CaptionNet,
        cpu_lstm: Option<&CpuLstmStep>,
        memory: Tensor<3>,
    ) -> Result<Vec<u64>> {
        let count = memory.dims()[0];
        if count == 0 {
            return Ok(Vec::new());
        }
        let joining = match (net, cpu_lstm) {
            (CaptionNet::Lstm(_), Some(cpu)) => {
                let device = memory.device();
                let start = cpu.start(&floats(memory)?)?;
                let rows = |values: Vec<f32>| {
                    let width = values.len() / count;
                    Tensor::from_data(TensorData::new(values, [count, width]), &device)
                };
                Stacked::Lstm {
                    hidden: rows(start.hidden),
                    cell: rows(start.cell),
                    image: rows(start.image_gates),
                }
            }
            (CaptionNet::Lstm(lstm), None) => {
                let d = memory.dims()[2];
                let image = memory.clone().reshape([count, d]);
                let state = lstm.start(memory);
                Stacked::Lstm {
                    hidden: state.hidden,
                    cell: state.cell,
                    image,
                }
            }
            (CaptionNet::Transformer(transformer), _) => Stacked::Transformer {
                regions: transformer.start(memory),
                tokens: None,
                read: vec![0; count],
            },
        };
        let kind = std::mem::discriminant(&joining);
        if self
            .stacked
            .as_ref()
            .is_some_and(|stacked| std::mem::discriminant(stacked) != kind)
        {
            return Err(foreign_state());
        }
        let slots = if self.stacked.is_none() {
            self.stacked = Some(joining);
            (0..count).collect()
        } else {
            let slots = self.take_free(count);
            if let Some(mut stacked) = self.stacked.take() {
                for (row, &slot) in slots.iter().enumerate() {
                    stacked = stacked.write_row(slot, &joining, row);
                }
                self.stacked = Some(stacked);
            }
            slots
        };
        let ids: Vec<u64> = (1..=count as u64).map(|i| self.last_id + i).collect();
        self.last_id += count as u64;
        self.searches
            .extend(ids.iter().zip(slots).map(|(&id, slot)| (id, vec![slot])));
        Ok(ids)
    }

    /// Keep only the searches whose id `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let (kept, dropped): (Vec<_>, Vec<_>) = std::mem::take(&mut self.searches)
            .into_iter()
            .partition(|(id, _)| keep(*id));
        self.searches = kept;
        for (_, slots) in dropped {
            self.release(&slots);
        }
        self.tidy();
    }

    /// Feed `tokens[i]` to live hypothesis `i` (searches in [`ids`](Self::ids) order, each
    /// search's hypotheses in order), all in one step: each hypothesis's log-probabilities
    /// of the next token. `cpu_lstm` runs an LSTM decoder's step on Kiln's CPU kernels
    /// instead of Burn's ops. The batch then holds the grown states; on an error it is left
    /// as it was.
    pub fn step(
        &mut self,
        net: &CaptionNet,
        cpu_lstm: Option<&CpuLstmStep>,
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
        let order: Vec<usize> = self
            .searches
            .iter()
            .flat_map(|(_, slots)| slots.iter().copied())
            .collect();
        let mut slot_tokens = vec![BOS; self.slots()];
        for (&slot, &token) in order.iter().zip(tokens) {
            slot_tokens[slot] = token;
        }
        let mut live = vec![false; slot_tokens.len()];
        order.iter().for_each(|&slot| live[slot] = true);
        let (log_probs, vocab, grown) = match (net, stacked, cpu_lstm) {
            (
                CaptionNet::Lstm(_),
                Stacked::Lstm {
                    hidden,
                    cell,
                    image,
                },
                Some(cpu),
            ) => step_lstm_on_cpu(cpu, &slot_tokens, hidden, cell, image, device)?,
            (
                CaptionNet::Lstm(lstm),
                Stacked::Lstm {
                    hidden,
                    cell,
                    image,
                },
                None,
            ) => {
                if image.dims()[1] != hidden.dims()[1] {
                    return Err(foreign_state());
                }
                let state = burn::nn::lstm::LstmState::new(cell.clone(), hidden.clone());
                let (logits, state) =
                    lstm.step(token_ids(&slot_tokens, device), image.clone(), state);
                let grown = Stacked::Lstm {
                    hidden: state.hidden,
                    cell: state.cell,
                    image: image.clone(),
                };
                let (log_probs, vocab) = log_probabilities(logits)?;
                (log_probs, vocab, grown)
            }
            (
                CaptionNet::Transformer(transformer),
                Stacked::Transformer {
                    regions,
                    tokens,
                    read,
                },
                _,
            ) => {
                let (logits, grown) = step_transformer(
                    transformer,
                    token_ids(&slot_tokens, device),
                    regions,
                    tokens.as_deref(),
                    read,
                    &live,
                    device,
                )?;
                let (log_probs, vocab) = log_probabilities(logits)?;
                (log_probs, vocab, grown)
            }
            _ => return Err(foreign_state()),
        };
        self.stacked = Some(grown);
        Ok(order
            .iter()
            .map(|&slot| log_probs[slot * vocab..(slot + 1) * vocab].to_vec())
            .collect())
    }

    /// After a step, the hypotheses each search goes on with: `parents[g]` lists, for
    /// search `g` in [`ids`](Self::ids) order, the hypotheses (counted within the search)
    /// its continuations extend, in their new order. A search given none leaves the batch.
    pub fn advance(&mut self, parents: &[Vec<usize>]) -> Result<()> {
        if parents.len() != self.searches.len() {
            return Err(ZooError::InvalidInput(format!(
                "continuations for {} searches, but {} are decoding",
                parents.len(),
                self.searches.len()
            )));
        }
        for (rows, (id, slots)) in parents.iter().zip(&self.searches) {
            if let Some(bad) = rows.iter().find(|&&row| row >= slots.len()) {
                return Err(ZooError::InvalidInput(format!(
                    "search {id} has {} hypotheses, not a hypothesis {bad}",
                    slots.len()
                )));
            }
        }
        // Slots for continuations beyond a search's current hypotheses (a beam widening).
        let wanted: usize = parents
            .iter()
            .zip(&self.searches)
            .map(|(rows, (_, slots))| rows.len().saturating_sub(slots.len()))
            .sum();
        let mut extra = self.take_free(wanted).into_iter();
        // Moves of a hypothesis's own state (destination, source), and of the image state
        // into slots a search newly holds.
        let (mut moves, mut image_moves) = (Vec::new(), Vec::new());
        let mut released = Vec::new();
        for (rows, (_, slots)) in parents.iter().zip(self.searches.iter_mut()) {
            let old = std::mem::take(slots);
            for (j, &parent) in rows.iter().enumerate() {
                let destination = match old.get(j) {
                    Some(&slot) => slot,
                    None => {
                        let slot = extra.next().expect("free slots taken for every widening");
                        image_moves.push((slot, old[0]));
                        slot
                    }
                };
                if destination != old[parent] {
                    moves.push((destination, old[parent]));
                }
                slots.push(destination);
            }
            released.extend(old.iter().skip(rows.len()).copied());
        }
        if let Some(stacked) = self.stacked.take() {
            self.stacked = Some(stacked.copy_image_rows(&image_moves).move_rows(&moves));
        }
        self.searches.retain(|(_, slots)| !slots.is_empty());
        self.release(&released);
        self.tidy();
        Ok(())
    }

    /// `count` free slots, the tensors grown by the slots missing.
    fn take_free(&mut self, count: usize) -> Vec<usize> {
        let reused = count.min(self.free.len());
        let mut slots = self.free.split_off(self.free.len() - reused);
        let missing = count - reused;
        if missing > 0 {
            let first = self.slots();
            if let Some(stacked) = self.stacked.take() {
                self.stacked = Some(stacked.grow(missing));
            }
            slots.extend(first..first + missing);
        }
        slots
    }

    /// Mark slots free: a free slot has read nothing.
    fn release(&mut self, slots: &[usize]) {
        if let Some(Stacked::Transformer { read, .. }) = &mut self.stacked {
            slots.iter().for_each(|&slot| read[slot] = 0);
        }
        self.free.extend_from_slice(slots);
    }

    /// Drop everything once no search is left; compact when [`worth_compacting`].
    fn tidy(&mut self) {
        if self.searches.is_empty() {
            self.stacked = None;
            self.free.clear();
            return;
        }
        if !worth_compacting(self.free.len(), self.rows()) {
            return;
        }
        let order: Vec<usize> = self
            .searches
            .iter()
            .flat_map(|(_, slots)| slots.iter().copied())
            .collect();
        let mut next = 0;
        for (_, slots) in &mut self.searches {
            for slot in slots.iter_mut() {
                *slot = next;
                next += 1;
            }
        }
        self.free.clear();
        if let Some(stacked) = self.stacked.take() {
            self.stacked = Some(stacked.gather(&order));
        }
    }
}

impl Stacked {
    fn rows(&self) -> usize {
        match self {
            Stacked::Lstm { hidden, .. } => hidden.dims()[0],
            Stacked::Transformer { read, .. } => read.len(),
        }
    }

    fn device(&self) -> Device {
        match self {
            Stacked::Lstm { hidden, .. } => hidden.device(),
            Stacked::Transformer { regions, .. } => regions[0].keys.device(),
        }
    }

    /// Every tensor's rows `[first, first + 1)` written from row `row` of `from`'s (same
    /// kind). The image state always; the token state of a Transformer needs no write, as a
    /// slot that has read nothing hides all its columns.
    fn write_row(self, slot: usize, from: &Stacked, row: usize) -> Stacked {
        let put2 = |t: Tensor<2>, from: &Tensor<2>| {
            t.slice_assign(
                s![slot..slot + 1, ..],
                from.clone().slice(s![row..row + 1, ..]),
            )
        };
        let put4 = |t: Tensor<4>, from: &Tensor<4>| {
            t.slice_assign(
                s![slot..slot + 1, .., .., ..],
                from.clone().slice(s![row..row + 1, .., .., ..]),
            )
        };
        match (self, from) {
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
            ) => Stacked::Lstm {
                hidden: put2(hidden, h),
                cell: put2(cell, c),
                image: put2(image, i),
            },
            (
                Stacked::Transformer {
                    regions,
                    tokens,
                    mut read,
                },
                Stacked::Transformer {
                    regions: joining, ..
                },
            ) => {
                read[slot] = 0;
                let regions = regions
                    .into_iter()
                    .zip(joining)
                    .map(|(kv, from)| KeyValue {
                        keys: put4(kv.keys, &from.keys),
                        values: put4(kv.values, &from.values),
                    })
                    .collect();
                Stacked::Transformer {
                    regions,
                    tokens,
                    read,
                }
            }
            (stacked, _) => stacked, // kinds are checked before any write
        }
    }

    /// `count` more slots, zeroed and free.
    fn grow(self, count: usize) -> Stacked {
        let grow2 = |t: Tensor<2>| append_zero_rows(t, count);
        let grow4 = |t: Tensor<4>| append_zero_rows(t, count);
        match self {
            Stacked::Lstm {
                hidden,
                cell,
                image,
            } => Stacked::Lstm {
                hidden: grow2(hidden),
                cell: grow2(cell),
                image: grow2(image),
            },
            Stacked::Transformer {
                regions,
                tokens,
                mut read,
            } => {
                read.extend(std::iter::repeat_n(0, count));
                Stacked::Transformer {
                    regions: regions.into_iter().map(|kv| kv.map(grow4)).collect(),
                    tokens: tokens.map(|c| c.into_iter().map(|kv| kv.map(grow4)).collect()),
                    read,
                }
            }
        }
    }

    /// The image state of each source slot copied into its destination slot.
    fn copy_image_rows(self, moves: &[(usize, usize)]) -> Stacked {
        if moves.is_empty() {
            return self;
        }
        let device = self.device();
        let row_index = |from: usize| {
            Tensor::<1, Int>::from_data(TensorData::new(vec![from as i64], [1]), &device)
        };
        // `select` copies the row out, so `t` is the only owner of its data again when the
        // row is written: the write happens in place.
        let copy = |t: Tensor<4>| {
            moves.iter().fold(t, |t, &(to, from)| {
                let row = t.clone().select(0, row_index(from));
                t.slice_assign(s![to..to + 1, .., .., ..], row)
            })
        };
        let copy2 = |t: Tensor<2>| {
            moves.iter().fold(t, |t, &(to, from)| {
                let row = t.clone().select(0, row_index(from));
                t.slice_assign(s![to..to + 1, ..], row)
            })
        };
        match self {
            Stacked::Lstm {
                hidden,
                cell,
                image,
            } => Stacked::Lstm {
                hidden,
                cell,
                image: copy2(image),
            },
            Stacked::Transformer {
                regions,
                tokens,
                read,
            } => Stacked::Transformer {
                regions: regions.into_iter().map(|kv| kv.map(copy)).collect(),
                tokens,
                read,
            },
        }
    }

    /// Each hypothesis's own state (LSTM hidden and cell; Transformer token caches and
    /// tokens read) of each source slot moved to its destination slot, all at once.
    fn move_rows(self, moves: &[(usize, usize)]) -> Stacked {
        if moves.is_empty() {
            return self;
        }
        let mut sources: Vec<usize> = (0..self.rows()).collect();
        for &(to, from) in moves {
            sources[to] = from;
        }
        let device = self.device();
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(sources.iter().map(|&s| s as i64).collect(), [sources.len()]),
            &device,
        );
        match self {
            Stacked::Lstm {
                hidden,
                cell,
                image,
            } => Stacked::Lstm {
                hidden: hidden.select(0, index.clone()),
                cell: cell.select(0, index),
                image,
            },
            Stacked::Transformer {
                regions,
                tokens,
                read,
            } => Stacked::Transformer {
                regions,
                tokens: tokens.map(|caches| {
                    caches
                        .into_iter()
                        .map(|kv| kv.map(|t| t.select(0, index.clone())))
                        .collect()
                }),
                read: sources.iter().map(|&s| read[s]).collect(),
            },
        }
    }

    /// Only the slots `order`, in that order.
    fn gather(self, order: &[usize]) -> Stacked {
        let device = self.device();
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(order.iter().map(|&s| s as i64).collect(), [order.len()]),
            &device,
        );
        let pick2 = |t: Tensor<2>| t.select(0, index.clone());
        let pick4 = |t: Tensor<4>| t.select(0, index.clone());
        match self {
            Stacked::Lstm {
                hidden,
                cell,
                image,
            } => Stacked::Lstm {
                hidden: pick2(hidden),
                cell: pick2(cell),
                image: pick2(image),
            },
            Stacked::Transformer {
                regions,
                tokens,
                read,
            } => {
                let read: Vec<usize> = order.iter().map(|&s| read[s]).collect();
                let longest = read.iter().copied().max().unwrap_or(0);
                Stacked::Transformer {
                    regions: regions.into_iter().map(|kv| kv.map(pick4)).collect(),
                    tokens: tokens
                        .filter(|_| longest > 0)
                        .map(|c| c.into_iter().map(|kv| kv.map(pick4)).collect()),
                    read,
                }
            }
        }
    }
}

/// One token per slot, as the network reads them.
fn token_ids(tokens: &[u32], device: &Device) -> Tensor<1, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(ids, [tokens.len()]), device)
}

/// Each row's log-probabilities, `[rows × vocab]` values, and the vocabulary's size.
fn log_probabilities(logits: Tensor<2>) -> Result<(Vec<f32>, usize)> {
    let vocab = logits.dims()[1];
    Ok((floats(log_softmax(logits, 1))?, vocab))
}

/// The LSTM's step on Kiln's CPU kernels: the slots' states read out as rows of floats,
/// stepped, and stacked again; the log-probabilities stay plain floats.
fn step_lstm_on_cpu(
    cpu: &CpuLstmStep,
    tokens: &[u32],
    hidden: &Tensor<2>,
    cell: &Tensor<2>,
    image: &Tensor<2>,
    device: &Device,
) -> Result<(Vec<f32>, usize, Stacked)> {
    if image.dims()[1] != 4 * cpu.width() {
        return Err(foreign_state());
    }
    let [mut h, mut c] = [floats(hidden.clone())?, floats(cell.clone())?];
    let mut log_probs = cpu.step(tokens, &floats(image.clone())?, &mut h, &mut c)?;
    let vocab = cpu.vocab();
    log_probs
        .chunks_exact_mut(vocab)
        .for_each(kiln_kernels::softmax::log_softmax_in_place);
    let shape = [tokens.len(), cpu.width()];
    let stacked = |values: Vec<f32>| Tensor::from_data(TensorData::new(values, shape), device);
    let grown = Stacked::Lstm {
        hidden: stacked(h),
        cell: stacked(c),
        image: image.clone(),
    };
    Ok((log_probs, vocab, grown))
}

/// One Transformer step over right-aligned caches, every slot at once: the logits and the
/// grown state. Columns no live slot reads are cut first; free slots read nothing.
fn step_transformer(
    net: &TransformerCaptioner,
    ids: Tensor<1, Int>,
    regions: &[KeyValue],
    tokens: Option<&[KeyValue]>,
    read: &[usize],
    live: &[bool],
    device: &Device,
) -> Result<(Tensor<2>, Stacked)> {
    if read.iter().any(|&r| r >= net.max_tokens()) {
        return Err(ZooError::InvalidInput(format!(
            "the caption has reached the decoder's limit of {} tokens",
            net.max_tokens()
        )));
    }
    let slots = read.len();
    let longest = read.iter().copied().max().unwrap_or(0);
    let past = tokens.filter(|_| longest > 0).map(|caches| {
        let columns = caches[0].keys.dims()[2];
        caches
            .iter()
            .map(|kv| {
                kv.clone()
                    .map(|t| t.slice(s![.., .., columns - longest..columns, ..]))
            })
            .collect::<Vec<_>>()
    });
    let positions = Tensor::<1, Int>::from_data(
        TensorData::new(read.iter().map(|&r| r as i64).collect(), [slots]),
        device,
    );
    let mask = right_aligned_mask(read, longest, device);
    let (logits, grown) = net.step(ids, positions, past, regions.to_vec(), mask);
    let read = read
        .iter()
        .zip(live)
        .map(|(&r, &live)| if live { r + 1 } else { 0 })
        .collect();
    Ok((
        logits,
        Stacked::Transformer {
            regions: regions.to_vec(),
            tokens: Some(grown),
            read,
        },
    ))
}

fn foreign_state() -> ZooError {
    ZooError::InvalidInput("the decoder state belongs to another captioner".into())
}

/// The attention mask of one step over right-aligned caches of `columns` columns:
/// `[rows, 1, 1, columns + 1]`, true where a row's column is padding (left of what it has
/// read); the new token's own column, last, is never hidden.
fn right_aligned_mask(read: &[usize], columns: usize, device: &Device) -> Tensor<4, Bool> {
    let mut hidden = Vec::with_capacity(read.len() * (columns + 1));
    for &r in read {
        hidden.extend((0..=columns).map(|j| j + r < columns));
    }
    Tensor::from_data(
        TensorData::new(hidden, [read.len(), 1, 1, columns + 1]),
        device,
    )
}
