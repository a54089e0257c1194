//! Picking the next token from a row of logits: greedy, or sampled with
//! temperature, top-k, top-p and a repetition penalty. Sampling runs in
//! plain Rust on the logits copied off the device: one row of a vocabulary
//! is small, and a seeded generator of our own makes runs reproducible
//! whatever the backend does with its random state.

use anyhow::{bail, Result};

use crate::data::batching::SplitMix64;

/// How the next token is chosen. The defaults are greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 picks the most likely token (greedy); above 0, logits are divided
    /// by it before sampling.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens whose probabilities add
    /// up to at least `top_p`. 1.0 keeps all.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// mlx-lm's repetition penalty: the logit of a token seen in the last
    /// `repetition_context` tokens is divided by it (multiplied when
    /// negative). 1.0 is off.
    pub repetition_penalty: f32,
    pub repetition_context: usize,
    /// Seed of the sampling generator: the same seed, prompt and model give
    /// the same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            // mlx-lm's `repetition_context_size` default.
            repetition_context: 20,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Rejects values that would make sampling meaningless, naming the field.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            bail!(
                "temperature must be 0 (greedy) or positive, got {}",
                self.temperature
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("top_p must be in (0, 1], got {}", self.top_p);
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            bail!(
                "repetition_penalty must be positive, got {}",
                self.repetition_penalty
            );
        }
        Ok(())
    }
}

/// A sampler with its own random state.
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = SplitMix64::new(params.seed);
        Ok(Self { params, rng })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Whether `sample` needs the whole row of logits (anything but plain
    /// greedy decoding, which the device can reduce to one index).
    pub fn needs_logits(&self) -> bool {
        !self.params.is_greedy() || self.params.repetition_penalty != 1.0
    }

    /// Picks a token from `logits` (one per vocabulary entry); `history` is
    /// every token so far (prompt and generated), for the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Result<u32> {
        if logits.is_empty() {
            bail!("cannot sample from an empty row of logits");
        }
        if self.params.repetition_penalty != 1.0 {
            let start = history.len().saturating_sub(self.params.repetition_context);
            apply_repetition_penalty(logits, &history[start..], self.params.repetition_penalty);
        }
        if self.params.is_greedy() {
            return Ok(argmax(logits));
        }
        let t = self.params.temperature;
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(i, &l)| (i as u32, l / t))
            .collect();
        if candidates.is_empty() {
            bail!("every logit is NaN");
        }
        // Most likely first; ties keep the lower id first, so the order (and
        // with it every draw) is the same on every run.
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.params.top_k > 0 {
            candidates.truncate(self.params.top_k);
        }
        let max = candidates[0].1;
        let mut probs: Vec<f64> = candidates
            .iter()
            .map(|(_, l)| f64::from(*l - max).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.params.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cumulative += p;
                if cumulative >= f64::from(self.params.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        // 53 random bits give a uniform draw in [0, 1).
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut cumulative = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cumulative += p;
            if u < cumulative {
                return Ok(candidates[i].0);
            }
        }
        // Rounding left the sum a hair under 1 and `u` above it.
        Ok(candidates[probs.len() - 1].0)
    }
}

/// mlx-lm's rule: positive logits are divided by the penalty, negative ones
/// multiplied, so a seen token always becomes less likely. Each distinct
/// token is penalized once however often it appeared.
pub fn apply_repetition_penalty(logits: &mut [f32], recent: &[u32], penalty: f32) {
    let mut seen: Vec<u32> = recent.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for id in seen {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// Index of the largest logit; the first one on ties (as `argmax` does).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}
