//! A comparison's columns evaluated on one dataset split, with the same
//! settings for every column (the compare page's loss row).

use app::compare_dto::ComparisonEvaluations;
use engine::data::Split;

use super::EvaluationError;
use super::{check_dataset, evaluate_or_reuse, job, parse_split, split_name, view, EvalSettings};
use crate::state::AppState;
use crate::store::{ColumnRecord, DatasetRecord, EvalSource, NewEvaluation};

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
) -> Result<Option<ColumnTarget>, EvaluationError> {
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
) -> Result<ComparisonPlan, EvaluationError> {
    let record = state.store.comparison(comparison)?.ok_or_else(|| {
        EvaluationError::NotFound(format!("comparison {comparison} does not exist"))
    })?;
    let split = parse_split("split", split)?;
    let dataset_name = dataset.trim();
    let dataset = state.store.dataset_by_name(dataset_name)?.ok_or_else(|| {
        EvaluationError::invalid("dataset", format!("no dataset named {dataset_name:?}"))
    })?;
    let settings = super::comparison_settings(&dataset);
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
            settings_json: super::settings_key(&self.settings),
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
) -> Result<ComparisonEvaluations, EvaluationError> {
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
        .collect::<Result<Vec<_>, EvaluationError>>()?;
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
) -> Result<ComparisonEvaluations, EvaluationError> {
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
