//! The worker protocol: JSON lines over the worker's stdin (commands) and
//! stdout (events). Anything a worker prints on stderr is log text that the
//! server keeps as the run's log tail and uses to explain a crash.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::Split;
/// Decoding settings; the pages' forms carry the same type.
pub use loralab_types::generation::GenerationSettings;

/// Server -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Train (or resume, when `run_dir` holds a checkpoint and `resume` is set).
    Train {
        config: Box<TrainConfig>,
        run_dir: String,
        resume: bool,
    },
    /// Save a checkpoint at the next step boundary, then exit.
    Stop,
}

/// Worker -> server. mlx-lm's report set, plus what a run's page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        total_steps: usize,
        start_step: usize,
        trainable_parameters: u64,
        total_parameters: u64,
        device: String,
        compute_dtype: String,
    },
    Report {
        step: usize,
        epoch: f64,
        train_loss: f64,
        learning_rate: f64,
        it_per_sec: f64,
        tokens_per_sec: f64,
        trained_tokens: u64,
        peak_memory_gb: f64,
    },
    Eval {
        step: usize,
        val_loss: f64,
        val_time_sec: f64,
    },
    /// Each rank's own figures over the report just sent at `step` (a run
    /// on several ranks only; the report counts all ranks together).
    Ranks {
        step: usize,
        ranks: Vec<RankFigures>,
    },
    Checkpoint {
        step: usize,
        path: String,
    },
    /// A numbered checkpoint deleted by `keep_checkpoints` (sent before the
    /// file goes, so a worker killed in between leaves a file nobody lists
    /// rather than a listed file that is gone; a resume deletes it).
    CheckpointRemoved {
        step: usize,
        path: String,
    },
    Log {
        message: String,
    },
    Stopped {
        step: usize,
    },
    Done {
        step: usize,
        test_loss: Option<f64>,
        test_perplexity: Option<f64>,
        /// Why the run ended before its last step (early stopping).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Failed {
        reason: String,
    },
}

/// One rank's share of a report window: the tokens it computed over its
/// own step time, and its process's peak memory so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankFigures {
    pub rank: usize,
    pub tokens_per_sec: f64,
    pub peak_memory_gb: f64,
}

/// Server -> inference worker (`loralab inference-worker`). One command at
/// a time: the worker answers each with events and then reads the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum InferenceCommand {
    /// Load a base model (a GGUF file or an HF folder), replacing any other.
    /// Loading the one already loaded does nothing.
    Load { model: String },
    /// Generate from the loaded base with `adapter` (an mlx-lm adapter
    /// folder) swapped in, or the bare base when `None`.
    Generate {
        request: u64,
        adapter: Option<String>,
        prompt: InferencePrompt,
        settings: GenerationSettings,
    },
    /// Generate every row (a prompt with an adapter folder, or the bare
    /// base), up to `max_rows` decoded together in one batch (1: one after
    /// another, as `generate`). Answered by `adapters_loaded`, then per
    /// batch `rows_started`, and per row `row_text` and `row_finished` (or
    /// `row_failed`); then `batch_finished`, or `error` when the request
    /// as a whole is refused (bad settings).
    GenerateBatch {
        request: u64,
        rows: Vec<BatchRowPrompt>,
        settings: GenerationSettings,
        max_rows: usize,
    },
    /// Loss of the loaded base with `adapter` swapped in (or none) on one
    /// split of a dataset, computed as training's validation computes it:
    /// the same pipeline (formats, chat template, masking, held-out split,
    /// length-sorted batches) and the token-weighted mean of mlx-lm's
    /// masked cross entropy. Answered by `eval_progress` events, then
    /// `evaluated` or `error`.
    Evaluate {
        request: u64,
        adapter: Option<String>,
        /// A weights file to use instead of the adapter folder's own
        /// `adapters.safetensors` (a run's numbered checkpoint); the
        /// folder's `adapter_config.json` still describes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adapter_weights: Option<String>,
        /// A dataset folder (train/valid/test JSONL) or one JSONL file.
        dataset: String,
        /// `train`, `valid` or `test`.
        split: String,
        #[serde(flatten)]
        settings: EvalSettings,
    },
    /// Stop request `request` (a generation between two tokens, an
    /// evaluation between two batches). Ignored when it is not running.
    Cancel { request: u64 },
    /// Exit after the current command.
    Shutdown,
}

fn default_split_fraction() -> f64 {
    TrainConfig::default().split_fraction
}

/// How a dataset split is read and batched for an evaluation: the fields
/// of a run's config that decide which batches training evaluated, and how
/// many of them. The server stores it as JSON with each evaluation, as its
/// key: the field order is fixed, so equal settings give equal JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    pub max_seq_length: usize,
    pub batch_size: usize,
    pub mask_prompt: bool,
    /// How a single file is split (as the run's config says), so a
    /// held-out split is the one training held out.
    #[serde(default = "default_split_fraction")]
    pub split_fraction: f64,
    #[serde(default)]
    pub seed: u64,
    /// Batches from the first; -1 for all (mlx-lm's `val_batches`).
    pub limit: i64,
}

impl EvalSettings {
    /// A run's own settings, so its evaluation uses the batches its
    /// training evaluated: `val_batches` for valid (and train),
    /// `test_batches` for test.
    pub fn of_run(config: &TrainConfig, split: Split) -> Self {
        Self {
            max_seq_length: config.max_seq_length,
            batch_size: config.batch_size,
            mask_prompt: config.mask_prompt,
            split_fraction: config.split_fraction,
            seed: config.seed,
            limit: match split {
                Split::Test => config.test_batches,
                Split::Train | Split::Valid => config.val_batches,
            },
        }
    }

    /// A training config that reads and batches data as these settings say.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            max_seq_length: self.max_seq_length,
            batch_size: self.batch_size,
            mask_prompt: self.mask_prompt,
            split_fraction: self.split_fraction,
            seed: self.seed,
            ..TrainConfig::default()
        }
    }

    /// The parts that decide the batches (not the limit).
    pub fn same_batches(&self, other: &Self) -> bool {
        self.max_seq_length == other.max_seq_length
            && self.batch_size == other.batch_size
            && self.mask_prompt == other.mask_prompt
            && self.split_fraction.to_bits() == other.split_fraction.to_bits()
            && self.seed == other.seed
    }
}

/// One row of a `generate_batch` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRowPrompt {
    /// An mlx-lm adapter folder; `None` for the bare base.
    pub adapter: Option<String>,
    pub prompt: InferencePrompt,
}

/// What to generate after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InferencePrompt {
    /// A conversation, rendered with the model's chat template.
    Chat { messages: Vec<PromptMessage> },
    /// Plain text, no template.
    Text { text: String },
}

/// One chat message as chat templates read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptMessage {
    pub role: String,
    pub content: String,
}

/// A finished generation: the `finished` event's body, and what the
/// server hands the generation's caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// `stop` (an end token), `length` (max_tokens) or `cancelled`
    /// (a `cancel` command; `text` holds what came before it).
    pub finish_reason: String,
    pub prompt_tokens_per_sec: f64,
    pub generation_tokens_per_sec: f64,
    pub seconds: f64,
}

/// A finished evaluation: the token-weighted mean loss over `batches`
/// batches holding `tokens` target tokens, and exp of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    pub loss: f64,
    pub perplexity: f64,
    pub tokens: usize,
    pub batches: usize,
    pub seconds: f64,
}

/// Inference worker -> server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InferenceEvent {
    /// A base model is loaded. `base_loads` counts loads over the worker's
    /// life, so a caller can prove that swapping adapters did not reload it.
    Loaded {
        model: String,
        seconds: f64,
        base_loads: u64,
    },
    /// The adapter a request asked for is in place (`None`: the bare base).
    /// `adapter_loads` counts adapter files read over the worker's life.
    AdapterSet {
        request: u64,
        adapter: Option<String>,
        seconds: f64,
        adapter_loads: u64,
    },
    /// The adapters of a `generate_batch` are read: `adapters` folders,
    /// `adapter_loads` over the worker's life.
    AdaptersLoaded {
        request: u64,
        adapters: usize,
        seconds: f64,
        adapter_loads: u64,
    },
    /// These rows of a `generate_batch` start decoding now, together.
    RowsStarted { request: u64, rows: Vec<usize> },
    /// Newly final text of a request's output.
    Text { request: u64, text: String },
    /// A generation ended.
    Finished {
        request: u64,
        #[serde(flatten)]
        result: Finished,
    },
    /// Newly final text of row `row` of a `generate_batch`.
    RowText {
        request: u64,
        row: usize,
        text: String,
    },
    /// Row `row` of a `generate_batch` ended.
    RowFinished {
        request: u64,
        row: usize,
        #[serde(flatten)]
        result: Finished,
    },
    /// Row `row` of a `generate_batch` could not be generated (a bad
    /// adapter or prompt); the other rows go on.
    RowFailed {
        request: u64,
        row: usize,
        reason: String,
    },
    /// Every row of a `generate_batch` has ended. `adapter` is the one
    /// attached afterwards (one-at-a-time batches swap adapters per row).
    BatchFinished {
        request: u64,
        seconds: f64,
        adapter: Option<String>,
    },
    /// An evaluation's progress: `batches` of `total` done.
    EvalProgress {
        request: u64,
        batches: usize,
        total: usize,
    },
    /// An evaluation ended.
    Evaluated {
        request: u64,
        #[serde(flatten)]
        result: Evaluated,
    },
    /// A command failed; `request` is set when it was a generation or an
    /// evaluation.
    Error {
        request: Option<u64>,
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The results are flattened into their events: the lines on the
    /// worker's stdout keep one flat object per event.
    #[test]
    fn results_are_flat_in_their_events() {
        let finished = InferenceEvent::Finished {
            request: 3,
            result: Finished {
                text: "ahoy".into(),
                prompt_tokens: 5,
                generated_tokens: 2,
                finish_reason: "stop".into(),
                prompt_tokens_per_sec: 10.5,
                generation_tokens_per_sec: 4.25,
                seconds: 0.5,
            },
        };
        let line = serde_json::to_string(&finished).unwrap();
        assert_eq!(
            line,
            r#"{"event":"finished","request":3,"text":"ahoy","prompt_tokens":5,"generated_tokens":2,"finish_reason":"stop","prompt_tokens_per_sec":10.5,"generation_tokens_per_sec":4.25,"seconds":0.5}"#
        );
        assert_eq!(
            serde_json::from_str::<InferenceEvent>(&line).unwrap(),
            finished
        );
        let evaluated = InferenceEvent::Evaluated {
            request: 4,
            result: Evaluated {
                loss: 2.0,
                perplexity: 2f64.exp(),
                tokens: 30,
                batches: 3,
                seconds: 1.5,
            },
        };
        let line = serde_json::to_string(&evaluated).unwrap();
        assert!(
            line.starts_with(r#"{"event":"evaluated","request":4,"loss":2.0,"perplexity":"#),
            "{line}"
        );
        assert!(
            line.ends_with(r#","tokens":30,"batches":3,"seconds":1.5}"#),
            "{line}"
        );
        assert_eq!(
            serde_json::from_str::<InferenceEvent>(&line).unwrap(),
            evaluated
        );
    }
}

/// Server -> export worker (`loralab export-worker`): the export first,
/// then at most a `Cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ExportCommand {
    Export {
        request: Box<crate::export::ExportRequest>,
    },
    /// Stop between two tensors; the staging folder is removed.
    Cancel,
}

/// Export worker -> server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ExportEvent {
    Progress(crate::export::ExportProgress),
    Done(crate::export::ExportReport),
    Cancelled,
    Failed { reason: String },
}
