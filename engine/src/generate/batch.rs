//! Many generations at once: the prompts of a batch are left-padded to one
//! length and prefilled together, then every step decodes one token for
//! each row still going, in one forward pass (the base weights are read
//! once per step for the whole batch, which is what makes it faster than
//! one row after another where a step is bound by reading the weights).
//! Each row has its own adapter from the model's stack, sampler, stop
//! tokens and token limit; rows that end leave the batch, and their cache
//! rows with them, once they are a quarter of it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::Array;

use super::{Decoding, FinishReason, GenerateParams, GenerationStats, PREFILL_CHUNK};
use crate::models::{BatchKvCache, Model, RowAdapters};

/// A prefill forward holds at most about this many positions (rows x
/// chunk length), as one sequence's prefill holds `PREFILL_CHUNK`.
const PREFILL_POSITIONS: usize = 4096;

/// Token that fills the padding (never attended to), and that rows which
/// ended but are still in the cache are fed.
const PAD: u32 = 0;

/// Ended rows stay in the cache (and are computed, their tokens ignored)
/// until they are this fraction of it: dropping a row copies the whole
/// cache, which per ended row would cost more than it saves.
const COMPACT_WHEN_ENDED: usize = 4;

/// One sequence of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub prompt: Vec<u32>,
    /// Index of its adapter in the model's stack; `None`: the bare base.
    pub adapter: Option<usize>,
}

/// What one step produced: a token for some rows (by their index in the
/// batch as given), and the rows that ended during it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchStep {
    pub tokens: Vec<(usize, u32)>,
    pub finished: Vec<usize>,
}

/// Generates for every row of a batch; each [`Self::step`] decodes one
/// token per live row (the first prefills every prompt).
pub struct BatchGenerator<'m> {
    model: &'m Model,
    rows: Vec<Decoding>,
    /// Per row of the cache: the row it decodes, `None` once that ended.
    slots: Vec<Option<usize>>,
    /// The adapters of the cache's rows, in the same order.
    slot_adapters: RowAdapters,
    /// `None` before the prefill.
    cache: Option<BatchKvCache>,
    /// Per row of the cache: the token the next step feeds.
    last: Vec<u32>,
    prompt_seconds: f64,
    generation_time: Vec<Duration>,
    failed: bool,
}

impl<'m> BatchGenerator<'m> {
    /// `model` carries the adapters the rows name (see
    /// `Model::with_stacked_adapters`); `stop_ids` and `params` hold for
    /// every row (each row samples with its own generator seeded by
    /// `params`, as it would alone).
    pub fn new(
        model: &'m Model,
        rows: &[BatchRow],
        stop_ids: &[u32],
        params: &GenerateParams,
    ) -> Result<Self> {
        if rows.is_empty() {
            bail!("a batch needs at least one row");
        }
        let mut decodings = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let decoding = Decoding::new(model, &row.prompt, stop_ids, params)
                .map_err(|e| anyhow::anyhow!("row {i}: {e}"))?;
            decodings.push(decoding);
        }
        let live: Vec<usize> = (0..rows.len())
            .filter(|&i| !decodings[i].reached_limit())
            .collect();
        let adapters: Vec<Option<usize>> = live.iter().map(|&i| rows[i].adapter).collect();
        Ok(Self {
            slot_adapters: RowAdapters::new(model, &adapters)?,
            model,
            rows: decodings,
            slots: live.into_iter().map(Some).collect(),
            cache: None,
            last: Vec::new(),
            prompt_seconds: 0.0,
            generation_time: vec![Duration::ZERO; rows.len()],
            failed: false,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows still decoding.
    pub fn live(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Why row `row` ended, once it has.
    pub fn finish_reason(&self, row: usize) -> Option<FinishReason> {
        self.rows.get(row).and_then(|d| d.finish)
    }

    /// Row `row`'s counts and times; the prompt time (the batch's prefill)
    /// is shared by every row.
    pub fn stats(&self, row: usize) -> GenerationStats {
        self.rows[row].stats(self.prompt_seconds, self.generation_time[row].as_secs_f64())
    }

    /// Decodes one token for every live row; `None` once every row ended
    /// (or after an error).
    pub fn step(&mut self) -> Result<Option<BatchStep>> {
        if self.live() == 0 || self.failed {
            return Ok(None);
        }
        let result = self.decode();
        if result.is_err() {
            self.failed = true;
        }
        result.map(Some)
    }

    fn decode(&mut self) -> Result<BatchStep> {
        let started = Instant::now();
        let prefill = self.cache.is_none();
        let logits = match self.cache.as_mut() {
            None => self.prefill()?,
            Some(cache) => {
                let input = Array::from_slice(&self.last, &[self.last.len() as i32, 1]);
                self.model
                    .forward_rows(&input, cache, &self.slot_adapters)?
            }
        };
        let chosen = self.choose(&logits)?;
        let elapsed = started.elapsed();
        if prefill {
            self.prompt_seconds = elapsed.as_secs_f64();
        } else {
            for &row in self.slots.iter().flatten() {
                self.generation_time[row] += elapsed;
            }
        }
        let mut step = BatchStep::default();
        let mut last = vec![PAD; self.slots.len()];
        for (position, token) in chosen.into_iter().enumerate() {
            let Some(row) = self.slots[position] else {
                continue;
            };
            let decoding = &mut self.rows[row];
            match decoding.accept(token) {
                Some(token) => {
                    step.tokens.push((row, token));
                    if decoding.reached_limit() {
                        step.finished.push(row);
                        self.slots[position] = None;
                    } else {
                        last[position] = token;
                    }
                }
                None => {
                    step.finished.push(row);
                    self.slots[position] = None;
                }
            }
        }
        self.last = last;
        let ended = self.slots.iter().filter(|s| s.is_none()).count();
        let live = self.slots.len() - ended;
        if live > 0 && ended * COMPACT_WHEN_ENDED >= self.slots.len() {
            let kept: Vec<usize> = (0..self.slots.len())
                .filter(|&p| self.slots[p].is_some())
                .collect();
            let cache = self.cache.as_mut().expect("prefilled above");
            cache.keep_rows(&kept)?;
            self.slot_adapters = self.slot_adapters.keep(self.model, &kept)?;
            self.slots = kept.iter().map(|&p| self.slots[p]).collect();
            self.last = kept.iter().map(|&p| self.last[p]).collect();
        }
        Ok(step)
    }

    /// Prefills every live row's prompt, left-padded to the longest, in
    /// chunks of positions; returns the logits after each prompt.
    fn prefill(&mut self) -> Result<Array> {
        let rows: Vec<usize> = self.slots.iter().flatten().copied().collect();
        let longest = rows
            .iter()
            .map(|&row| self.rows[row].prompt().len())
            .max()
            .unwrap_or(0);
        let pads: Vec<usize> = rows
            .iter()
            .map(|&row| longest - self.rows[row].prompt().len())
            .collect();
        let mut tokens = Vec::with_capacity(rows.len() * longest);
        for (&row, &pad) in rows.iter().zip(&pads) {
            tokens.extend(std::iter::repeat_n(PAD, pad));
            tokens.extend_from_slice(self.rows[row].prompt());
        }
        let tokens = Array::from_slice(&tokens, &[rows.len() as i32, longest as i32]);
        let mut cache = self.model.new_batch_cache(pads);
        let chunk = (PREFILL_POSITIONS / rows.len()).clamp(1, PREFILL_CHUNK);
        let mut logits = None;
        for start in (0..longest).step_by(chunk) {
            let end = (start + chunk).min(longest) as i32;
            let part = tokens.index((.., start as i32..end));
            let out = self
                .model
                .forward_rows(&part, &mut cache, &self.slot_adapters)?;
            // Evaluating runs the chunk, so the cache holds arrays rather
            // than an ever longer graph.
            out.eval()?;
            logits = Some(out);
        }
        self.cache = Some(cache);
        logits.ok_or_else(|| anyhow::anyhow!("the prompts have no tokens"))
    }

    /// A token for each row of the cache from the logits `[cache rows,
    /// vocab]` (`PAD` for the rows that ended).
    fn choose(&mut self, logits: &Array) -> Result<Vec<u32>> {
        let sampled = self
            .slots
            .iter()
            .flatten()
            .any(|&row| self.rows[row].sampler.needs_logits());
        if !sampled {
            let tokens = mlx_rs::ops::indexing::argmax_axis(logits, -1, None)?
                .as_dtype(mlx_rs::Dtype::Uint32)?;
            return Ok(tokens.as_slice::<u32>().to_vec());
        }
        let logits = logits.as_dtype(mlx_rs::Dtype::Float32)?;
        let mut all = logits.as_slice::<f32>().to_vec();
        let vocab = logits.dim(1) as usize;
        self.slots
            .iter()
            .zip(all.chunks_mut(vocab))
            .map(|(slot, values)| match slot {
                Some(row) => self.rows[*row].choose_from(values),
                None => Ok(PAD),
            })
            .collect()
    }
}
