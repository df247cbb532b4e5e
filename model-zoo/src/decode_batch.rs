//! The sequences a generation loop decodes together, their states kept in slots between
//! steps. Each row ("slot") of the batch's tensors holds one live sequence or is free. A
//! step feeds every slot to the network at once and keeps the grown states, so nothing is
//! padded, stacked or split per sequence.
//!
//! Sequences come and go without moving the others' states: a joining sequence's state is
//! written into a free slot (the tensors grow only when none is free), a leaving one's slot
//! is freed, and a free slot is computed with the rest and its output dropped. Once free
//! slots have outnumbered a quarter of the live ones for a few steps running, the slots are
//! compacted with one gather.
//!
//! Transformer keys and values live in a ring per layer, `[slots, heads, capacity, d_k]`
//! with `capacity` the model's context: every step writes each slot's new key and value
//! into the same column, `head`, in place, and moves `head` on by one (wrapping around). A
//! slot's tokens are the `read` columns before `head`; the attention mask hides the rest.
//! Attention does not depend on the order of the columns (positions are in the
//! embeddings), and a sequence never reads more tokens than the context, so no column is
//! overwritten while its slot still needs it.

use burn::prelude::*;

use crate::error::{Result, ZooError};
use crate::language_model::SequenceState;
use crate::models::recurrent_lm::LayerState;
use crate::models::transformer_lm::KeyValue;

/// Sequences decoded together, each known by the caller's id.
#[derive(Debug, Default)]
pub struct DecodeBatch {
    /// Per slot, the id of the sequence it holds; `None` when free.
    slots: Vec<Option<u64>>,
    /// The live sequences' ids, in slot order, and their slots.
    ids: Vec<u64>,
    live: Vec<usize>,
    stacked: Option<Stacked>,
    /// Steps in a row that ended with free slots worth compacting.
    loose_steps: usize,
}

/// Steps a batch runs with free slots worth compacting before it compacts them. In a closed
/// loop the callers whose sequences ended send their next ones within a step or two, and
/// those take the free slots without moving anyone; compacting at once, then growing the
/// tensors again for each newcomer, copied every stayer's state several times over.
const COMPACT_AFTER_STEPS: usize = 4;

/// The slots' states, stacked along the batch dimension.
#[derive(Debug, Clone)]
pub(crate) enum Stacked {
    /// Per layer, hidden (and cell) state `[slots, d_model]`.
    Recurrent(Vec<LayerState>),
    Transformer(Ring),
}

/// Transformer keys and values in rings (see the module's notes).
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    /// Per layer, keys and values `[slots, heads, capacity, d_k]`.
    pub caches: Vec<KeyValue>,
    /// Tokens each slot has read (0 when free): its columns are the `read` before `head`.
    pub read: Vec<usize>,
    /// The column the next step writes.
    pub head: usize,
}

impl DecodeBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sequences' ids, in the order of a step's tokens and outputs.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Rows of the tensors: live sequences and free slots.
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The live sequences' slots, in the order of [`Self::ids`].
    pub(crate) fn live_slots(&self) -> &[usize] {
        &self.live
    }

    /// Keep only the sequences whose id `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let mut changed = false;
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some_and(|id| !keep(id)) {
                self.slots[slot] = None;
                if let Some(Stacked::Transformer(ring)) = &mut self.stacked {
                    ring.read[slot] = 0;
                }
                changed = true;
            }
        }
        if changed {
            self.tidy();
        }
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
            Some(Stacked::Transformer(_)) => false,
            None => recurrent(&first.1),
        };
        if joining.iter().any(|(_, s)| recurrent(s) != kind) {
            return Err(foreign_state());
        }
        let mut stacked = match self.stacked.take() {
            Some(stacked) => stacked,
            None => Stacked::empty_like(&first.1),
        };
        // Free slots first, then new ones at the end.
        let free: Vec<usize> = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .collect();
        let reused = free.len().min(joining.len());
        let missing = joining.len() - reused;
        let end = self.slots.len();
        let targets = free[..reused].iter().copied().chain(end..end + missing);
        if missing > 0 {
            stacked = stacked.grow(missing);
            self.slots.extend(std::iter::repeat_n(None, missing));
        }
        for ((id, state), slot) in joining.into_iter().zip(targets) {
            stacked = stacked.write(slot, state);
            self.slots[slot] = Some(id);
        }
        self.stacked = Some(stacked);
        self.index_live();
        Ok(())
    }

    /// The states, taken out for a step (so the step is their only owner and writes in
    /// place); [`Self::advance`] puts the grown ones back. Free slots that waited
    /// [`COMPACT_AFTER_STEPS`] steps for newcomers are compacted first, so the step's slots
    /// are the ones it returns.
    pub(crate) fn take_stacked(&mut self) -> Option<Stacked> {
        if self.loose_steps >= COMPACT_AFTER_STEPS {
            self.compact();
        }
        self.stacked.take()
    }

    /// The states after a step (or, when the step could not run, as they were), for the
    /// same slots.
    pub(crate) fn advance(&mut self, stacked: Stacked) {
        self.stacked = Some(stacked);
        if worth_compacting(self.slots.len() - self.live.len(), self.live.len()) {
            self.loose_steps += 1;
        } else {
            self.loose_steps = 0;
        }
    }

    /// The live ids and slots again, after slots changed hands.
    fn index_live(&mut self) {
        self.live = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_some())
            .collect();
        self.ids = self.live.iter().filter_map(|&s| self.slots[s]).collect();
    }

    /// Drop everything once no sequence is left (compacting waits for the steps, see
    /// [`COMPACT_AFTER_STEPS`]).
    fn tidy(&mut self) {
        self.index_live();
        if self.live.is_empty() {
            *self = Self::default();
        }
    }

    /// Only the live slots, in order, with one gather (none when newcomers have taken every
    /// free slot since).
    fn compact(&mut self) {
        self.loose_steps = 0;
        if self.live.len() == self.slots.len() {
            return;
        }
        if let Some(stacked) = self.stacked.take() {
            self.stacked = Some(stacked.gather(&self.live));
        }
        self.slots = self.ids.iter().map(|&id| Some(id)).collect();
        self.index_live();
    }
}

/// Whether `free` slots beside `live` ones are worth one gather: once they outnumber a
/// quarter of the live ones (and one more), so free slots never cost more than a quarter of a
/// step. (Half, and four more, measured about 5 % fewer captions/s at c=16.)
pub(crate) fn worth_compacting(free: usize, live: usize) -> bool {
    free > live / 4 + 1
}

fn foreign_state() -> ZooError {
    ZooError::InvalidInput("state belongs to another model".into())
}

impl Stacked {
    /// No slots yet, shaped for states like `state`.
    fn empty_like(state: &SequenceState) -> Stacked {
        match state {
            SequenceState::Recurrent(layers) => Stacked::Recurrent(
                layers
                    .iter()
                    .map(|l| LayerState {
                        hidden: l.hidden.clone().slice(s![0..0, ..]),
                        cell: l.cell.clone().map(|c| c.slice(s![0..0, ..])),
                    })
                    .collect(),
            ),
            SequenceState::Transformer { cache, capacity } => {
                let ring = |t: &Tensor<4>| {
                    let [_, heads, _, d_k] = t.dims();
                    Tensor::zeros([0, heads, *capacity, d_k], &t.device())
                };
                Stacked::Transformer(Ring {
                    caches: cache
                        .iter()
                        .map(|kv| KeyValue {
                            keys: ring(&kv.keys),
                            values: ring(&kv.values),
                        })
                        .collect(),
                    read: Vec::new(),
                    head: 0,
                })
            }
        }
    }

    fn device(&self) -> Device {
        match self {
            Stacked::Recurrent(layers) => layers[0].hidden.device(),
            Stacked::Transformer(ring) => ring.caches[0].keys.device(),
        }
    }

    /// `count` more slots, zeroed and free.
    fn grow(self, count: usize) -> Stacked {
        let grow2 = |t: Tensor<2>| append_zero_rows(t, count);
        let grow4 = |t: Tensor<4>| append_zero_rows(t, count);
        match self {
            Stacked::Recurrent(layers) => Stacked::Recurrent(
                layers
                    .into_iter()
                    .map(|l| LayerState {
                        hidden: grow2(l.hidden),
                        cell: l.cell.map(grow2),
                    })
                    .collect(),
            ),
            Stacked::Transformer(mut ring) => {
                ring.read.extend(std::iter::repeat_n(0, count));
                ring.caches = ring.caches.into_iter().map(|kv| kv.map(grow4)).collect();
                Stacked::Transformer(ring)
            }
        }
    }

    /// A prefill's state written into `slot`, in place. Kinds are checked before.
    fn write(self, slot: usize, state: SequenceState) -> Stacked {
        match (self, state) {
            (Stacked::Recurrent(layers), SequenceState::Recurrent(joining)) => {
                let put =
                    |t: Tensor<2>, row: Tensor<2>| t.slice_assign(s![slot..slot + 1, ..], row);
                Stacked::Recurrent(
                    layers
                        .into_iter()
                        .zip(joining)
                        .map(|(l, j)| LayerState {
                            hidden: put(l.hidden, j.hidden),
                            cell: match (l.cell, j.cell) {
                                (Some(cell), Some(row)) => Some(put(cell, row)),
                                (cell, _) => cell,
                            },
                        })
                        .collect(),
                )
            }
            (Stacked::Transformer(mut ring), SequenceState::Transformer { cache, .. }) => {
                let read = cache.first().map_or(0, |kv| kv.keys.dims()[2]);
                ring.read[slot] = read;
                let head = ring.head;
                ring.caches = ring
                    .caches
                    .into_iter()
                    .zip(cache)
                    .map(|(kv, joining)| KeyValue {
                        keys: write_before_head(kv.keys, slot, head, joining.keys),
                        values: write_before_head(kv.values, slot, head, joining.values),
                    })
                    .collect();
                Stacked::Transformer(ring)
            }
            (stacked, _) => stacked,
        }
    }

    /// Only the slots `order`, in that order.
    fn gather(self, order: &[usize]) -> Stacked {
        let device = self.device();
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(order.iter().map(|&s| s as i64).collect(), [order.len()]),
            &device,
        );
        match self {
            Stacked::Recurrent(layers) => Stacked::Recurrent(
                layers
                    .into_iter()
                    .map(|l| LayerState {
                        hidden: l.hidden.select(0, index.clone()),
                        cell: l.cell.map(|c| c.select(0, index.clone())),
                    })
                    .collect(),
            ),
            Stacked::Transformer(ring) => Stacked::Transformer(Ring {
                caches: ring
                    .caches
                    .into_iter()
                    .map(|kv| kv.map(|t| t.select(0, index.clone())))
                    .collect(),
                read: order.iter().map(|&s| ring.read[s]).collect(),
                head: ring.head,
            }),
        }
    }
}

/// `t` with `count` rows of zeros added after its rows (dimension 0).
pub(crate) fn append_zero_rows<const D: usize>(t: Tensor<D>, count: usize) -> Tensor<D> {
    let mut dims = t.dims();
    dims[0] = count;
    let zeros = Tensor::zeros(dims, &t.device());
    Tensor::cat(vec![t, zeros], 0)
}

/// `tokens [1, heads, n, d_k]` written into row `slot` of a ring `[slots, heads, capacity,
/// d_k]`, in the `n` columns before `head`, wrapping around the ring's start.
fn write_before_head(ring: Tensor<4>, slot: usize, head: usize, tokens: Tensor<4>) -> Tensor<4> {
    let capacity = ring.dims()[2];
    let n = tokens.dims()[2];
    let start = (head + capacity - n % capacity) % capacity;
    let rows = slot..slot + 1;
    if start + n <= capacity {
        return ring.slice_assign(s![rows, .., start..start + n, ..], tokens);
    }
    let first = capacity - start;
    ring.slice_assign(
        s![rows.clone(), .., start..capacity, ..],
        tokens.clone().slice(s![.., .., 0..first, ..]),
    )
    .slice_assign(
        s![rows, .., 0..n - first, ..],
        tokens.slice(s![.., .., first..n, ..]),
    )
}

impl Ring {
    /// The attention mask of a step: `[slots, 1, 1, capacity]`, true where a column is not
    /// the slot's (outside the `read` columns before `head`); `head`, where the new token
    /// goes, is every slot's.
    pub(crate) fn mask(&self, device: &Device) -> Tensor<4, Bool> {
        let capacity = self.capacity();
        let mut hidden = Vec::with_capacity(self.read.len() * capacity);
        for &read in &self.read {
            hidden.extend((0..capacity).map(|column| {
                let behind = (self.head + capacity - column) % capacity;
                behind > read
            }));
        }
        Tensor::from_data(
            TensorData::new(hidden, [self.read.len(), 1, 1, capacity]),
            device,
        )
    }

    /// Columns of each slot's ring: the model's context.
    pub(crate) fn capacity(&self) -> usize {
        self.caches.first().map_or(0, |kv| kv.keys.dims()[2])
    }
}
