//! `GET /api/models`, `GET /api/datasets`.

use axum::extract::State;
use axum::Json;

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
