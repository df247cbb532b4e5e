//! One decoding step over sequences that have read different numbers of tokens: their
//! key/value caches padded to the longest and stacked into one batch, with the mask that
//! hides the padding, and each sequence's own cache taken back out of the grown batch.
//! The language models' generation loop and the captioners share it.

use burn::prelude::*;

use crate::models::transformer_lm::KeyValue;

/// The stacked caches of one step.
pub struct StackedCaches {
    /// Per layer `[batch, heads, longest, d_k]`; `None` when no row has read a token.
    pub past: Option<Vec<KeyValue>>,
    /// `[batch, 1, 1, longest + 1]`, true where a row's key is padding; the new token's own
    /// key sits after the padding, at index `longest`.
    pub mask: Tensor<4, Bool>,
    pub longest: usize,
}

/// Stack rows given as (per-layer caches `[1, heads, read, d_k]`, or `None` before the
/// first token, and `read`).
pub fn stack(rows: &[(Option<&[KeyValue]>, usize)], device: &Device) -> StackedCaches {
    let longest = rows.iter().map(|(_, read)| *read).max().unwrap_or(0);
    let like = rows
        .iter()
        .find_map(|(caches, _)| caches.and_then(<[KeyValue]>::first));
    let past = like.filter(|_| longest > 0).map(|like| {
        let [_, heads, _, d_k] = like.keys.dims();
        let layers = rows
            .iter()
            .find_map(|(c, _)| c.map(<[KeyValue]>::len))
            .unwrap_or(0);
        let padded = |t: Option<&Tensor<4>>, read: usize| {
            let padding = || Tensor::zeros([1, heads, longest - read, d_k], device);
            match t {
                Some(t) if read == longest => t.clone(),
                Some(t) => Tensor::cat(vec![t.clone(), padding()], 2),
                None => padding(),
            }
        };
        (0..layers)
            .map(|l| {
                let side = |values: bool| {
                    let rows = rows.iter().map(|(caches, read)| {
                        let kv = caches.map(|c| &c[l]);
                        padded(
                            kv.map(|kv| if values { &kv.values } else { &kv.keys }),
                            *read,
                        )
                    });
                    Tensor::cat(rows.collect(), 0)
                };
                KeyValue {
                    keys: side(false),
                    values: side(true),
                }
            })
            .collect()
    });
    let mut hidden = Vec::with_capacity(rows.len() * (longest + 1));
    for (_, read) in rows {
        hidden.extend((0..=longest).map(|j| j >= *read && j < longest));
    }
    let mask = Tensor::from_data(
        TensorData::new(hidden, [rows.len(), 1, 1, longest + 1]),
        device,
    );
    StackedCaches {
        past,
        mask,
        longest,
    }
}

/// Row `i`'s cache out of the grown batch caches: its own `read` positions and the new one
/// at `longest`, padding dropped.
pub fn row(grown: &[KeyValue], i: usize, read: usize, longest: usize) -> Vec<KeyValue> {
    let keep = |t: &Tensor<4>| {
        let new = t.clone().slice(s![i..i + 1, .., longest..longest + 1, ..]);
        if read == 0 {
            return new;
        }
        let own = t.clone().slice(s![i..i + 1, .., 0..read, ..]);
        Tensor::cat(vec![own, new], 2)
    };
    grown
        .iter()
        .map(|kv| KeyValue {
            keys: keep(&kv.keys),
            values: keep(&kv.values),
        })
        .collect()
}
