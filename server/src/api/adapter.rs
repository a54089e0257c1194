//! `GET /api/runs/{id}/adapter.zip[?step=N]`: a run's adapter as mlx-lm
//! lays it out (`adapters.safetensors` + `adapter_config.json`), ready for
//! `mlx_lm.generate --adapter-path`. Without a step: the checkpoint with the
//! best validation loss, else the latest weights. Where the run's base came
//! from the Hub, the config's `model` names the Hub repo instead of this
//! machine's path, so the zip works on another machine.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use engine::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use serde::Deserialize;
use zip::write::SimpleFileOptions;

use super::ApiError;
use crate::state::SharedState;

#[derive(Debug, Deserialize)]
pub struct AdapterQuery {
    step: Option<i64>,
}

pub async fn download(
    State(state): State<SharedState>,
    UrlPath(id): UrlPath<i64>,
    Query(query): Query<AdapterQuery>,
) -> Result<Response, ApiError> {
    let run = state
        .store
        .run(id)?
        .ok_or_else(|| ApiError::run_not_found(id))?;
    let hub_repo = match &run.model {
        Some(name) => state
            .store
            .model_by_name(name)?
            .filter(|model| model.source == "hub")
            .map(|model| crate::exports::hub_repo_of(&model.name)),
        None => None,
    };
    let run_dir = state.supervisor.run_dir(id);
    let (step, weights) = choose_weights(&state, id, &run_dir, query.step)?;
    let folder = match step {
        Some(step) => format!("run-{id}-step-{step}"),
        None => format!("run-{id}"),
    };
    let config = run_dir.join(ADAPTER_CONFIG_FILE);
    let archive = tokio::task::spawn_blocking({
        let folder = folder.clone();
        move || zip_adapter(&folder, &weights, &config, hub_repo.as_deref())
    })
    .await
    .map_err(|error| anyhow::anyhow!("packing the adapter stopped: {error}"))??;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"loralab-{folder}.zip\""),
            ),
        ],
        archive,
    )
        .into_response())
}

/// The weights file to ship and the step it holds, if known.
fn choose_weights(
    state: &SharedState,
    id: i64,
    run_dir: &Path,
    step: Option<i64>,
) -> Result<(Option<i64>, PathBuf), ApiError> {
    let checkpoints = state.store.checkpoints(id)?;
    if let Some(step) = step {
        let checkpoint = checkpoints
            .into_iter()
            .find(|checkpoint| checkpoint.step == step)
            .ok_or_else(|| {
                ApiError::NotFound(format!("run {id} has no checkpoint at step {step}"))
            })?;
        return Ok((Some(step), PathBuf::from(checkpoint.path)));
    }
    if let Some(best) = crate::store::best_checkpoint(&checkpoints) {
        return Ok((Some(best.step), PathBuf::from(&best.path)));
    }
    let latest = run_dir.join(ADAPTER_WEIGHTS_FILE);
    if latest.is_file() {
        return Ok((None, latest));
    }
    Err(ApiError::NotFound(format!(
        "run {id} has no adapter yet: it is written at the first checkpoint"
    )))
}

/// A zip of one folder with the two files, stored uncompressed: safetensors
/// of floats barely compress.
fn zip_adapter(
    folder: &str,
    weights: &Path,
    config: &Path,
    hub_repo: Option<&str>,
) -> Result<Vec<u8>, ApiError> {
    let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let config_bytes = match hub_repo {
        Some(repo) => with_model(&read(config)?, repo)?,
        None => read(config)?,
    };
    for (name, bytes) in [
        (ADAPTER_WEIGHTS_FILE, read(weights)?),
        (ADAPTER_CONFIG_FILE, config_bytes),
    ] {
        archive
            .start_file(format!("{folder}/{name}"), options)
            .context("cannot pack the adapter")?;
        archive
            .write_all(&bytes)
            .context("cannot pack the adapter")?;
    }
    let archive = archive.finish().context("cannot pack the adapter")?;
    Ok(archive.into_inner())
}

/// The adapter config with `model` set to a Hub repo id, which mlx-lm
/// resolves on any machine (the run's own copy keeps the local path).
fn with_model(config: &[u8], repo: &str) -> Result<Vec<u8>, ApiError> {
    let mut config: serde_json::Value =
        serde_json::from_slice(config).context("the run's adapter_config.json is not JSON")?;
    let object = config
        .as_object_mut()
        .context("the run's adapter_config.json is not a JSON object")?;
    object.insert("model".into(), serde_json::Value::String(repo.into()));
    Ok(serde_json::to_vec_pretty(&config).context("cannot write adapter_config.json")?)
}
