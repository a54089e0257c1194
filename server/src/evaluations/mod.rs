//! Evaluations: the loss and perplexity of a base model with a run's
//! checkpoint, an imported adapter or no adapter, on one split of a
//! registered dataset. The inference worker computes them
//! (`InferenceCommand::Evaluate`: training's data pipeline and loss) with
//! the base it keeps loaded, and each result is stored, so asking the same
//! question again (same weights, dataset, split and settings) reads it back.

mod comparison;
mod error;
mod run;

use std::path::Path;

use app::compare_dto::EvaluationView;
use engine::config::TrainConfig;
use engine::data::{inspect_dataset, FormatKeys, Split};
use engine::protocol::EvalSettings;

use crate::inference::{EvalJob, InferenceError};
use crate::state::AppState;
use crate::store::{DatasetRecord, EvalSource, EvaluationRecord, NewEvaluation};

pub use comparison::{comparison_evaluations, evaluate_comparison};
pub use error::EvaluationError;
pub use run::{evaluate_run, run_evaluations};

/// Batches the compare page evaluates each column on (mlx-lm's default
/// `val_batches`): enough for a stable figure, short on a CPU.
pub const COMPARE_EVAL_BATCHES: i64 = 25;

/// The same settings for every column of a comparison, so their losses
/// compare: training's defaults, with the prompt masked where the format
/// has one (the new-run form's default).
pub fn comparison_settings(dataset: &DatasetRecord) -> EvalSettings {
    let defaults = TrainConfig::default();
    EvalSettings {
        max_seq_length: defaults.max_seq_length,
        batch_size: defaults.batch_size,
        mask_prompt: dataset.format.as_deref() != Some("text"),
        split_fraction: defaults.split_fraction,
        seed: defaults.seed,
        limit: COMPARE_EVAL_BATCHES,
    }
}

/// The settings as stored with an evaluation: its key.
fn settings_key(settings: &EvalSettings) -> String {
    serde_json::to_string(settings).unwrap_or_default()
}

/// `train`, `valid` or `test`, else a 422 naming `field`.
pub fn parse_split(field: &str, split: &str) -> Result<Split, EvaluationError> {
    engine::inference::parse_split(split.trim())
        .map_err(|error| EvaluationError::invalid(field, error.to_string()))
}

pub(crate) fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Valid => "valid",
        Split::Test => "test",
    }
}

pub fn view(record: &EvaluationRecord, reused: bool) -> EvaluationView {
    let (source, run_id, step, adapter_id) = match record.source {
        EvalSource::Base => ("base", None, None, None),
        EvalSource::Run { run_id, step } => ("run", Some(run_id), Some(step), None),
        EvalSource::Adapter { adapter_id } => ("adapter", None, None, Some(adapter_id)),
    };
    EvaluationView {
        id: record.id,
        source: source.to_string(),
        run_id,
        step,
        adapter_id,
        label: record.label.clone(),
        model: record.model_name.clone(),
        dataset: record.dataset_name.clone(),
        split: record.split.clone(),
        loss: record.loss,
        perplexity: record.perplexity,
        tokens: record.tokens.max(0) as u64,
        batches: record.batches.max(0) as u64,
        seconds: record.seconds,
        created_at: record.created_at.clone(),
        reused,
    }
}

/// The splits of `dataset` that have examples when split as `settings`
/// say (a single file's held-out parts included), and the dataset's
/// problems. Reads the JSONL files; no tokenizer, no MLX.
fn dataset_splits(dataset: &DatasetRecord, settings: &EvalSettings) -> (Vec<Split>, usize) {
    let report = inspect_dataset(
        Path::new(&dataset.directory),
        &FormatKeys::default(),
        &settings.train_config(),
    );
    let splits = Split::ALL
        .into_iter()
        .filter(|split| report.split(*split).examples > 0)
        .collect();
    (splits, report.problems.len())
}

/// Refuses a dataset with problems or without the split, in words that say
/// what to do instead.
pub(crate) fn check_dataset(
    dataset: &DatasetRecord,
    split: Split,
    settings: &EvalSettings,
) -> Result<(), EvaluationError> {
    let (splits, problems) = dataset_splits(dataset, settings);
    if problems > 0 {
        return Err(EvaluationError::invalid(
            "dataset",
            format!(
                "dataset {:?} has {problems} problem{}; its page lists them",
                dataset.name,
                if problems == 1 { "" } else { "s" }
            ),
        ));
    }
    if !splits.contains(&split) {
        let have: Vec<&str> = splits.into_iter().map(split_name).collect();
        return Err(EvaluationError::invalid(
            "split",
            format!(
                "dataset {:?} has no {} split (it has: {})",
                dataset.name,
                split_name(split),
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            ),
        ));
    }
    Ok(())
}

/// A stored result for `key`, or a new one from the inference worker.
pub(crate) async fn evaluate_or_reuse(
    state: &AppState,
    key: NewEvaluation,
    model_location: &str,
    job: EvalJob,
) -> Result<EvaluationView, EvaluationError> {
    if let Some(stored) = state.store.find_evaluation(&key)? {
        return Ok(view(&stored, true));
    }
    let mut on_progress = |done: usize, total: usize| {
        tracing::debug!(done, total, "evaluating");
    };
    let evaluated = state
        .inference
        .evaluate(model_location, job, &mut on_progress, None)
        .await
        .map_err(|error| match error {
            InferenceError::Busy(message) | InferenceError::Failed(message) => {
                EvaluationError::Conflict(message)
            }
        })?;
    let record = state.store.insert_evaluation(
        &key,
        evaluated.loss,
        evaluated.tokens as i64,
        evaluated.batches as i64,
        evaluated.seconds,
    )?;
    Ok(view(&record, false))
}

pub(crate) fn job(
    adapter: Option<String>,
    adapter_weights: Option<String>,
    dataset: &DatasetRecord,
    split: Split,
    settings: &EvalSettings,
) -> EvalJob {
    EvalJob {
        adapter,
        adapter_weights,
        dataset: dataset.directory.clone(),
        split: split_name(split).to_string(),
        settings: settings.clone(),
    }
}
