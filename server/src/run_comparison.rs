//! Runs side by side (`/runs/compare`, `GET /api/runs/compare`): each
//! run's loss curves and final figures, and the config keys in which the
//! runs differ. Also the curves of one run, which the run page draws.

use std::collections::BTreeMap;

use app::dto::{TrainPoint, ValPoint};
use app::run_comparison_dto::{
    ComparedRun, ConfigDifference, FinalFigures, RunComparison, MAX_RUNS, MIN_RUNS,
};
use engine::protocol::Event;
use serde_json::Value;

use engine::config::MANAGED_KEYS;

use crate::state::AppState;
use crate::store::{Store, StoreError, StoreResult};

/// Why runs could not be compared; `api::error` turns these into HTTP
/// answers.
#[derive(Debug, thiserror::Error)]
pub enum RunComparisonError {
    /// `ids` does not name 2 to 8 runs.
    #[error("ids: {0}")]
    InvalidIds(String),
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for RunComparisonError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

/// A run's measurements, from its stored events.
#[derive(Debug, Default)]
pub struct RunCurves {
    pub train: Vec<TrainPoint>,
    pub valid: Vec<ValPoint>,
    pub test_loss: Option<f64>,
    pub test_perplexity: Option<f64>,
    pub last_event_seq: i64,
    /// Seconds from the run's first event to now.
    pub clock_seconds: f64,
}

pub fn run_curves(store: &Store, id: i64) -> StoreResult<RunCurves> {
    let (seconds, clock_seconds) = store.event_seconds(id)?;
    let mut curves = RunCurves {
        clock_seconds,
        ..RunCurves::default()
    };
    for stored in store.events_since(id, 0)? {
        curves.last_event_seq = stored.seq;
        let elapsed_seconds = seconds.get(&stored.seq).copied().unwrap_or(0.0);
        let Ok(event) = serde_json::from_str::<Event>(&stored.body) else {
            continue;
        };
        match event {
            Event::Report {
                step,
                epoch,
                train_loss,
                learning_rate,
                tokens_per_sec,
                trained_tokens,
                peak_memory_gb,
                ..
            } => curves.train.push(TrainPoint {
                step: step as u64,
                epoch,
                train_loss,
                learning_rate,
                tokens_per_sec,
                trained_tokens,
                peak_memory_gb,
                elapsed_seconds,
            }),
            Event::Eval { step, val_loss, .. } => curves.valid.push(ValPoint {
                step: step as u64,
                val_loss,
                elapsed_seconds,
            }),
            Event::Done {
                test_loss,
                test_perplexity,
                ..
            } => {
                curves.test_loss = test_loss;
                curves.test_perplexity = test_perplexity.or(test_loss.map(f64::exp));
            }
            _ => {}
        }
    }
    Ok(curves)
}

/// The run ids of `?ids=`: comma-separated, or the key repeated (what a
/// form's checkboxes send), each run once, oldest first (so one set of
/// runs is one page, whatever order they were ticked or typed in).
pub fn parse_ids<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<i64>, RunComparisonError> {
    let mut ids = Vec::new();
    for part in values.into_iter().flat_map(|value| value.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let id = part.parse::<i64>().map_err(|_| {
            RunComparisonError::InvalidIds(format!("`{part}` is not a run id (ids are numbers)"))
        })?;
        ids.push(id);
    }
    ids.sort_unstable();
    ids.dedup();
    if !(MIN_RUNS..=MAX_RUNS).contains(&ids.len()) {
        return Err(RunComparisonError::InvalidIds(format!(
            "choose {MIN_RUNS} to {MAX_RUNS} runs to compare ({} chosen)",
            ids.len()
        )));
    }
    Ok(ids)
}

pub fn compare_runs(state: &AppState, ids: &[i64]) -> Result<RunComparison, RunComparisonError> {
    let summaries = state.store.list_runs()?;
    let mut runs = Vec::new();
    let mut configs = Vec::new();
    for &id in ids {
        let (Some(summary), Some(record)) = (
            summaries.iter().find(|run| run.id == id).cloned(),
            state.store.run(id)?,
        ) else {
            return Err(RunComparisonError::NotFound(id));
        };
        let curves = run_curves(&state.store, id)?;
        let checkpoints = state.store.checkpoints(id)?;
        let (test_loss, test_perplexity) = match curves.test_loss {
            Some(loss) => (Some(loss), curves.test_perplexity),
            None => newest_test_evaluation(state, id)?,
        };
        let reports = curves.train.len() as f64;
        let figures = FinalFigures {
            status: summary.status.clone(),
            best_val_loss: curves.valid.iter().map(|p| p.val_loss).reduce(f64::min),
            last_val_loss: curves.valid.last().map(|p| p.val_loss),
            test_loss,
            test_perplexity,
            tokens_per_sec: (reports > 0.0)
                .then(|| curves.train.iter().map(|p| p.tokens_per_sec).sum::<f64>() / reports),
            peak_memory_gb: curves
                .train
                .iter()
                .map(|p| p.peak_memory_gb)
                .reduce(f64::max),
            duration_seconds: summary.elapsed_seconds,
        };
        let mut settings = BTreeMap::new();
        let config = serde_json::to_value(&record.config).map_err(anyhow::Error::from)?;
        flatten("", &config, &mut settings);
        settings.insert("model".to_string(), summary.model.clone());
        settings.insert("dataset".to_string(), summary.dataset.clone());
        configs.push(settings);
        runs.push(ComparedRun {
            summary,
            train: curves.train,
            valid: curves.valid,
            figures,
            last_event_seq: curves.last_event_seq,
            clock_seconds: curves.clock_seconds,
            adapter_reference: (!checkpoints.is_empty()).then(|| format!("run:{id}")),
        });
    }
    Ok(RunComparison {
        runs,
        differences: differences(&configs),
    })
}

/// The loss and perplexity of the run's newest evaluation on a test split.
fn newest_test_evaluation(
    state: &AppState,
    id: i64,
) -> Result<(Option<f64>, Option<f64>), RunComparisonError> {
    let newest = state
        .store
        .run_evaluations(id)?
        .into_iter()
        .find(|evaluation| evaluation.split == "test");
    Ok(newest.map_or((None, None), |e| (Some(e.loss), Some(e.perplexity))))
}

/// A config as `dotted.key -> value as text`. Keys Loralab sets per run
/// (paths) say nothing about how runs differ, and `model` is the model's
/// path: the registered name stands in for it.
fn flatten(prefix: &str, value: &Value, into: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                if prefix.is_empty() && (MANAGED_KEYS.contains(&key.as_str()) || key == "model") {
                    continue;
                }
                flatten(&format!("{prefix}{key}."), value, into);
            }
        }
        Value::String(text) => {
            into.insert(prefix.trim_end_matches('.').to_string(), text.clone());
        }
        other => {
            into.insert(prefix.trim_end_matches('.').to_string(), other.to_string());
        }
    }
}

/// The keys whose values are not the same in every config: `model` and
/// `dataset` first, then the rest by name.
fn differences(configs: &[BTreeMap<String, String>]) -> Vec<ConfigDifference> {
    let mut keys: Vec<&String> = configs.iter().flat_map(|config| config.keys()).collect();
    let rank = |key: &str| match key {
        "model" => 0,
        "dataset" => 1,
        _ => 2,
    };
    keys.sort_by_key(|key| (rank(key), key.as_str()));
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let values: Vec<Option<String>> = configs
                .iter()
                .map(|config| config.get(key).cloned())
                .collect();
            let differs = values.iter().any(|value| value != &values[0]);
            differs.then(|| ConfigDifference {
                key: key.clone(),
                values,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(error: RunComparisonError) -> String {
        error.to_string()
    }

    #[test]
    fn ids_come_comma_separated_or_repeated() {
        assert_eq!(parse_ids(["1,2, 3"]).unwrap(), [1, 2, 3]);
        assert_eq!(parse_ids(["4", "2", "4"]).unwrap(), [2, 4]);
        assert_eq!(
            message(parse_ids(["1"]).unwrap_err()),
            "ids: choose 2 to 8 runs to compare (1 chosen)"
        );
        assert_eq!(
            message(parse_ids([]).unwrap_err()),
            "ids: choose 2 to 8 runs to compare (0 chosen)"
        );
        assert_eq!(
            message(parse_ids(["1,2,3,4,5,6,7,8,9"]).unwrap_err()),
            "ids: choose 2 to 8 runs to compare (9 chosen)"
        );
        assert_eq!(
            message(parse_ids(["1,x"]).unwrap_err()),
            "ids: `x` is not a run id (ids are numbers)"
        );
    }

    #[test]
    fn only_differing_keys_with_model_and_dataset_first() {
        let config = |rate: f64, rank: u64, dataset: &str| {
            let mut settings = BTreeMap::new();
            flatten(
                "",
                &json!({
                    "model": "/models/tiny.gguf",
                    "data": "/data/1",
                    "adapter_path": format!("/runs/{rank}"),
                    "learning_rate": rate,
                    "fine_tune_type": "lora",
                    "lora_parameters": { "rank": rank, "scale": 10.0, "keys": ["q", "v"] },
                    "lr_schedule": null,
                }),
                &mut settings,
            );
            settings.insert("model".into(), "tiny".into());
            settings.insert("dataset".into(), dataset.into());
            settings
        };
        let found = differences(&[config(1e-4, 4, "a"), config(1e-3, 4, "a")]);
        assert_eq!(
            found,
            [ConfigDifference {
                key: "learning_rate".into(),
                values: vec![Some("0.0001".into()), Some("0.001".into())],
            }]
        );
        let found = differences(&[
            config(1e-4, 4, "a"),
            config(1e-4, 8, "b"),
            config(1e-4, 4, "a"),
        ]);
        let keys: Vec<&str> = found.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["dataset", "lora_parameters.rank"]);
        assert_eq!(
            found[1].values,
            [Some("4".into()), Some("8".into()), Some("4".into())]
        );
        let mut extra = config(1e-4, 4, "a");
        extra.insert("epochs".into(), "2".into());
        let found = differences(&[config(1e-4, 4, "a"), extra]);
        assert_eq!(found[0].values, [None, Some("2".into())]);
    }
}
