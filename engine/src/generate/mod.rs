//! Text generation: a prompt is prefilled into the model's KV cache, then
//! tokens come one per step from a [`Generator`] (an `Iterator`), chosen by
//! a [`Sampler`] and turned into text by a [`StreamDecoder`]. A
//! [`BatchGenerator`] does the same for many prompts at once, each row with
//! its own adapter.

mod batch;
pub mod chat;
pub mod sampler;
pub mod stream;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::Array;

use crate::models::{KvCache, Model};
pub use batch::{BatchGenerator, BatchRow, BatchStep};
pub use chat::{chat_prompt, render_chat, text_prompt, Message};
pub use sampler::{Sampler, SamplingParams};
pub use stream::StreamDecoder;

/// Prompts are prefilled in chunks of this many tokens, so the logits of a
/// long prompt (positions x vocabulary) never sit in memory all at once.
const PREFILL_CHUNK: usize = 512;

/// What a generation may do.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate (a stop token is not counted).
    pub max_tokens: usize,
    pub sampling: SamplingParams,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced a stop token.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

/// Counts and speeds of a generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prefill plus choosing the first token.
    pub prompt_seconds: f64,
    /// Every step after the first token.
    pub generation_seconds: f64,
}

impl GenerationStats {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_seconds)
    }

    /// Tokens after the first, over the time they took (the first token's
    /// time belongs to the prompt, as mlx-lm counts it).
    pub fn generation_tokens_per_second(&self) -> f64 {
        rate(
            self.generated_tokens.saturating_sub(1),
            self.generation_seconds,
        )
    }
}

fn rate(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// What one sequence's decoding has seen and decided: the part of a
/// generation that does not depend on how its logits were computed, shared
/// by [`Generator`] (one sequence) and [`BatchGenerator`] (many at once).
struct Decoding {
    sampler: Sampler,
    stop_ids: Vec<u32>,
    max_tokens: usize,
    /// Prompt and generated tokens, for the repetition penalty.
    history: Vec<u32>,
    prompt_len: usize,
    generated: usize,
    finish: Option<FinishReason>,
}

impl Decoding {
    fn new(
        model: &Model,
        prompt: &[u32],
        stop_ids: &[u32],
        params: &GenerateParams,
    ) -> Result<Self> {
        if prompt.is_empty() {
            bail!("the prompt has no tokens");
        }
        let vocab = model.config.vocab_size;
        if let Some((i, id)) = prompt
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= vocab)
        {
            bail!("prompt token {i} is {id}, outside the model's vocabulary of {vocab}");
        }
        Ok(Self {
            sampler: Sampler::new(params.sampling.clone())?,
            stop_ids: stop_ids.to_vec(),
            max_tokens: params.max_tokens,
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            generated: 0,
            finish: None,
        })
    }

    fn prompt(&self) -> &[u32] {
        &self.history[..self.prompt_len]
    }

    /// Ends the decoding when `max_tokens` are generated; whether it has.
    fn reached_limit(&mut self) -> bool {
        if self.generated >= self.max_tokens {
            self.finish = Some(FinishReason::Length);
        }
        self.finish.is_some()
    }

    /// Takes the chosen `token`: `None` when it is a stop token (which ends
    /// the decoding and is not yielded).
    fn accept(&mut self, token: u32) -> Option<u32> {
        if self.stop_ids.contains(&token) {
            self.finish = Some(FinishReason::Stop);
            return None;
        }
        self.history.push(token);
        self.generated += 1;
        Some(token)
    }

    /// The next token from one row of logits `[vocab]` on the device.
    fn choose(&mut self, logits: &Array) -> Result<u32> {
        if !self.sampler.needs_logits() {
            let index = mlx_rs::ops::indexing::argmax(logits, None)?;
            return Ok(index.try_item_exact::<u32>()?);
        }
        let logits = logits.as_dtype(mlx_rs::Dtype::Float32)?;
        let mut row = logits.as_slice::<f32>().to_vec();
        self.sampler.sample(&mut row, &self.history)
    }

    /// The next token from one row of logits copied off the device.
    fn choose_from(&mut self, row: &mut [f32]) -> Result<u32> {
        if !self.sampler.needs_logits() {
            return Ok(sampler::argmax(row));
        }
        self.sampler.sample(row, &self.history)
    }

    fn stats(&self, prompt_seconds: f64, generation_seconds: f64) -> GenerationStats {
        GenerationStats {
            prompt_tokens: self.prompt_len,
            generated_tokens: self.generated,
            prompt_seconds,
            generation_seconds,
        }
    }
}

/// Generates tokens from `model` after `prompt`: each `next()` runs one
/// decoding step (the first one prefills the prompt). Yields generated
/// token ids; stops after a stop token (not yielded) or `max_tokens`.
/// An error ends the iteration.
pub struct Generator<'m> {
    model: &'m Model,
    cache: KvCache,
    decoding: Decoding,
    /// The token whose logits the next step needs (None before prefill).
    last: Option<u32>,
    failed: bool,
    started: Option<Instant>,
    first_token_at: Option<Instant>,
    generation_time: Duration,
}

impl<'m> Generator<'m> {
    /// `stop_ids` are usually the tokenizer bundle's `eos_token_ids`.
    pub fn new(
        model: &'m Model,
        prompt: &[u32],
        stop_ids: &[u32],
        params: &GenerateParams,
    ) -> Result<Self> {
        Ok(Self {
            model,
            cache: model.new_cache(),
            decoding: Decoding::new(model, prompt, stop_ids, params)?,
            last: None,
            failed: false,
            started: None,
            first_token_at: None,
            generation_time: Duration::ZERO,
        })
    }

    /// Why the generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.decoding.finish
    }

    pub fn stats(&self) -> GenerationStats {
        let prompt_seconds = match (self.started, self.first_token_at) {
            (Some(s), Some(f)) => (f - s).as_secs_f64(),
            (Some(s), None) => s.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        self.decoding
            .stats(prompt_seconds, self.generation_time.as_secs_f64())
    }

    /// Logits `[vocab]` of the position after the prompt.
    fn prefill(&mut self) -> Result<Array> {
        let mut logits = None;
        for chunk in self.decoding.prompt().chunks(PREFILL_CHUNK) {
            let tokens = Array::from_slice(chunk, &[1, chunk.len() as i32]);
            let out = self.model.forward_cached(&tokens, &mut self.cache)?;
            let last = out.index((0, -1));
            // Evaluating the last row runs the chunk, so the cache holds
            // arrays rather than an ever longer graph.
            last.eval()?;
            logits = Some(last);
        }
        logits.ok_or_else(|| anyhow!("the prompt has no tokens"))
    }

    // One synchronous step at a time. mlx-lm's pipelining (the next step
    // evaluated asynchronously before the host reads the current token)
    // was tried and measured slower on the 2-core CPU: 0.67-0.74x mlx-lm's
    // generation speed against 0.93-0.95x without it.
    fn step(&mut self) -> Result<Option<u32>> {
        if self.decoding.reached_limit() {
            return Ok(None);
        }
        let step_start = Instant::now();
        let logits = match self.last {
            None => {
                self.started = Some(step_start);
                self.prefill()?
            }
            Some(token) => {
                let input = Array::from_slice(&[token], &[1, 1]);
                let out = self.model.forward_cached(&input, &mut self.cache)?;
                out.index((0, -1))
            }
        };
        let token = self.decoding.choose(&logits)?;
        let now = Instant::now();
        match self.first_token_at {
            None => self.first_token_at = Some(now),
            Some(_) => self.generation_time += now - step_start,
        }
        let token = self.decoding.accept(token);
        if token.is_some() {
            self.last = token;
        }
        Ok(token)
    }
}

impl Iterator for Generator<'_> {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.decoding.finish.is_some() || self.failed {
            return None;
        }
        match self.step() {
            Ok(token) => token.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The result of [`generate_text`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub stats: GenerationStats,
}

/// Runs a generation to its end, calling `on_text` with each new piece of
/// text as it becomes final (for streaming), and returns the whole result.
pub fn generate_text(
    model: &Model,
    tokenizer: &tokenizers::Tokenizer,
    prompt: &[u32],
    stop_ids: &[u32],
    params: &GenerateParams,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let mut generator = Generator::new(model, prompt, stop_ids, params)?;
    let mut decoder = StreamDecoder::new(tokenizer, true);
    let mut text = String::new();
    for token in generator.by_ref() {
        let piece = decoder.push(token?)?;
        if !piece.is_empty() {
            on_text(&piece);
            text.push_str(&piece);
        }
    }
    let rest = decoder.finish()?;
    if !rest.is_empty() {
        on_text(&rest);
        text.push_str(&rest);
    }
    Ok(Generation {
        text,
        tokens: decoder.tokens().to_vec(),
        finish_reason: generator
            .finish_reason()
            .ok_or_else(|| anyhow!("generation ended without a reason"))?,
        stats: generator.stats(),
    })
}
