//! Runs side by side (`/runs/compare`, `GET /api/runs/compare`): each
//! run's curves and final figures, and the settings in which they differ.

use serde::{Deserialize, Serialize};

use crate::dto::{RunSummary, TrainPoint, ValPoint};

/// The fewest and most runs one comparison takes.
pub const MIN_RUNS: usize = 2;
pub const MAX_RUNS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunComparison {
    /// Oldest first.
    pub runs: Vec<ComparedRun>,
    /// Only the settings whose values differ: `model` and `dataset` (the
    /// registered names) first, then the config's keys (dotted paths into
    /// nested tables, e.g. `lora_parameters.rank`) in order.
    pub differences: Vec<ConfigDifference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparedRun {
    pub summary: RunSummary,
    pub train: Vec<TrainPoint>,
    pub valid: Vec<ValPoint>,
    pub figures: FinalFigures,
    /// The last stored event drawn; a live run's stream continues after it.
    pub last_event_seq: i64,
    /// Seconds from the run's first event to when this was read: where the
    /// live page's wall-time axis continues from.
    pub clock_seconds: f64,
    /// Where the reference column of `/compare` points for this run's
    /// adapter (`run:ID`), once it has one.
    pub adapter_reference: Option<String>,
}

/// What a run ended with (or has reached so far).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalFigures {
    pub status: String,
    pub best_val_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
    /// From the run's own test evaluation, else the newest "Evaluate on
    /// test split".
    pub test_loss: Option<f64>,
    pub test_perplexity: Option<f64>,
    /// The mean over the run's reports.
    pub tokens_per_sec: Option<f64>,
    /// The highest any report saw.
    pub peak_memory_gb: Option<f64>,
    pub duration_seconds: Option<f64>,
}

/// One setting that differs: each run's value in run order, as text
/// (`None` where a run's config does not have the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigDifference {
    pub key: String,
    pub values: Vec<Option<String>>,
}
