//! Evaluations: the loss and perplexity of a base model with a run's
//! checkpoint, an imported adapter or no adapter, on one split of a
//! registered dataset. The inference worker computes them
//! (`InferenceCommand::Evaluate`: training's data pipeline and loss) with
//! the base it keeps loaded, and each result is stored, so asking the same
//! question again (same weights, dataset, split and settings) reads it back.

use std::path::Path;

use app::compare_dto::{ComparisonEvaluations, EvaluationView, RunEvaluations};
use engine::config::TrainConfig;
use engine::data::{inspect_dataset, FormatKeys, Split};
use serde::Serialize;

use crate::api::ApiError;
use crate::inference::{EvalJob, InferenceError};
use crate::state::AppState;
use crate::store::{
    best_checkpoint, CheckpointRecord, ColumnRecord, DatasetRecord, EvalSource, EvaluationRecord,
    NewEvaluation, RunRecord,
};

/// Batches the compare page evaluates each column on (mlx-lm's default
/// `val_batches`): enough for a stable figure, short on a CPU.
pub const COMPARE_EVAL_BATCHES: i64 = 25;

/// How a split is read and batched; stored with each evaluation as its key.
/// The field order is fixed, so equal settings give equal JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalSettings {
    pub max_seq_length: usize,
    pub batch_size: usize,
    pub mask_prompt: bool,
    pub split_fraction: f64,
    pub seed: u64,
    /// Batches from the first; -1 for all.
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

    /// The same settings for every column of a comparison, so their losses
    /// compare: training's defaults, with the prompt masked where the
    /// format has one (the new-run form's default).
    pub fn for_comparison(dataset: &DatasetRecord) -> Self {
        let defaults = TrainConfig::default();
        Self {
            max_seq_length: defaults.max_seq_length,
            batch_size: defaults.batch_size,
            mask_prompt: dataset.format.as_deref() != Some("text"),
            split_fraction: defaults.split_fraction,
            seed: defaults.seed,
            limit: COMPARE_EVAL_BATCHES,
        }
    }

    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            max_seq_length: self.max_seq_length,
            batch_size: self.batch_size,
            mask_prompt: self.mask_prompt,
            split_fraction: self.split_fraction,
            seed: self.seed,
            ..TrainConfig::default()
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `train`, `valid` or `test`, else a 422 naming `field`.
pub fn parse_split(field: &str, split: &str) -> Result<Split, ApiError> {
    engine::inference::parse_split(split.trim())
        .map_err(|error| ApiError::invalid(field, error.to_string()))
}

fn split_name(split: Split) -> &'static str {
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
fn check_dataset(
    dataset: &DatasetRecord,
    split: Split,
    settings: &EvalSettings,
) -> Result<(), ApiError> {
    let (splits, problems) = dataset_splits(dataset, settings);
    if problems > 0 {
        return Err(ApiError::invalid(
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
        return Err(ApiError::invalid(
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

/// The weights a run is evaluated with: the checkpoint at `step`, else the
/// best one (lowest validation loss, the one the run page marks), else the
/// latest.
fn run_checkpoint(
    run: &RunRecord,
    checkpoints: &[CheckpointRecord],
    step: Option<i64>,
) -> Result<CheckpointRecord, ApiError> {
    if let Some(step) = step {
        return checkpoints
            .iter()
            .find(|c| c.step == step)
            .cloned()
            .ok_or_else(|| {
                let steps: Vec<String> = checkpoints.iter().map(|c| c.step.to_string()).collect();
                ApiError::invalid(
                    "step",
                    format!(
                        "run {} has no checkpoint at step {step} (it has: {})",
                        run.id,
                        if steps.is_empty() {
                            "none".into()
                        } else {
                            steps.join(", ")
                        }
                    ),
                )
            });
    }
    best_checkpoint(checkpoints)
        .or_else(|| checkpoints.iter().max_by_key(|c| c.step))
        .cloned()
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "run {} has no checkpoint yet: its adapter is written at the first checkpoint",
                run.id
            ))
        })
}

/// A stored result for `key`, or a new one from the inference worker.
async fn evaluate_or_reuse(
    state: &AppState,
    key: NewEvaluation,
    model_location: &str,
    job: EvalJob,
) -> Result<EvaluationView, ApiError> {
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
                ApiError::Conflict(message)
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

/// Evaluates run `run_id`'s checkpoint at `step` (default: its best) on
/// `split` (default: test) of the dataset it trained on, with its own
/// settings. A stored evaluation of the same is returned as it is.
pub async fn evaluate_run(
    state: &AppState,
    run_id: i64,
    split: Option<&str>,
    step: Option<i64>,
) -> Result<EvaluationView, ApiError> {
    let run = state
        .store
        .run(run_id)?
        .ok_or_else(|| ApiError::run_not_found(run_id))?;
    let split = parse_split("split", split.unwrap_or("test"))?;
    let config: TrainConfig = serde_json::from_value(run.config.clone())
        .map_err(|e| anyhow::anyhow!("run {run_id}: the stored config is unreadable: {e}"))?;
    let model = run
        .model
        .as_deref()
        .and_then(|name| state.store.model_by_name(name).transpose())
        .transpose()?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "run {run_id}'s base model is no longer registered; import it again to evaluate"
            ))
        })?;
    let dataset = run
        .dataset
        .as_deref()
        .and_then(|name| state.store.dataset_by_name(name).transpose())
        .transpose()?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "run {run_id}'s dataset is no longer registered; nothing to evaluate on"
            ))
        })?;
    let checkpoints = state.store.checkpoints(run_id)?;
    let checkpoint = run_checkpoint(&run, &checkpoints, step)?;
    let settings = EvalSettings::of_run(&config, split);
    check_dataset(&dataset, split, &settings)?;
    let key = NewEvaluation {
        source: EvalSource::Run {
            run_id,
            step: checkpoint.step,
        },
        label: format!("{} (run {run_id}), step {}", run.name, checkpoint.step),
        model_id: Some(model.id),
        model_name: model.name.clone(),
        dataset_id: Some(dataset.id),
        dataset_name: dataset.name.clone(),
        split: split_name(split).to_string(),
        settings_json: settings.json(),
    };
    let job = job(
        Some(state.supervisor.run_dir(run_id).display().to_string()),
        Some(checkpoint.path.clone()),
        &dataset,
        split,
        &settings,
    );
    evaluate_or_reuse(state, key, &model.location, job).await
}

fn job(
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
        max_seq_length: settings.max_seq_length,
        batch_size: settings.batch_size,
        mask_prompt: settings.mask_prompt,
        split_fraction: settings.split_fraction,
        seed: settings.seed,
        limit: settings.limit,
    }
}

/// The run page's section: which splits the run's dataset has, and the
/// run's stored evaluations. The splits come from the counts stored at
/// upload (no file is read to render a page); evaluating checks the files
/// with the run's own split settings.
pub fn run_evaluations(state: &AppState, run_id: i64) -> Result<Option<RunEvaluations>, ApiError> {
    let Some(run) = state.store.run(run_id)? else {
        return Ok(None);
    };
    let dataset = match run.dataset.as_deref() {
        Some(name) => state.store.dataset_by_name(name)?,
        None => None,
    };
    let splits = dataset
        .as_ref()
        .map(|d| {
            [
                ("train", d.train_count),
                ("valid", d.valid_count),
                ("test", d.test_count),
            ]
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(split, _)| split.to_string())
            .collect()
        })
        .unwrap_or_default();
    Ok(Some(RunEvaluations {
        run_id,
        dataset: dataset.map(|d| d.name),
        splits,
        has_checkpoint: !state.store.checkpoints(run_id)?.is_empty(),
        evaluations: state
            .store
            .run_evaluations(run_id)?
            .iter()
            .map(|record| view(record, false))
            .collect(),
    }))
}

/// What a comparison column evaluates: its source, label and weights.
struct ColumnTarget {
    source: EvalSource,
    label: String,
    adapter: Option<String>,
    adapter_weights: Option<String>,
}

/// A column's weights: the base, an imported adapter's folder, or a run's
/// latest checkpoint (the weights its outputs were generated with).
/// `None` when the run or adapter is gone.
fn column_target(
    state: &AppState,
    column: &ColumnRecord,
) -> Result<Option<ColumnTarget>, ApiError> {
    if column.adapter_ref == "base" {
        return Ok(Some(ColumnTarget {
            source: EvalSource::Base,
            label: column.label.clone(),
            adapter: None,
            adapter_weights: None,
        }));
    }
    if let Some(run_id) = column.run_id {
        let checkpoints = state.store.checkpoints(run_id)?;
        let Some(latest) = checkpoints.iter().max_by_key(|c| c.step) else {
            return Ok(None);
        };
        return Ok(Some(ColumnTarget {
            source: EvalSource::Run {
                run_id,
                step: latest.step,
            },
            label: format!("{}, step {}", column.label, latest.step),
            adapter: Some(state.supervisor.run_dir(run_id).display().to_string()),
            adapter_weights: Some(latest.path.clone()),
        }));
    }
    if let Some(adapter_id) = column.adapter_id {
        let Some(adapter) = state.store.adapter(adapter_id)? else {
            return Ok(None);
        };
        return Ok(Some(ColumnTarget {
            source: EvalSource::Adapter { adapter_id },
            label: column.label.clone(),
            adapter: Some(adapter.directory),
            adapter_weights: None,
        }));
    }
    Ok(None)
}

/// A comparison, its chosen dataset and what each column evaluates.
struct ComparisonPlan {
    model_id: Option<i64>,
    model_name: String,
    model_location: String,
    dataset: DatasetRecord,
    split: Split,
    settings: EvalSettings,
    targets: Vec<Option<ColumnTarget>>,
}

fn comparison_plan(
    state: &AppState,
    comparison: i64,
    dataset: &str,
    split: &str,
) -> Result<ComparisonPlan, ApiError> {
    let record = state
        .store
        .comparison(comparison)?
        .ok_or_else(|| ApiError::NotFound(format!("comparison {comparison} does not exist")))?;
    let split = parse_split("split", split)?;
    let dataset_name = dataset.trim();
    let dataset = state.store.dataset_by_name(dataset_name)?.ok_or_else(|| {
        ApiError::invalid("dataset", format!("no dataset named {dataset_name:?}"))
    })?;
    let settings = EvalSettings::for_comparison(&dataset);
    let targets = record
        .columns
        .iter()
        .map(|column| column_target(state, column))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ComparisonPlan {
        model_id: state.store.model_by_name(&record.model_name)?.map(|m| m.id),
        model_name: record.model_name,
        model_location: record.model_location,
        dataset,
        split,
        settings,
        targets,
    })
}

impl ComparisonPlan {
    fn key(&self, target: &ColumnTarget) -> NewEvaluation {
        NewEvaluation {
            source: target.source,
            label: target.label.clone(),
            model_id: self.model_id,
            model_name: self.model_name.clone(),
            dataset_id: Some(self.dataset.id),
            dataset_name: self.dataset.name.clone(),
            split: split_name(self.split).to_string(),
            settings_json: self.settings.json(),
        }
    }
}

/// Each column's stored evaluation on `dataset`/`split`, without computing
/// anything (what the comparison page renders).
pub fn comparison_evaluations(
    state: &AppState,
    comparison: i64,
    dataset: &str,
    split: &str,
) -> Result<ComparisonEvaluations, ApiError> {
    let plan = comparison_plan(state, comparison, dataset, split)?;
    let columns = plan
        .targets
        .iter()
        .map(|target| match target {
            Some(target) => Ok(state
                .store
                .find_evaluation(&plan.key(target))?
                .map(|record| view(&record, true))),
            None => Ok(None),
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(ComparisonEvaluations {
        dataset: plan.dataset.name.clone(),
        split: split_name(plan.split).to_string(),
        columns,
    })
}

/// Evaluates every column of a comparison on `dataset`/`split` through the
/// one inference worker (the base stays loaded; only adapters swap), one
/// column after another, reusing stored results.
pub async fn evaluate_comparison(
    state: &AppState,
    comparison: i64,
    dataset: &str,
    split: &str,
) -> Result<ComparisonEvaluations, ApiError> {
    let plan = comparison_plan(state, comparison, dataset, split)?;
    check_dataset(&plan.dataset, plan.split, &plan.settings)?;
    let mut columns = Vec::with_capacity(plan.targets.len());
    for target in &plan.targets {
        let Some(target) = target else {
            columns.push(None);
            continue;
        };
        let job = job(
            target.adapter.clone(),
            target.adapter_weights.clone(),
            &plan.dataset,
            plan.split,
            &plan.settings,
        );
        let evaluation =
            evaluate_or_reuse(state, plan.key(target), &plan.model_location, job).await?;
        columns.push(Some(evaluation));
    }
    Ok(ComparisonEvaluations {
        dataset: plan.dataset.name.clone(),
        split: split_name(plan.split).to_string(),
        columns,
    })
}
