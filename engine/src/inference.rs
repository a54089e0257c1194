//! A loaded base model that serves generations and evaluations with any
//! adapter: the base is read once, adapters are swapped in place (see
//! [`crate::lora::swap_adapters`]). Used by the inference worker process;
//! like every MLX object it must stay on one thread.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{anyhow, bail, Result};

use crate::batch::Batch;
use crate::config::ComputeDtype;
use crate::data::{load_dataset, Split, SplitSource};
use crate::generate::{
    chat_prompt, generate_text, text_prompt, BatchGenerator, BatchRow, FinishReason,
    GenerateParams, Generation, GenerationStats, Generator, SamplingParams, StreamDecoder,
};
use crate::lora;
use crate::models::{build_model, load_hf_folder, Model, Pass};
use crate::protocol::{EvalSettings, GenerationSettings, InferencePrompt};
use crate::tokenizer::TokenizerBundle;
use crate::train::loss::{batch_loss, loss_inputs};

/// Longest generation a request may ask for: an upper bound on how long one
/// request holds the worker.
pub const MAX_TOKENS_LIMIT: usize = 4096;

/// Which adapter weights are on the base: a folder, and optionally a
/// weights file standing in for the folder's `adapters.safetensors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSource {
    pub dir: PathBuf,
    pub weights: Option<PathBuf>,
}

impl AdapterSource {
    pub fn folder(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            weights: None,
        }
    }
}

/// The result of [`InferenceSession::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Token-weighted mean cross entropy (nats per token).
    pub loss: f64,
    pub perplexity: f64,
    /// Target tokens that counted (the masks' sum).
    pub tokens: usize,
    pub batches: usize,
    pub seconds: f64,
}

/// A generation that may have been stopped early.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutcome {
    pub text: String,
    /// `stop`, `length` or `cancelled`.
    pub finish_reason: &'static str,
    pub stats: GenerationStats,
}

/// One output of a batched request: a prompt, with an adapter or the bare
/// base.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPrompt {
    pub adapter: Option<AdapterSource>,
    pub prompt: InferencePrompt,
}

/// What [`InferenceSession::generate_batch`] reports as it goes; rows are
/// named by their index in the request.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchUpdate<'a> {
    /// The request's adapters are read (`count` folders).
    AdaptersLoaded { count: usize, seconds: f64 },
    /// These rows start decoding now, together.
    Started(&'a [usize]),
    /// Newly final text of a row.
    Text { row: usize, text: &'a str },
    /// A row ended (stopped, at its limit, or cancelled: a cancel also
    /// ends the rows not started yet, with no text).
    Finished {
        row: usize,
        outcome: GenerationOutcome,
    },
    /// A row could not be generated (its adapter or prompt is bad); the
    /// others go on.
    Failed { row: usize, reason: String },
}

/// A row of a batched request, tokenized, with its adapter's place in the
/// stack.
struct ReadyRow {
    row: usize,
    tokens: Vec<u32>,
    adapter: Option<usize>,
}

/// Batches of one dataset, kept while the next evaluation reads the same
/// dataset the same way (the columns of a comparison): tokenizing is
/// then done once, as the base is loaded once.
struct PreparedSplits {
    dataset: PathBuf,
    /// The files as they were read: a dataset folder replaced under the
    /// same path (a deleted dataset's id given to a new upload) is read
    /// again.
    files: Vec<FileStamp>,
    settings: EvalSettings,
    splits: [Vec<Batch>; 3],
    sources: [SplitSource; 3],
}

/// A base model, its tokenizer and the adapter currently swapped in.
pub struct InferenceSession {
    model: Model,
    tokenizer: TokenizerBundle,
    model_path: PathBuf,
    adapter: Option<AdapterSource>,
    prepared: Option<PreparedSplits>,
    /// Base models loaded by this process (1 after `load`).
    pub base_loads: u64,
    /// Adapter folders read by this process.
    pub adapter_loads: u64,
}

impl InferenceSession {
    /// Loads a GGUF file or an HF folder. On the CPU, quantized GGUF weights
    /// are dequantized to f32, which MLX computes far faster there.
    pub fn load(path: &Path) -> Result<Self> {
        let (model, tokenizer) = load_base(path)?;
        Ok(Self {
            model,
            tokenizer,
            model_path: path.to_path_buf(),
            adapter: None,
            prepared: None,
            base_loads: 1,
            adapter_loads: 0,
        })
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    pub fn adapter(&self) -> Option<&Path> {
        self.adapter.as_ref().map(|a| a.dir.as_path())
    }

    pub fn tokenizer(&self) -> &TokenizerBundle {
        &self.tokenizer
    }

    /// Loads another base in place (counted in `base_loads`); the adapter
    /// is dropped.
    pub fn reload(&mut self, path: &Path) -> Result<()> {
        let (model, tokenizer) = load_base(path)?;
        self.model = model;
        self.tokenizer = tokenizer;
        self.model_path = path.to_path_buf();
        self.adapter = None;
        self.prepared = None;
        self.base_loads += 1;
        Ok(())
    }

    /// Puts `dir`'s adapter (or none) on the base. Returns whether anything
    /// changed: asking for the adapter already in place reads nothing.
    pub fn set_adapter(&mut self, dir: Option<&Path>) -> Result<bool> {
        self.set_adapter_source(dir.map(AdapterSource::folder).as_ref())
    }

    /// [`Self::set_adapter`] where the weights may come from another file
    /// than the folder's own (a run's numbered checkpoint).
    pub fn set_adapter_source(&mut self, source: Option<&AdapterSource>) -> Result<bool> {
        if self.adapter.as_ref() == source {
            return Ok(false);
        }
        let result = match source {
            None => lora::swap_adapters(&mut self.model, None),
            Some(AdapterSource { dir, weights: None }) => {
                lora::swap_adapters(&mut self.model, Some(dir))
            }
            Some(AdapterSource {
                dir,
                weights: Some(weights),
            }) => swap_to_weights(&mut self.model, dir, weights),
        };
        if source.is_some() {
            self.adapter_loads += 1;
        }
        match result {
            Ok(()) => {
                self.adapter = source.cloned();
                Ok(true)
            }
            Err(error) => {
                // swap_adapters leaves the bare base behind on failure.
                self.adapter = None;
                Err(error)
            }
        }
    }

    /// The prompt's tokens: a conversation through the chat template, or
    /// plain text.
    pub fn prompt_tokens(&self, prompt: &InferencePrompt) -> Result<Vec<u32>> {
        match prompt {
            InferencePrompt::Chat { messages } => {
                if messages.is_empty() {
                    bail!("the conversation has no messages");
                }
                chat_prompt(&self.tokenizer, messages.as_slice())
            }
            InferencePrompt::Text { text } => {
                if text.is_empty() {
                    bail!("the prompt is empty");
                }
                text_prompt(&self.tokenizer, text)
            }
        }
    }

    /// Generates with the current adapter, calling `on_text` with each piece
    /// of text as it becomes final.
    pub fn generate(
        &self,
        prompt: &InferencePrompt,
        settings: &GenerationSettings,
        on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        let params = generate_params(settings)?;
        let tokens = self.prompt_tokens(prompt)?;
        generate_text(
            &self.model,
            &self.tokenizer.tokenizer,
            &tokens,
            &self.tokenizer.eos_token_ids,
            &params,
            on_text,
        )
    }

    /// Generates with the current adapter like [`Self::generate`], and asks
    /// `cancelled` between tokens: when it says yes, the generation ends
    /// there with what it has (finish reason `cancelled`).
    pub fn generate_until(
        &self,
        prompt: &InferencePrompt,
        settings: &GenerationSettings,
        mut on_text: impl FnMut(&str),
        mut cancelled: impl FnMut() -> bool,
    ) -> Result<GenerationOutcome> {
        let params = generate_params(settings)?;
        let tokens = self.prompt_tokens(prompt)?;
        let mut generator =
            Generator::new(&self.model, &tokens, &self.tokenizer.eos_token_ids, &params)?;
        let mut decoder = StreamDecoder::new(&self.tokenizer.tokenizer, true);
        let mut text = String::new();
        let mut stopped = false;
        loop {
            if cancelled() {
                stopped = true;
                break;
            }
            let Some(token) = generator.next() else { break };
            let piece = decoder.push(token?)?;
            if !piece.is_empty() {
                on_text(&piece);
                text.push_str(&piece);
            }
        }
        // Text held back for a multi-byte character or a word boundary is
        // final now, cancelled or not.
        let rest = decoder.finish()?;
        if !rest.is_empty() {
            on_text(&rest);
            text.push_str(&rest);
        }
        let finish_reason = if stopped {
            "cancelled"
        } else {
            finish_reason_name(
                generator
                    .finish_reason()
                    .ok_or_else(|| anyhow!("generation ended without a reason"))?,
            )
        };
        Ok(GenerationOutcome {
            text,
            finish_reason,
            stats: generator.stats(),
        })
    }

    /// Generates every row of `rows` (each a prompt with its adapter), up to
    /// `max_rows` decoded together: the adapters are read once and stacked
    /// on the base (`Model::with_stacked_adapters`), and the rows run in
    /// batches of as many as `max_rows` and `memory::BATCH_KV_BYTES` allow
    /// (their KV cache, padded to the longest prompt). `max_rows` 1 is the
    /// one-at-a-time path: each row alone, adapters swapped in as needed.
    /// `cancelled` is asked between steps: yes ends every row there with
    /// what it has (finish reason `cancelled`), and the rows not started
    /// with nothing.
    pub fn generate_batch(
        &mut self,
        rows: &[BatchPrompt],
        settings: &GenerationSettings,
        max_rows: usize,
        on_update: &mut dyn FnMut(BatchUpdate<'_>),
        cancelled: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        let params = generate_params(settings)?;
        if max_rows == 0 {
            bail!("max_rows must be at least 1");
        }
        if rows.is_empty() {
            bail!("a batch needs at least one row");
        }
        if max_rows == 1 {
            self.generate_one_by_one(rows, settings, on_update, cancelled);
            return Ok(());
        }
        let started = Instant::now();
        let mut base = self.model.clone();
        lora::detach(&mut base);
        let mut sources: Vec<&AdapterSource> = Vec::new();
        let mut adapted: Vec<Model> = Vec::new();
        let mut broken: Vec<(&AdapterSource, String)> = Vec::new();
        let mut ready = Vec::new();
        for (row, request) in rows.iter().enumerate() {
            let tokens = match self.prompt_tokens(&request.prompt) {
                Ok(tokens) => tokens,
                Err(error) => {
                    on_update(BatchUpdate::Failed {
                        row,
                        reason: format!("{error:#}"),
                    });
                    continue;
                }
            };
            let adapter = match &request.adapter {
                None => None,
                Some(source) => {
                    if let Some(i) = sources.iter().position(|s| *s == source) {
                        Some(i)
                    } else if let Some((_, reason)) = broken.iter().find(|(s, _)| *s == source) {
                        on_update(BatchUpdate::Failed {
                            row,
                            reason: reason.clone(),
                        });
                        continue;
                    } else {
                        self.adapter_loads += 1;
                        match with_adapter(&base, source) {
                            Ok(model) => {
                                sources.push(source);
                                adapted.push(model);
                                Some(adapted.len() - 1)
                            }
                            Err(error) => {
                                let reason = format!("{error:#}");
                                broken.push((source, reason.clone()));
                                on_update(BatchUpdate::Failed { row, reason });
                                continue;
                            }
                        }
                    }
                }
            };
            ready.push(ReadyRow {
                row,
                tokens,
                adapter,
            });
        }
        on_update(BatchUpdate::AdaptersLoaded {
            count: sources.len() + broken.len(),
            seconds: started.elapsed().as_secs_f64(),
        });
        let stacked = base.with_stacked_adapters(&adapted)?;
        let value_bytes = match self.model.compute_dtype {
            mlx_rs::Dtype::Float16 | mlx_rs::Dtype::Bfloat16 => 2,
            _ => 4,
        };
        let per_token = crate::memory::kv_bytes_per_token(&self.model.config, value_bytes);
        let mut stopped = false;
        for batch in plan_batches(&ready, max_rows, params.max_tokens, per_token) {
            let batch = &ready[batch];
            stopped = stopped || cancelled();
            if stopped {
                for row in batch {
                    on_update(BatchUpdate::Finished {
                        row: row.row,
                        outcome: not_started(row.tokens.len()),
                    });
                }
                continue;
            }
            stopped = self.decode_batch(&stacked, batch, &params, on_update, cancelled);
        }
        Ok(())
    }

    /// Decodes one batch to its end; whether a cancel stopped it. A failed
    /// step fails the rows still going.
    fn decode_batch(
        &self,
        stacked: &Model,
        batch: &[ReadyRow],
        params: &GenerateParams,
        on_update: &mut dyn FnMut(BatchUpdate<'_>),
        cancelled: &mut dyn FnMut() -> bool,
    ) -> bool {
        let ids: Vec<usize> = batch.iter().map(|r| r.row).collect();
        let rows: Vec<BatchRow> = batch
            .iter()
            .map(|r| BatchRow {
                prompt: r.tokens.clone(),
                adapter: r.adapter,
            })
            .collect();
        let mut generator =
            match BatchGenerator::new(stacked, &rows, &self.tokenizer.eos_token_ids, params) {
                Ok(generator) => generator,
                Err(error) => {
                    for &row in &ids {
                        on_update(BatchUpdate::Failed {
                            row,
                            reason: format!("{error:#}"),
                        });
                    }
                    return false;
                }
            };
        on_update(BatchUpdate::Started(&ids));
        let mut decoders: Vec<StreamDecoder> = ids
            .iter()
            .map(|_| StreamDecoder::new(&self.tokenizer.tokenizer, true))
            .collect();
        let mut texts = vec![String::new(); ids.len()];
        let mut open = vec![true; ids.len()];
        let mut stopped = false;
        let mut run = |on_update: &mut dyn FnMut(BatchUpdate<'_>)| -> Result<()> {
            loop {
                if cancelled() {
                    stopped = true;
                    return Ok(());
                }
                let Some(step) = generator.step()? else {
                    return Ok(());
                };
                for (i, token) in step.tokens {
                    let piece = decoders[i].push(token)?;
                    if !piece.is_empty() {
                        on_update(BatchUpdate::Text {
                            row: ids[i],
                            text: &piece,
                        });
                        texts[i].push_str(&piece);
                    }
                }
                for i in step.finished {
                    let reason = generator
                        .finish_reason(i)
                        .ok_or_else(|| anyhow!("row {i} ended without a reason"))?;
                    let outcome = finish_row(
                        &mut decoders[i],
                        &mut texts[i],
                        finish_reason_name(reason),
                        generator.stats(i),
                        ids[i],
                        on_update,
                    )?;
                    open[i] = false;
                    on_update(BatchUpdate::Finished {
                        row: ids[i],
                        outcome,
                    });
                }
            }
        };
        let result = run(on_update);
        for i in (0..ids.len()).filter(|&i| open[i]) {
            let outcome = match &result {
                Ok(()) => finish_row(
                    &mut decoders[i],
                    &mut texts[i],
                    "cancelled",
                    generator.stats(i),
                    ids[i],
                    on_update,
                ),
                Err(error) => Err(anyhow!("{error:#}")),
            };
            match outcome {
                Ok(outcome) => on_update(BatchUpdate::Finished {
                    row: ids[i],
                    outcome,
                }),
                Err(error) => on_update(BatchUpdate::Failed {
                    row: ids[i],
                    reason: format!("{error:#}"),
                }),
            }
        }
        stopped
    }

    /// `generate_batch` with one row at a time: what comparisons did before
    /// batching (and the bench's baseline).
    fn generate_one_by_one(
        &mut self,
        rows: &[BatchPrompt],
        settings: &GenerationSettings,
        on_update: &mut dyn FnMut(BatchUpdate<'_>),
        cancelled: &mut dyn FnMut() -> bool,
    ) {
        let mut stopped = false;
        for (row, request) in rows.iter().enumerate() {
            stopped = stopped || cancelled();
            if stopped {
                let tokens = self.prompt_tokens(&request.prompt).map_or(0, |t| t.len());
                on_update(BatchUpdate::Finished {
                    row,
                    outcome: not_started(tokens),
                });
                continue;
            }
            let started = Instant::now();
            let loads = self.adapter_loads;
            let swapped = self.set_adapter_source(request.adapter.as_ref());
            on_update(BatchUpdate::AdaptersLoaded {
                count: (self.adapter_loads - loads) as usize,
                seconds: started.elapsed().as_secs_f64(),
            });
            if let Err(error) = swapped {
                on_update(BatchUpdate::Failed {
                    row,
                    reason: format!("{error:#}"),
                });
                continue;
            }
            on_update(BatchUpdate::Started(&[row]));
            let result = self.generate_until(
                &request.prompt,
                settings,
                |text| on_update(BatchUpdate::Text { row, text }),
                &mut *cancelled,
            );
            match result {
                Ok(outcome) => {
                    stopped = outcome.finish_reason == "cancelled";
                    on_update(BatchUpdate::Finished { row, outcome });
                }
                Err(error) => on_update(BatchUpdate::Failed {
                    row,
                    reason: format!("{error:#}"),
                }),
            }
        }
    }

    /// Loss and perplexity of the base with the current adapter on `split`
    /// of the dataset at `dataset`, computed as training's validation does
    /// (`train::loss::evaluate`): the same batches in the same order (the
    /// data pipeline's length-sorted batches, the first `limit`), mlx-lm's
    /// mask, the token-weighted mean of the batch losses, no dropout.
    /// `on_progress(done, total)` follows each batch; `cancelled` is asked
    /// before each one.
    pub fn evaluate(
        &mut self,
        dataset: &Path,
        split: &str,
        settings: &EvalSettings,
        mut on_progress: impl FnMut(usize, usize),
        mut cancelled: impl FnMut() -> bool,
    ) -> Result<Evaluation> {
        let started = Instant::now();
        let split = parse_split(split)?;
        if settings.batch_size == 0 {
            bail!("batch_size must be at least 1");
        }
        if settings.max_seq_length < 2 {
            bail!(
                "max_seq_length must be at least 2, got {}",
                settings.max_seq_length
            );
        }
        if settings.limit == 0 || settings.limit < -1 {
            bail!(
                "limit must be -1 (all batches) or positive, got {}",
                settings.limit
            );
        }
        let prepared = prepare(&mut self.prepared, &self.tokenizer, dataset, settings)?;
        let index = Split::ALL.iter().position(|s| *s == split).unwrap_or(0);
        let batches = &prepared.splits[index];
        if batches.is_empty() {
            let name = split_name(split);
            match &prepared.sources[index] {
                SplitSource::Missing => bail!(
                    "dataset {} has no {name} split (no {} file, and nothing is held out of a single file)",
                    dataset.display(),
                    split.file_name()
                ),
                _ => bail!(
                    "dataset {}: the {name} split has no examples",
                    dataset.display()
                ),
            }
        }
        let count = if settings.limit < 0 {
            batches.len()
        } else {
            batches.len().min(settings.limit as usize)
        };
        let params = self.model.lora_params();
        let pass = Pass {
            lora: &params,
            dropout_seed: None,
            grad_checkpoint: false,
        };
        let (mut total, mut tokens) = (0.0f64, 0usize);
        for (done, batch) in batches[..count].iter().enumerate() {
            if cancelled() {
                bail!("the evaluation was cancelled after {done} of {count} batches");
            }
            let inputs = loss_inputs(batch)?;
            let loss = batch_loss(&self.model, &pass, &inputs)?;
            total += f64::from(loss.try_item_exact::<f32>()?) * inputs.tokens as f64;
            tokens += inputs.tokens;
            on_progress(done + 1, count);
        }
        if tokens == 0 {
            bail!(
                "dataset {}: the {} split has no tokens that count for the loss (every target is masked)",
                dataset.display(),
                split_name(split)
            );
        }
        let loss = total / tokens as f64;
        Ok(Evaluation {
            loss,
            perplexity: loss.exp(),
            tokens,
            batches: count,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The rows of each batch, in order: consecutive rows, at most `max_rows`,
/// and only as many as `memory::BATCH_KV_BYTES` holds the KV cache of
/// (each row padded to the batch's longest prompt plus `max_tokens`, in the
/// cache's 256-position steps). A batch has at least one row.
fn plan_batches(
    rows: &[ReadyRow],
    max_rows: usize,
    max_tokens: usize,
    per_token: u64,
) -> Vec<std::ops::Range<usize>> {
    let positions = |longest: usize| (longest + max_tokens).div_ceil(256) as u64 * 256;
    let mut batches = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let mut longest = rows[start].tokens.len();
        let mut end = start + 1;
        while end < rows.len() && end - start < max_rows {
            let wider = longest.max(rows[end].tokens.len());
            let bytes = (end - start + 1) as u64 * positions(wider) * per_token;
            if bytes > crate::memory::BATCH_KV_BYTES {
                break;
            }
            longest = wider;
            end += 1;
        }
        batches.push(start..end);
        start = end;
    }
    batches
}

/// The outcome of a row a cancel kept from starting.
fn not_started(prompt_tokens: usize) -> GenerationOutcome {
    GenerationOutcome {
        text: String::new(),
        finish_reason: "cancelled",
        stats: GenerationStats {
            prompt_tokens,
            ..GenerationStats::default()
        },
    }
}

/// Ends a row of a batch: its held-back text comes out (and is reported).
fn finish_row(
    decoder: &mut StreamDecoder,
    text: &mut String,
    finish_reason: &'static str,
    stats: GenerationStats,
    row: usize,
    on_update: &mut dyn FnMut(BatchUpdate<'_>),
) -> Result<GenerationOutcome> {
    let rest = decoder.finish()?;
    if !rest.is_empty() {
        on_update(BatchUpdate::Text { row, text: &rest });
        text.push_str(&rest);
    }
    Ok(GenerationOutcome {
        text: std::mem::take(text),
        finish_reason,
        stats,
    })
}

/// `base` (bare) with the adapter of `source` attached.
fn with_adapter(base: &Model, source: &AdapterSource) -> Result<Model> {
    let mut model = base.clone();
    match &source.weights {
        None => lora::load_adapters(&mut model, &source.dir)?,
        Some(weights) => swap_to_weights(&mut model, &source.dir, weights)?,
    }
    Ok(model)
}

/// A file's path, length and modification time.
type FileStamp = (PathBuf, u64, Option<SystemTime>);

/// The JSONL files a dataset path stands for, stamped.
fn stamps(dataset: &Path) -> Vec<FileStamp> {
    let files: Vec<PathBuf> = if dataset.is_dir() {
        Split::ALL
            .iter()
            .map(|split| dataset.join(split.file_name()))
            .collect()
    } else {
        vec![dataset.to_path_buf()]
    };
    files
        .into_iter()
        .filter_map(|file| {
            let meta = std::fs::metadata(&file).ok()?;
            Some((file, meta.len(), meta.modified().ok()))
        })
        .collect()
}

/// The dataset's batches, tokenized once per dataset and settings (kept in
/// `slot` for the next evaluation).
fn prepare<'a>(
    slot: &'a mut Option<PreparedSplits>,
    tokenizer: &TokenizerBundle,
    dataset: &Path,
    settings: &EvalSettings,
) -> Result<&'a PreparedSplits> {
    let files = stamps(dataset);
    let cached = slot.as_ref().is_some_and(|p| {
        p.dataset == dataset && p.files == files && p.settings.same_batches(settings)
    });
    if !cached {
        *slot = None;
        if !dataset.exists() {
            bail!(
                "dataset {} does not exist (expected a folder with train.jsonl, valid.jsonl, test.jsonl, or one JSONL file)",
                dataset.display()
            );
        }
        let data = load_dataset(dataset, tokenizer, &settings.train_config())
            .map_err(|e| anyhow!("dataset {}: {e}", dataset.display()))?;
        let sources = [0, 1, 2].map(|i| data.report.splits[i].source.clone());
        *slot = Some(PreparedSplits {
            dataset: dataset.to_path_buf(),
            files,
            settings: settings.clone(),
            splits: [data.train, data.valid, data.test],
            sources,
        });
    }
    slot.as_ref()
        .ok_or_else(|| anyhow!("the dataset was not prepared"))
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Valid => "valid",
        Split::Test => "test",
    }
}

/// `train`, `valid` or `test`.
pub fn parse_split(split: &str) -> Result<Split> {
    match split {
        "train" => Ok(Split::Train),
        "valid" => Ok(Split::Valid),
        "test" => Ok(Split::Test),
        other => bail!("no such split {other:?}: use `train`, `valid` or `test`"),
    }
}

/// Puts the adapter described by `dir`'s config, with the weights in
/// `weights`, on the bare base.
fn swap_to_weights(model: &mut Model, dir: &Path, weights: &Path) -> Result<()> {
    lora::detach(model);
    let settings = lora::read_adapter_settings(dir)?;
    lora::attach(model, &settings, 0)?;
    let loaded = lora::load_weights(model, weights);
    if loaded.is_err() {
        lora::detach(model);
    }
    loaded
}

/// The protocol's settings as the generator's, checked field by field.
pub fn generate_params(settings: &GenerationSettings) -> Result<GenerateParams> {
    if settings.max_tokens == 0 || settings.max_tokens > MAX_TOKENS_LIMIT {
        bail!(
            "max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {}",
            settings.max_tokens
        );
    }
    let sampling = SamplingParams {
        temperature: settings.temperature,
        top_p: settings.top_p,
        top_k: settings.top_k,
        repetition_penalty: settings.repetition_penalty,
        seed: settings.seed,
        ..SamplingParams::default()
    };
    sampling.validate()?;
    Ok(GenerateParams {
        max_tokens: settings.max_tokens,
        sampling,
    })
}

/// `stop` or `length`, as the protocol spells a finish reason.
pub fn finish_reason_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn load_base(path: &Path) -> Result<(Model, TokenizerBundle)> {
    let loaded = if path.is_dir() {
        let model = load_hf_folder(path, ComputeDtype::Auto)?;
        let tokenizer = TokenizerBundle::from_hf_folder(path)?;
        (model, tokenizer)
    } else if path.is_file() {
        let mut gguf = crate::gguf::load_gguf_model(path)
            .map_err(|e| anyhow!("model {}: {e}", path.display()))?;
        if !crate::device::is_gpu() {
            gguf.dequantize_weights()
                .map_err(|e| anyhow!("model {}: {e}", path.display()))?;
        }
        let model = build_model(&gguf.config, gguf.weights, ComputeDtype::Auto)
            .map_err(|e| anyhow!("model {}: {e:#}", path.display()))?;
        (model, gguf.tokenizer)
    } else {
        bail!(
            "model {} does not exist: give a GGUF file or a model folder (config.json + *.safetensors)",
            path.display()
        );
    };
    Ok(loaded)
}
