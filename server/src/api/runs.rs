//! Runs: list, show, create (validated), stop, resume.

use app::dto::MemoryEstimate;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use engine::config::{TrainConfig, MANAGED_KEYS};
use engine::model_config::ModelConfig;
use serde::Serialize;
use serde_json::{Map, Value};

use super::ApiError;
use crate::state::{AppState, SharedState};
use crate::store::{CheckpointRecord, DatasetRecord, ModelSummary, NewRun, RunRecord};
use crate::train_cli::known_keys;

pub async fn list(
    State(state): State<SharedState>,
) -> Result<Json<Vec<app::dto::RunSummary>>, ApiError> {
    let mut runs = state.store.list_runs()?;
    state.supervisor.mark_paused(&mut runs);
    Ok(Json(runs))
}

/// `GET /api/runs/{id}`.
#[derive(Debug, Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunRecord,
    pub checkpoints: Vec<CheckpointRecord>,
    /// Its guard's pause, while the run holds (status stays `running`).
    pub paused: Option<app::system_dto::GuardPause>,
}

pub async fn show(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    Ok(Json(detail(&state, id)?))
}

fn detail(state: &AppState, id: i64) -> Result<RunDetail, ApiError> {
    let run = state.store.run(id)?.ok_or(ApiError::run_not_found(id))?;
    let checkpoints = state.store.checkpoints(id)?;
    let paused = state.supervisor.paused(id);
    Ok(RunDetail {
        run,
        checkpoints,
        paused,
    })
}

pub async fn create(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunDetail>), ApiError> {
    let request = RunRequest::from_body(&body)?;
    let id = off_the_runtime(&state, move |state| create_run(state, request)).await?;
    Ok((StatusCode::CREATED, Json(detail(&state, id)?)))
}

/// Runs `work` on a blocking thread: checking a run reads its model's files
/// and, the first time, tokenizes its whole dataset (seconds for a large
/// one), which must not hold up the server's other requests.
async fn off_the_runtime<T: Send + 'static>(
    state: &SharedState,
    work: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(&state))
        .await
        .map_err(|error| anyhow::anyhow!("checking the run stopped: {error}"))?
}

/// Validates a new run's request (`POST /api/runs`'s body, or the new-run
/// form's) and queues it.
pub fn create_run(state: &AppState, request: RunRequest) -> Result<i64, ApiError> {
    let run = validate_run(state, request)?;
    // For the supervisor's memory budget.
    let estimate = run.memory_estimate(state);
    if !run.force {
        refuse_unless_it_fits(state, &estimate)?;
    }
    let estimate = Some(estimate.total);
    let id = state.store.insert_run(&NewRun {
        name: run.name,
        model_id: Some(run.model.id),
        dataset_id: Some(run.dataset.id),
        config: run.config,
    })?;
    state.supervisor.enqueue(id, estimate);
    Ok(id)
}

/// A new run's request, checked: everything `create_run` stores.
pub struct ValidatedRun {
    pub name: String,
    pub model: ModelSummary,
    pub dataset: DatasetRecord,
    pub config: TrainConfig,
    /// The model's architecture, read from its files once.
    pub architecture: ModelConfig,
    /// Queue it even if its memory estimate is over what the machine has
    /// (it then trains alone).
    pub force: bool,
}

impl ValidatedRun {
    /// The memory this run needs, against what the machine has free now.
    pub fn memory_estimate(&self, state: &AppState) -> MemoryEstimate {
        crate::estimate::estimate_run(
            &state.device,
            &state.inspections,
            &state.tokenizers,
            &self.model,
            &self.architecture,
            &self.config,
        )
    }
}

/// Refuses a run whose estimate is over the memory it could ever have: the
/// supervisor's budget (what was free at start, or the configured one),
/// else what is free now.
fn refuse_unless_it_fits(state: &AppState, estimate: &MemoryEstimate) -> Result<(), ApiError> {
    let Some(limit) = state.supervisor.memory_budget().or(estimate.available) else {
        return Ok(());
    };
    if estimate.total <= limit {
        return Ok(());
    }
    let size = crate::models::format_size;
    Err(ApiError::invalid(
        "memory",
        format!(
            "this run needs about {} ({} weights, {} adapters and optimizer, {} activations) but {} is available; lower batch_size, max_seq_length, lora_parameters.rank or num_layers, turn on grad_checkpoint, or send force: true to queue it anyway (it then trains alone)",
            size(estimate.total),
            size(estimate.weights),
            size(estimate.adapters),
            size(estimate.activations),
            size(limit),
        ),
    ))
}

/// A new run as asked for, before the model and dataset are looked up:
/// `POST /api/runs`'s body, or the new-run form's fields.
pub struct RunRequest {
    /// `None`: "<model> on <dataset>".
    pub name: Option<String>,
    /// Registered names.
    pub model: String,
    pub dataset: String,
    /// Every setting but `model` and `data`, which come from the registered
    /// model and dataset.
    pub config: TrainConfig,
    /// Queue it even if its memory estimate does not fit.
    pub force: bool,
}

impl RunRequest {
    /// A JSON body: `model`, `dataset`, `name`, `force` and TrainConfig
    /// keys; errors name the field.
    pub fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        let request: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid("body", format!("not valid JSON: {e}")))?;
        let Value::Object(mut fields) = request else {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        };
        let model = take_string(&mut fields, "model")?.ok_or_else(|| {
            ApiError::invalid("model", "required: the name of a registered model")
        })?;
        let dataset = take_string(&mut fields, "dataset")?.ok_or_else(|| {
            ApiError::invalid("dataset", "required: the name of a registered dataset")
        })?;
        let name = take_string(&mut fields, "name")?;
        let force = match fields.remove("force") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(force)) => force,
            Some(other) => {
                return Err(ApiError::invalid(
                    "force",
                    format!("must be true or false, got {other}"),
                ))
            }
        };
        Ok(Self {
            name,
            model,
            dataset,
            config: train_config(fields)?,
            force,
        })
    }
}

/// Checks a new run's request; errors name the field.
pub fn validate_run(state: &AppState, request: RunRequest) -> Result<ValidatedRun, ApiError> {
    let RunRequest {
        name,
        model: model_name,
        dataset: dataset_name,
        config,
        force,
    } = request;
    let model = state.store.model_by_name(&model_name)?.ok_or_else(|| {
        ApiError::invalid(
            "model",
            format!("no model named {model_name:?} (GET /api/models lists them)"),
        )
    })?;
    let dataset = state.store.dataset_by_name(&dataset_name)?.ok_or_else(|| {
        ApiError::invalid(
            "dataset",
            format!("no dataset named {dataset_name:?} (GET /api/datasets lists them)"),
        )
    })?;
    if dataset.problems > 0 {
        return Err(ApiError::invalid(
            "dataset",
            format!(
                "{dataset_name:?} has {} validation problem(s); the datasets page lists them with file and line",
                dataset.problems
            ),
        ));
    }
    let config = TrainConfig {
        model: model.location.clone(),
        data: dataset.directory.clone(),
        ..config
    };
    config
        .validate()
        .map_err(|error| ApiError::invalid(error.field, error.reason))?;
    if let Some(set) = &config.machine_set {
        crate::machines::ready_for(&state.store, set, config.batch_size)?;
    }
    let architecture = crate::estimate::model_architecture(std::path::Path::new(&model.location))
        .map_err(|error| {
        ApiError::invalid(
            "model",
            format!("cannot read the architecture of {}: {error:#}", model.name),
        )
    })?;
    engine::config::adapted_layers(config.num_layers, architecture.num_hidden_layers)
        .map_err(|error| ApiError::invalid(error.field, error.reason))?;
    let name = name.unwrap_or_else(|| format!("{} on {}", model.name, dataset.name));
    if name.trim().is_empty() {
        return Err(ApiError::invalid("name", "must not be empty"));
    }
    Ok(ValidatedRun {
        name,
        model,
        dataset,
        config,
        architecture,
        force,
    })
}

/// `POST /api/runs/estimate`: the memory a run would need (same body as
/// `POST /api/runs`), against what the machine has free.
pub async fn estimate(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<app::dto::MemoryEstimate>, ApiError> {
    let request = RunRequest::from_body(&body)?;
    let estimate = off_the_runtime(&state, move |state| {
        let run = validate_run(state, request)?;
        Ok(run.memory_estimate(state))
    })
    .await?;
    Ok(Json(estimate))
}

fn take_string(fields: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(ApiError::invalid(
            key,
            format!("must be a string, got {other}"),
        )),
    }
}

/// The TrainConfig keys of a request; each key is checked alone first so
/// the error names it.
fn train_config(fields: Map<String, Value>) -> Result<TrainConfig, ApiError> {
    let known = known_keys();
    for (key, value) in &fields {
        if MANAGED_KEYS.contains(&key.as_str()) {
            return Err(ApiError::invalid(
                key,
                "is set by Loralab from the chosen dataset and run",
            ));
        }
        if !known.contains(key) {
            return Err(ApiError::invalid(key, "unknown field"));
        }
        let mut single = Map::new();
        single.insert(key.clone(), value.clone());
        if let Err(error) = serde_json::from_value::<TrainConfig>(Value::Object(single)) {
            return Err(ApiError::invalid(key, error.to_string()));
        }
    }
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::invalid("body", e.to_string()))
}

pub async fn stop(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    state.supervisor.stop(id)?;
    Ok(Json(detail(&state, id)?))
}

pub async fn resume(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    state.supervisor.resume(id)?;
    Ok(Json(detail(&state, id)?))
}

pub async fn delete(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.supervisor.delete(id)?;
    Ok(StatusCode::NO_CONTENT)
}
