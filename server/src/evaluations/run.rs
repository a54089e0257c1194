//! A run's evaluations: its checkpoint on a split of the dataset it
//! trained on, with its own settings (the run page's action).

use app::compare_dto::{EvaluationView, RunEvaluations};

use super::EvaluationError;
use super::{check_dataset, evaluate_or_reuse, job, parse_split, split_name, view, EvalSettings};
use crate::state::AppState;
use crate::store::{best_checkpoint, CheckpointRecord, EvalSource, NewEvaluation, RunRecord};

/// The weights a run is evaluated with: the checkpoint at `step`, else the
/// best one (lowest validation loss, the one the run page marks), else the
/// latest.
fn run_checkpoint(
    run: &RunRecord,
    checkpoints: &[CheckpointRecord],
    step: Option<i64>,
) -> Result<CheckpointRecord, EvaluationError> {
    if let Some(step) = step {
        return checkpoints
            .iter()
            .find(|c| c.step == step)
            .cloned()
            .ok_or_else(|| {
                let steps: Vec<String> = checkpoints.iter().map(|c| c.step.to_string()).collect();
                EvaluationError::invalid(
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
            EvaluationError::Conflict(format!(
                "run {} has no checkpoint yet: its adapter is written at the first checkpoint",
                run.id
            ))
        })
}

/// Evaluates run `run_id`'s checkpoint at `step` (default: its best) on
/// `split` (default: test) of the dataset it trained on, with its own
/// settings. A stored evaluation of the same is returned as it is.
pub async fn evaluate_run(
    state: &AppState,
    run_id: i64,
    split: Option<&str>,
    step: Option<i64>,
) -> Result<EvaluationView, EvaluationError> {
    let run = state
        .store
        .run(run_id)?
        .ok_or_else(|| EvaluationError::NotFound(format!("run {run_id} does not exist")))?;
    let split = parse_split("split", split.unwrap_or("test"))?;
    let config = run.config.clone();
    let model = run
        .model
        .as_deref()
        .and_then(|name| state.store.model_by_name(name).transpose())
        .transpose()?
        .ok_or_else(|| {
            EvaluationError::Conflict(format!(
                "run {run_id}'s base model is no longer registered; import it again to evaluate"
            ))
        })?;
    let dataset = run
        .dataset
        .as_deref()
        .and_then(|name| state.store.dataset_by_name(name).transpose())
        .transpose()?
        .ok_or_else(|| {
            EvaluationError::Conflict(format!(
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
        settings_json: super::settings_key(&settings),
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

/// The run page's section: which splits the run's dataset has, and the
/// run's stored evaluations. The splits come from the counts stored at
/// upload (no file is read to render a page); evaluating checks the files
/// with the run's own split settings.
pub fn run_evaluations(
    state: &AppState,
    run_id: i64,
) -> Result<Option<RunEvaluations>, EvaluationError> {
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
