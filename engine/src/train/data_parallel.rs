//! Data parallelism over [`crate::distributed`]'s ranks. Every rank holds
//! the whole dataset and walks the same batch order; of each global batch,
//! rank `r` of `n` takes rows `r, r + n, r + 2n, ...` (as mlx-lm's
//! `iterate_batches` does), at the batch's width.
//!
//! What makes N ranks train exactly as one: the loss of a batch is the mean
//! over its counted targets, and the ranks' shares count different numbers
//! of them. So each rank weighs its mean loss and its gradients by its share
//! of the batch's targets (`tokens_r / tokens`) before the sum, instead of
//! mlx-lm's plain average of the ranks' means, which equals one rank's step
//! only when every share counts as many targets.

use std::borrow::Cow;

use anyhow::Result;
use mlx_rs::{ops::zeros_like, Array};

use super::loss::{loss_inputs, loss_mask, LossInputs};
use crate::batch::Batch;
use crate::distributed::World;
use crate::protocol::{Event, RankFigures};

/// Rows `rank, rank + size, ...` of `batch`, at its width (padding stays as
/// the one-rank batch has it, so each row's counted targets are the same).
pub fn rows_of(batch: &Batch, rank: usize, size: usize) -> Cow<'_, Batch> {
    if size <= 1 {
        return Cow::Borrowed(batch);
    }
    let picked: Vec<usize> = (rank..batch.rows).step_by(size).collect();
    let mut tokens = Vec::with_capacity(picked.len() * batch.width);
    for &row in &picked {
        tokens.extend_from_slice(&batch.tokens[row * batch.width..(row + 1) * batch.width]);
    }
    Cow::Owned(Batch {
        tokens,
        rows: picked.len(),
        width: batch.width,
        offsets: picked.iter().map(|&r| batch.offsets[r]).collect(),
        lengths: picked.iter().map(|&r| batch.lengths[r]).collect(),
    })
}

/// Targets of `batch` that count in the loss.
pub fn counted_targets(batch: &Batch) -> usize {
    loss_mask(batch).iter().filter(|&&m| m > 0.0).count()
}

/// This rank's part of one global batch.
pub struct Share {
    /// The rank's rows as loss inputs; `None` when they count no target
    /// (fewer rows than ranks, or all masked): the rank then adds zeros.
    pub inputs: Option<LossInputs>,
    /// Targets the whole batch counts, over all ranks.
    pub batch_tokens: usize,
    /// This rank's fraction of them.
    weight: f32,
    ranks: usize,
}

impl Share {
    pub fn of(batch: &Batch, world: &World) -> Result<Self> {
        let ranks = world.size();
        if ranks == 1 {
            let inputs = loss_inputs(batch)?;
            return Ok(Self {
                batch_tokens: inputs.tokens,
                inputs: Some(inputs),
                weight: 1.0,
                ranks,
            });
        }
        let batch_tokens = counted_targets(batch);
        let mine = rows_of(batch, world.rank(), ranks);
        let inputs = if mine.rows == 0 {
            None
        } else {
            Some(loss_inputs(&mine)?).filter(|i| i.tokens > 0)
        };
        let tokens = inputs.as_ref().map_or(0, |i| i.tokens);
        Ok(Self {
            inputs,
            batch_tokens,
            weight: tokens as f32 / batch_tokens.max(1) as f32,
            ranks,
        })
    }

    /// What a rank without targets contributes: nothing.
    pub fn nothing(params: &[Array]) -> Result<(Array, Vec<Array>)> {
        let grads = params.iter().map(zeros_like).collect::<Result<_, _>>()?;
        Ok((Array::from_f32(0.0), grads))
    }

    /// The loss and gradients of the whole batch from this rank's: each
    /// weighed by the rank's share of the targets, then summed over the
    /// ranks (the gradients in buckets). One rank: unchanged.
    pub fn combine(
        &self,
        world: &World,
        loss: Array,
        grads: Vec<Array>,
    ) -> Result<(Array, Vec<Array>)> {
        if self.ranks == 1 {
            return Ok((loss, grads));
        }
        let weight = Array::from_f32(self.weight);
        let loss = world.all_sum(&loss.multiply(&weight)?)?;
        let grads = grads
            .iter()
            .map(|g| g.multiply(&weight))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((loss, world.all_sum_bucketed(&grads)?))
    }
}

/// This rank's own throughput between two reports, for the run page's
/// per-rank figures: the targets its share counted over the time its steps
/// took (waits in the collectives included, as the report's own time).
#[derive(Default)]
pub struct RankMeter {
    tokens: u64,
    seconds: f64,
}

impl RankMeter {
    pub fn add_step(&mut self, share: &Share, seconds: f64) {
        self.tokens += share.inputs.as_ref().map_or(0, |i| i.tokens) as u64;
        self.seconds += seconds;
    }

    /// Every rank's figures since the last report, gathered on all ranks
    /// (each must call it at the same step); `None` for a group of one,
    /// whose report says it all.
    pub fn report(&mut self, world: &World, step: usize) -> Result<Option<Event>> {
        if world.size() == 1 {
            return Ok(None);
        }
        let tokens_per_sec = self.tokens as f64 / self.seconds.max(1e-9);
        let peak_memory_gb = mlx_rs::memory::peak_memory().unwrap_or(0) as f64 / 1e9;
        *self = Self::default();
        let ranks = world
            .gather_values(&[tokens_per_sec, peak_memory_gb])?
            .into_iter()
            .enumerate()
            .map(|(rank, figures)| RankFigures {
                rank,
                tokens_per_sec: figures[0],
                peak_memory_gb: figures[1],
            })
            .collect();
        Ok(Some(Event::Ranks { step, ranks }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        // 3 rows of width 4: lengths 2, 3, 4; the second row's prompt is 2 tokens.
        Batch {
            tokens: vec![1, 2, 0, 0, 3, 4, 5, 0, 6, 7, 8, 9],
            rows: 3,
            width: 4,
            offsets: vec![0, 2, 0],
            lengths: vec![2, 3, 4],
        }
    }

    #[test]
    fn ranks_take_interleaved_rows_and_together_count_every_target() {
        let b = batch();
        let first = rows_of(&b, 0, 2);
        assert_eq!(first.rows, 2);
        assert_eq!(first.tokens, vec![1, 2, 0, 0, 6, 7, 8, 9]);
        assert_eq!(first.lengths, vec![2, 4]);
        assert_eq!(first.offsets, vec![0, 0]);
        let second = rows_of(&b, 1, 2);
        assert_eq!(second.tokens, vec![3, 4, 5, 0]);
        assert_eq!(second.offsets, vec![2]);
        assert_eq!(
            counted_targets(&first) + counted_targets(&second),
            counted_targets(&b)
        );
        assert_eq!(counted_targets(&b), 2 + 2 + 3);
        assert_eq!(rows_of(&b, 3, 4).rows, 0);
    }
}
