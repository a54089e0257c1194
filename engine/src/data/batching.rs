//! Held-out splits and padded batches, made the way mlx-lm's
//! `iterate_batches` makes them: examples sorted by length, grouped
//! `batch_size` at a time, each batch padded to one more than a multiple of
//! 32 (the model reads all but the last column, so its input width is a
//! multiple of 32), capped at `max_seq_length`. The trainer shuffles the
//! order of the batches each epoch.
//!
//! One difference: mlx-lm drops the examples that do not fill a last batch,
//! which, after sorting, are always the longest ones. Here they form a
//! smaller last batch, so every example is seen.

use crate::batch::Batch;

use super::encode::Encoded;

/// Padding granularity of mlx-lm's batches.
pub const PAD_TO: usize = 32;

/// A small, stable pseudo-random generator (SplitMix64): splits must be the
/// same for a seed on every machine and every version of any crate.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`), without modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let value = self.next_u64();
            if value < zone {
                return value % bound;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// How many examples go to validation and to test when `n` examples are
/// split with `fraction`: each gets `round(n * fraction)`, at least one when
/// `fraction > 0` and there are 3 or more examples, and training keeps at
/// least half.
pub fn held_out_count(n: usize, fraction: f64) -> usize {
    // `fraction > 0.0` is false for NaN too.
    if fraction.is_nan() || fraction <= 0.0 || n < 3 {
        return 0;
    }
    let wanted = ((n as f64) * fraction.min(1.0)).round() as usize;
    wanted.max(1).min(n / 4).max(1)
}

/// Splits `items` into (train, valid, test) by `seed`. Each part keeps the
/// original order of its items, so a split is easy to read back.
pub fn split_held_out<T>(items: Vec<T>, fraction: f64, seed: u64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let n = items.len();
    let held = held_out_count(n, fraction);
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    // part[i]: 0 train, 1 valid, 2 test
    let mut part = vec![0u8; n];
    for &i in &order[..held] {
        part[i] = 1;
    }
    for &i in &order[held..2 * held] {
        part[i] = 2;
    }
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for (item, part) in items.into_iter().zip(part) {
        match part {
            1 => valid.push(item),
            2 => test.push(item),
            _ => train.push(item),
        }
    }
    (train, valid, test)
}

/// Width of a batch whose longest row has `longest` tokens.
pub fn padded_width(longest: usize, max_seq_length: usize) -> usize {
    (1 + PAD_TO * longest.div_ceil(PAD_TO)).min(max_seq_length.max(longest))
}

/// Sorts by length (ties keep their order) and packs `batch_size` examples
/// per batch. Rows longer than `max_seq_length` are cut to it.
pub fn make_batches(examples: &[Encoded], batch_size: usize, max_seq_length: usize) -> Vec<Batch> {
    let batch_size = batch_size.max(1);
    let max_seq_length = max_seq_length.max(1);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| examples[i].tokens.len());
    order
        .chunks(batch_size)
        .map(|chunk| {
            let lengths: Vec<usize> = chunk
                .iter()
                .map(|&i| examples[i].tokens.len().min(max_seq_length))
                .collect();
            let longest = lengths.iter().copied().max().unwrap_or(0);
            let width = padded_width(longest, max_seq_length);
            let mut tokens = vec![0u32; chunk.len() * width];
            for (row, (&i, &length)) in chunk.iter().zip(&lengths).enumerate() {
                tokens[row * width..row * width + length]
                    .copy_from_slice(&examples[i].tokens[..length]);
            }
            Batch {
                tokens,
                rows: chunk.len(),
                width,
                offsets: chunk
                    .iter()
                    .zip(&lengths)
                    .map(|(&i, &length)| examples[i].offset.min(length))
                    .collect(),
                lengths,
            }
        })
        .collect()
}
