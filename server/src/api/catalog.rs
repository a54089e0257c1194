//! `GET /api/models`, `POST /api/models` (import a local GGUF file or
//! model folder), `DELETE /api/models/{id}`, `GET /api/datasets`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::ApiError;
use crate::state::SharedState;
use crate::store::{DatasetRecord, ModelRecord};

pub async fn list_models(
    State(state): State<SharedState>,
) -> Result<Json<Vec<ModelRecord>>, ApiError> {
    Ok(Json(state.store.list_models()?))
}

pub async fn list_datasets(
    State(state): State<SharedState>,
) -> Result<Json<Vec<DatasetRecord>>, ApiError> {
    Ok(Json(state.store.list_datasets()?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportModel {
    name: Option<String>,
    path: String,
}

pub async fn import_model(
    State(state): State<SharedState>,
    Json(request): Json<ImportModel>,
) -> Result<(StatusCode, Json<ModelRecord>), ApiError> {
    let model = tokio::task::spawn_blocking(move || {
        crate::models::import(&state.store, request.name.as_deref(), &request.path)
    })
    .await
    .map_err(|error| anyhow::anyhow!("model import stopped: {error}"))??;
    Ok((StatusCode::CREATED, Json(model)))
}

pub async fn delete_model(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    crate::models::delete(&state.store, id)?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<crate::models::ModelError> for ApiError {
    fn from(error: crate::models::ModelError) -> Self {
        use crate::models::ModelError;
        match error {
            ModelError::Invalid { field, message } => ApiError::invalid(field, message),
            ModelError::NotFound(_) => ApiError::NotFound(error.to_string()),
            ModelError::NameTaken(_) | ModelError::InUse(_) => {
                ApiError::Conflict(error.to_string())
            }
            ModelError::Internal(error) => ApiError::Internal(error),
        }
    }
}
