//! Data shared by the pages, their server functions and the JSON API.

use serde::{Deserialize, Serialize};

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthInfo {
    pub status: String,
    pub version: String,
    /// `cpu` or `gpu`.
    pub device: String,
    /// e.g. "CPU" or "GPU (CUDA)".
    pub device_description: String,
}

/// A run as the runs list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub model: String,
    pub dataset: String,
    pub step: u64,
    pub total_steps: u64,
    pub latest_val_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub tokens_per_sec: Option<f64>,
    /// Steps per second at the latest report.
    pub it_per_sec: Option<f64>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub started_at: Option<String>,
    /// Seconds from the start to the end, or to now while it runs.
    pub elapsed_seconds: Option<f64>,
    /// Its thermal/memory guard holds it (its status stays `running`).
    #[serde(default)]
    pub paused: bool,
}

impl RunSummary {
    /// Fraction of the steps done, 0..=1.
    pub fn progress(&self) -> f64 {
        if self.total_steps == 0 {
            0.0
        } else {
            (self.step as f64 / self.total_steps as f64).clamp(0.0, 1.0)
        }
    }

    /// Seconds left at the latest speed, while the run is running.
    pub fn eta_seconds(&self) -> Option<f64> {
        let speed = self.it_per_sec.filter(|speed| *speed > 0.0)?;
        (self.status == "running")
            .then(|| self.total_steps.saturating_sub(self.step) as f64 / speed)
    }

    /// What the worker is doing, in words, while the run is active: the
    /// first seconds of a run (loading, the step-0 validation) have no
    /// steps to show. live.js moves it on as events come.
    pub fn phase(&self) -> Option<&'static str> {
        match self.status.as_str() {
            "queued" => Some("waiting for memory or a free slot"),
            "running" if self.total_steps == 0 => Some("loading the model and data"),
            "running" if self.step == 0 => Some("first validation"),
            "running" => Some("training"),
            "stopping" => Some("saving a checkpoint"),
            _ => None,
        }
    }

    /// Whether a worker is (or will be) busy with this run.
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "queued" | "running" | "stopping")
    }

    /// Whether the run can continue from its last checkpoint.
    pub fn is_resumable(&self) -> bool {
        matches!(self.status.as_str(), "stopped" | "interrupted" | "failed")
    }
}

/// One training report (mlx-lm's set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    pub step: u64,
    /// Epochs done (fractional), as the worker reported.
    pub epoch: f64,
    pub train_loss: f64,
    pub learning_rate: f64,
    pub tokens_per_sec: f64,
    pub trained_tokens: u64,
    pub peak_memory_gb: f64,
    /// Seconds from the run's first event to this report (wall time).
    #[serde(default)]
    pub elapsed_seconds: f64,
}

/// One validation result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValPoint {
    pub step: u64,
    pub val_loss: f64,
    /// Seconds from the run's first event to this evaluation (wall time).
    #[serde(default)]
    pub elapsed_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    pub step: u64,
    pub path: String,
    pub val_loss: Option<f64>,
    pub best: bool,
}

/// Everything the run page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub summary: RunSummary,
    /// The run's configuration as a `loralab train --config` YAML file.
    pub config_yaml: String,
    pub failure: Option<String>,
    /// Why a `done` run ended before its last step (early stopping).
    pub finish_reason: Option<String>,
    pub log_tail: Vec<String>,
    pub checkpoints: Vec<CheckpointInfo>,
    pub train: Vec<TrainPoint>,
    pub valid: Vec<ValPoint>,
    pub test_loss: Option<f64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The last stored event shown here; the live stream continues after it.
    pub last_event_seq: i64,
    /// Seconds from the run's first event to when this was read: where the
    /// live chart's wall-time axis continues from.
    #[serde(default)]
    pub clock_seconds: f64,
    /// This run's exports, newest first.
    pub exports: Vec<ExportView>,
    /// The machine while it trained, and its guard.
    pub system: crate::system_dto::RunSystem,
    /// Data-parallel ranks the run trains on (its `gpus`); 1 for most.
    pub ranks: usize,
    /// With several ranks, one row each: where it trains and its figures
    /// in the latest report.
    #[serde(default)]
    pub rank_rows: Vec<RankRow>,
}

/// One rank of a run on several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankRow {
    pub rank: usize,
    /// The host (and GPU) it runs on.
    pub place: String,
    /// Tokens of its own share of the batches per second of its steps.
    pub tokens_per_sec: Option<f64>,
    pub peak_memory_gb: Option<f64>,
}

/// A model as pickers and the models page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub id: i64,
    pub name: String,
    pub source: String,
    pub location: String,
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    pub quantization: Option<String>,
    pub size_bytes: Option<u64>,
    /// Shipped with Loralab (cannot be removed).
    pub builtin: bool,
    /// When it was registered (UTC, as SQLite writes it).
    pub created_at: String,
}

/// A model being pulled from the Hugging Face Hub (or just pulled): the
/// models page, `GET /api/models/pulls/{id}` and its SSE events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullView {
    pub id: u64,
    /// What was asked for: `org/name[/file.gguf][@revision]`; also the name
    /// the model is registered under.
    pub spec: String,
    pub repo: String,
    pub revision: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// The commit the revision resolved to, once known.
    pub commit: Option<String>,
    pub files: Vec<PullFile>,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Average download speed so far.
    pub bytes_per_sec: f64,
    /// Everything came from the Hugging Face cache.
    pub from_cache: bool,
    /// Why it failed, naming the repo and file.
    pub error: Option<String>,
    /// The registered model, once done.
    pub model_id: Option<i64>,
    /// The snapshot folder or GGUF file in the cache, once done.
    pub path: Option<String>,
    pub elapsed_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullFile {
    pub name: String,
    pub size: u64,
    pub done: u64,
    /// Already in the cache: not downloaded.
    pub cached: bool,
}

impl PullView {
    /// Fraction of the bytes on disk, 0..=1 (1 when there is nothing to fetch).
    pub fn progress(&self) -> f64 {
        if self.total_bytes == 0 {
            if self.status == "done" {
                1.0
            } else {
                0.0
            }
        } else {
            (self.done_bytes as f64 / self.total_bytes as f64).clamp(0.0, 1.0)
        }
    }
}

/// A dataset as pickers and the datasets page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub id: i64,
    pub name: String,
    pub format: Option<String>,
    pub train_count: u64,
    pub valid_count: u64,
    pub test_count: u64,
    /// Validation problems found at upload; a run refuses the dataset while
    /// there are any.
    pub problems: u64,
    /// Shipped with Loralab.
    pub builtin: bool,
}

/// How to look at a dataset: the model whose tokenizer and chat template
/// render it, and the training settings that change what is trained. `None`
/// takes the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetQuery {
    pub model: Option<String>,
    pub max_seq_length: Option<usize>,
    pub mask_prompt: Option<bool>,
    /// Share of a single file held out for validation and for test.
    pub split_fraction: Option<f64>,
    pub seed: Option<u64>,
}

/// One problem of a dataset: `train.jsonl:17: field "messages[2].role": ...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetProblem {
    pub file: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

/// Token figures of one split, with the model's tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitTokens {
    pub tokens: u64,
    pub trained_tokens: u64,
    pub min_length: u64,
    pub max_length: u64,
    pub truncated_examples: u64,
    pub truncated_tokens: u64,
    /// Examples whose prompt fills the whole sequence: nothing to learn.
    pub untrainable_examples: u64,
    /// Counts of lengths in `[i * bucket_width, (i + 1) * bucket_width)`.
    pub histogram_bucket_width: u64,
    pub histogram: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// `train`, `valid` or `test`.
    pub split: String,
    /// Where its examples come from, in words ("valid.jsonl", "held out of train.jsonl").
    pub source: String,
    pub examples: u64,
    pub tokens: Option<SplitTokens>,
}

/// A stretch of an example's rendered text and what training does with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewSegment {
    /// `masked` (prompt, no loss), `trained` or `truncated`.
    pub kind: String,
    pub text: String,
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExamplePreview {
    pub file: String,
    pub line: usize,
    pub segments: Vec<PreviewSegment>,
}

/// Everything the dataset page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetDetail {
    pub summary: DatasetSummary,
    /// The JSONL files with their sizes in bytes.
    pub files: Vec<(String, u64)>,
    pub format: Option<String>,
    pub splits: Vec<SplitInfo>,
    pub problems: Vec<DatasetProblem>,
    pub previews: Vec<ExamplePreview>,
    /// The settings the figures were computed with (defaults filled in).
    pub query: DatasetQuery,
    /// While the model's tokenizer is still reading a large dataset for
    /// the first time: how far it is (the figures come when it is done).
    #[serde(default)]
    pub inspecting: Option<InspectionProgress>,
}

/// Examples tokenized of all read, while a dataset is first inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionProgress {
    pub encoded: u64,
    pub total: u64,
}

/// The memory a run will need (`POST /api/runs/estimate`), in bytes,
/// against what the machine has free now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// Base weights as this device computes with them.
    pub weights: u64,
    /// LoRA weights, their gradients and the optimizer's state.
    pub adapters: u64,
    /// What one step keeps for backward.
    pub activations: u64,
    pub total: u64,
    /// Free memory now, where the system says.
    pub available: Option<u64>,
    pub fits: Option<bool>,
    /// How the base computes on this device, in words.
    pub compute: String,
    /// Disk: one numbered checkpoint, how many stay at the end (at most),
    /// and all of the run folder's weights and optimizer state.
    pub checkpoint_bytes: u64,
    pub checkpoints_kept: u64,
    pub disk: u64,
}

/// A new run's settings checked before launch: the config it would run
/// and whether it fits in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCheck {
    /// The equivalent `loralab train --config` file.
    pub config_yaml: String,
    pub memory: MemoryEstimate,
}

pub use crate::run_form::NewRunForm;

/// An export of a fine-tune (a fused model, an MLX-quantized one or a PEFT
/// adapter): the Exports page, the run page and `GET /api/exports/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportView {
    pub id: i64,
    pub run_id: Option<i64>,
    pub run_name: Option<String>,
    /// The checkpoint step exported; None for the run's latest weights.
    pub step: Option<i64>,
    /// The base model's registered name.
    pub model: String,
    /// `hf`, `mlx`, `peft`, `gguf` or `gguf-lora`.
    pub format: String,
    /// `bf16`, `f16` or `f32`.
    pub dtype: String,
    /// Bits of an MLX-quantized export.
    pub bits: Option<u8>,
    /// The tensor type of a GGUF export (`q4_k_m`, `f16`, `same`, ...).
    #[serde(default)]
    pub quant: Option<String>,
    /// GGUF exports: tensors copied byte for byte from a GGUF base, and
    /// tensors written from floats.
    #[serde(default)]
    pub copied: Option<usize>,
    #[serde(default)]
    pub requantized: Option<usize>,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    pub error: Option<String>,
    /// The export's folder, once done.
    pub path: Option<String>,
    pub tensors_done: usize,
    pub tensors_total: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Base tensors the adapter changed (fused exports).
    pub fused: Option<usize>,
    /// The export's files and their sizes, once done.
    pub files: Vec<(String, u64)>,
    pub size_bytes: u64,
    /// The command that uses it.
    pub usage: String,
    pub created_at: String,
    pub elapsed_seconds: f64,
}
