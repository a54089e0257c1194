//! The KV cache of a batch of sequences decoded together. Prompts of
//! different lengths are left-padded to one length, so every row appends its
//! next token at the same position; each row remembers how much padding it
//! has, which gives its own positions (RoPE) and the keys it may not attend
//! to. Keys and values live in buffers grown `STEP` positions at a time and
//! written in place, rather than concatenated at every step, which would
//! copy the whole cache of the whole batch per token.

use anyhow::{bail, Result};
use mlx_rs::ops::indexing::{IndexOp, TryIndexMutOp};
use mlx_rs::Array;

/// Positions added to a buffer when it is full (mlx-lm's step).
const STEP: i32 = 256;

pub struct BatchKvCache {
    /// Per block: keys and values `[rows, kv_heads, capacity, head_dim]`.
    layers: Vec<Option<(Array, Array)>>,
    /// Positions held, padding included: the same for every row.
    length: usize,
    /// Per row: how many of its first positions are padding.
    pads: Vec<usize>,
}

/// Which keys the new positions of a step may attend to.
pub(crate) enum StepMask {
    /// Every key (one new position, no padding anywhere).
    All,
    /// Causal, no padding.
    Causal,
    /// `[rows, 1, new, keys]` booleans.
    Array(Array),
}

impl BatchKvCache {
    pub(crate) fn new(layers: usize, pads: Vec<usize>) -> Self {
        Self {
            layers: (0..layers).map(|_| None).collect(),
            length: 0,
            pads,
        }
    }

    pub fn rows(&self) -> usize {
        self.pads.len()
    }

    /// Positions held, padding included.
    pub fn len(&self) -> usize {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// `[rows]` int32: each row's position of the next token it appends
    /// (padding does not count).
    pub(crate) fn positions(&self) -> Array {
        let positions: Vec<i32> = self
            .pads
            .iter()
            .map(|&pad| self.length as i32 - pad as i32)
            .collect();
        Array::from_slice(&positions, &[positions.len() as i32])
    }

    /// The mask for `new` positions appended now: a query sees the keys up
    /// to its own position, none of its row's padding, and always itself
    /// (a padding query would otherwise see nothing, and its softmax over
    /// nothing would put NaN into the cache).
    pub(crate) fn mask(&self, new: usize) -> Result<StepMask> {
        let padded = self.pads.iter().any(|&pad| pad > 0);
        if !padded {
            return Ok(if new == 1 {
                StepMask::All
            } else {
                StepMask::Causal
            });
        }
        let (start, keys) = (self.length as i32, (self.length + new) as i32);
        let key = Array::from_iter(0..keys, &[1, 1, 1, keys]);
        let query = Array::from_iter(start..keys, &[1, 1, new as i32, 1]);
        let pads: Vec<i32> = self.pads.iter().map(|&p| p as i32).collect();
        let pad = Array::from_slice(&pads, &[pads.len() as i32, 1, 1, 1]);
        let seen = key
            .le(&query)?
            .logical_and(&key.ge(&pad)?.logical_or(&key.eq(&query)?)?)?;
        Ok(StepMask::Array(seen))
    }

    pub(crate) fn slot(&mut self, layer: usize) -> (&mut Option<(Array, Array)>, usize) {
        (&mut self.layers[layer], self.length)
    }

    pub(crate) fn advance(&mut self, positions: usize) {
        self.length += positions;
    }

    /// Keeps only the rows at `kept` (in that order), and drops the padding
    /// positions that every kept row has.
    pub fn keep_rows(&mut self, kept: &[usize]) -> Result<()> {
        if let Some(&bad) = kept.iter().find(|&&row| row >= self.pads.len()) {
            bail!("row {bad} is not in a batch of {}", self.pads.len());
        }
        let pads: Vec<usize> = kept.iter().map(|&row| self.pads[row]).collect();
        let trim = pads.iter().copied().min().unwrap_or(0).min(self.length);
        let index: Vec<i32> = kept.iter().map(|&row| row as i32).collect();
        let index = Array::from_slice(&index, &[index.len() as i32]);
        for (keys, values) in self.layers.iter_mut().flatten() {
            let take = |buffer: &Array| -> Result<Array> {
                let rows = buffer.take_axis(&index, 0)?;
                Ok(rows.index((.., .., trim as i32.., ..)))
            };
            *keys = take(keys)?;
            *values = take(values)?;
        }
        self.pads = pads.into_iter().map(|pad| pad - trim).collect();
        self.length -= trim;
        Ok(())
    }
}

/// Writes `keys` and `values` (`[rows, kv_heads, new, head_dim]`) at
/// positions `start..` of a block's buffers, growing them when full, and
/// returns the keys and values of positions `0..start + new`.
pub(crate) fn append(
    slot: &mut Option<(Array, Array)>,
    keys: &Array,
    values: &Array,
    start: usize,
) -> Result<(Array, Array)> {
    let (start, end) = (start as i32, start as i32 + keys.dim(2));
    let capacity = slot.as_ref().map_or(0, |(k, _)| k.dim(2));
    if end > capacity {
        let grown = (end + STEP - 1) / STEP * STEP;
        let grow = |old: Option<Array>, new: &Array| -> Result<Array> {
            let shape = [new.dim(0), new.dim(1), grown - start, new.dim(3)];
            let room = Array::zeros::<f32>(&shape)?.as_dtype(new.dtype())?;
            Ok(match old {
                Some(old) if start > 0 => {
                    mlx_rs::ops::concatenate(&[old.index((.., .., ..start, ..)), room], 2)?
                }
                _ => room,
            })
        };
        let old = slot.take();
        let (old_k, old_v) = match old {
            Some((k, v)) => (Some(k), Some(v)),
            None => (None, None),
        };
        *slot = Some((grow(old_k, keys)?, grow(old_v, values)?));
    }
    let (buffer_k, buffer_v) = slot.as_mut().expect("allocated above");
    buffer_k.try_index_mut((.., .., start..end, ..), keys)?;
    buffer_v.try_index_mut((.., .., start..end, ..), values)?;
    Ok((
        buffer_k.index((.., .., ..end, ..)),
        buffer_v.index((.., .., ..end, ..)),
    ))
}
