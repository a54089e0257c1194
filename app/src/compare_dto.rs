//! Data of the compare, blind-vote and chat pages, shared with the JSON API.

use serde::{Deserialize, Serialize};

use crate::dto::{DatasetSummary, ModelSummary};

/// Decoding settings, the same for every output of a comparison.
pub use loralab_types::generation::GenerationSettings;

/// Something a column can show: `base` (no adapter), `run:ID` (a run's
/// adapter) or `adapter:ID` (an imported one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterChoice {
    pub reference: String,
    pub label: String,
    /// The base model it was trained on, when known.
    pub model: Option<String>,
}

/// What the compare form offers, and recent comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareChoices {
    pub models: Vec<ModelSummary>,
    pub adapters: Vec<AdapterChoice>,
    pub datasets: Vec<DatasetSummary>,
    pub recent: Vec<ComparisonSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonSummary {
    pub id: i64,
    pub model: String,
    pub columns: Vec<String>,
    pub prompts: usize,
    pub status: String,
    pub created_at: String,
}

/// The compare form as posted: up to six columns (each a reference or
/// empty), a typed prompt or a dataset split to draw prompts from. Fields
/// are text, as a plain HTML form sends them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewComparisonForm {
    pub model: String,
    pub column_1: Option<String>,
    pub column_2: Option<String>,
    pub column_3: Option<String>,
    pub column_4: Option<String>,
    pub column_5: Option<String>,
    pub column_6: Option<String>,
    /// `typed` or `dataset`.
    pub source: Option<String>,
    pub prompt: Option<String>,
    pub system: Option<String>,
    pub dataset: Option<String>,
    /// `valid` or `test`.
    pub split: Option<String>,
    pub count: Option<String>,
    pub max_tokens: Option<String>,
    pub temperature: Option<String>,
    pub top_p: Option<String>,
    pub top_k: Option<String>,
    pub repetition_penalty: Option<String>,
    pub seed: Option<String>,
}

impl NewComparisonForm {
    /// The non-empty column references, in order.
    pub fn columns(&self) -> Vec<String> {
        [
            &self.column_1,
            &self.column_2,
            &self.column_3,
            &self.column_4,
            &self.column_5,
            &self.column_6,
        ]
        .into_iter()
        .filter_map(|c| c.as_deref().map(str::trim).filter(|c| !c.is_empty()))
        .map(str::to_string)
        .collect()
    }
}

/// A saved comparison, as its page and `GET /api/compare/{id}` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonView {
    pub id: i64,
    pub model: String,
    pub dataset: Option<String>,
    pub split: Option<String>,
    pub settings: GenerationSettings,
    /// `running`, `done`, `failed` or `interrupted`.
    pub status: String,
    pub failure: Option<String>,
    pub created_at: String,
    pub columns: Vec<ColumnView>,
    pub prompts: Vec<PromptView>,
    /// Blind votes cast on this comparison.
    pub votes: usize,
}

impl ComparisonView {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnView {
    pub position: usize,
    pub label: String,
    pub reference: String,
    pub run_id: Option<i64>,
    /// The run's last validation loss, and exp of it.
    pub val_loss: Option<f64>,
    pub val_perplexity: Option<f64>,
    /// The run's test loss (after training), and exp of it.
    pub test_loss: Option<f64>,
    pub test_perplexity: Option<f64>,
    /// Mean generation speed over this column's finished outputs.
    pub tokens_per_sec: Option<f64>,
    /// Blind votes this column's outputs won.
    pub wins: usize,
    /// `wins` over the votes cast; `None` before any vote.
    pub win_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptView {
    pub position: usize,
    /// The prompt as a person reads it.
    pub display: String,
    /// The dataset's answer, for prompts drawn from a dataset.
    pub reference: Option<String>,
    /// e.g. `valid.jsonl:3`.
    pub origin: Option<String>,
    /// One per column, in column order.
    pub outputs: Vec<OutputView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputView {
    pub id: i64,
    pub column: usize,
    /// `pending`, `done`, `failed` or `cancelled` (stopped by a cancel;
    /// `text` holds what came before it).
    pub status: String,
    pub text: String,
    pub error: Option<String>,
    pub generated_tokens: Option<u64>,
    pub finish_reason: Option<String>,
    pub tokens_per_sec: Option<f64>,
}

/// One prompt's outputs in a shuffled order, without their columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ballot {
    pub comparison: i64,
    pub prompt: usize,
    pub prompts: usize,
    pub display: String,
    pub reference: Option<String>,
    /// (letter, output id, text).
    pub options: Vec<(String, i64, String)>,
}

/// Importing an mlx-lm adapter folder that is on the server's disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportAdapterForm {
    pub name: String,
    pub path: String,
    /// The base model it was trained on (a registered name), if known.
    pub model: Option<String>,
}

/// Starting a chat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewChatForm {
    pub model: String,
    /// A column reference (`base`, `run:ID`, `adapter:ID`).
    pub adapter: String,
    pub system: Option<String>,
    /// As typed; empty means the chat default.
    pub temperature: Option<String>,
    pub max_tokens: Option<String>,
}

/// Changing a chat's settings between replies; empty fields keep theirs
/// except `system`, where empty removes the system message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatSettingsForm {
    pub system: Option<String>,
    pub temperature: Option<String>,
    pub max_tokens: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessageView {
    pub role: String,
    pub content: String,
    /// A reply stopped before its end (the Stop button).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatView {
    pub id: i64,
    pub model: String,
    pub adapter: String,
    pub system: Option<String>,
    /// 0 is greedy.
    pub temperature: f32,
    /// The longest reply, in tokens.
    pub max_tokens: usize,
    pub messages: Vec<ChatMessageView>,
}

/// One evaluation: loss and perplexity of a base with an adapter (or none)
/// on a dataset split (`POST /api/runs/{id}/evaluate`, the run page, the
/// compare page's loss row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationView {
    pub id: i64,
    /// `base`, `run` or `adapter`.
    pub source: String,
    pub run_id: Option<i64>,
    /// The run's checkpoint that was evaluated.
    pub step: Option<i64>,
    pub adapter_id: Option<i64>,
    /// The source in words ("base (no adapter)", "run 3, step 30").
    pub label: String,
    pub model: String,
    pub dataset: String,
    /// `train`, `valid` or `test`.
    pub split: String,
    /// Token-weighted mean cross entropy, nats per target token.
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Target tokens that counted.
    pub tokens: u64,
    pub batches: u64,
    pub seconds: f64,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Whether a stored result was returned instead of computing again.
    #[serde(default)]
    pub reused: bool,
}

/// The run page's evaluation section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvaluations {
    pub run_id: i64,
    /// The run's dataset, if it still exists.
    pub dataset: Option<String>,
    /// The splits of the run's dataset that have examples (as the run's
    /// config splits a single file), in train, valid, test order.
    pub splits: Vec<String>,
    /// Whether the run has weights to evaluate yet (a checkpoint).
    pub has_checkpoint: bool,
    /// Newest first.
    pub evaluations: Vec<EvaluationView>,
}

impl RunEvaluations {
    pub fn has_split(&self, split: &str) -> bool {
        self.splits.iter().any(|s| s == split)
    }
}

/// The compare page's losses on a chosen dataset: one entry per column
/// (`None` where that column has not been evaluated on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonEvaluations {
    pub dataset: String,
    pub split: String,
    pub columns: Vec<Option<EvaluationView>>,
}
