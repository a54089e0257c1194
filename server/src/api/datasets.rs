//! `POST /api/datasets` (a multipart upload), `GET /api/datasets/{id}` and
//! `DELETE /api/datasets/{id}`.
//!
//! The datasets page's upload form posts here too, without JavaScript: a
//! browser asks for HTML, so it is redirected to the new dataset's page (or
//! back to the list with the error) instead of getting JSON.

use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use app::dto::{DatasetDetail, DatasetQuery};

use super::ApiError;
use crate::datasets::{check_dataset_name, DatasetError, Staging};
use crate::state::SharedState;

pub async fn upload(
    State(state): State<SharedState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let wants_page = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    match receive(&state, multipart).await {
        Ok((record, _)) if wants_page => {
            Redirect::to(&format!("/datasets/{}", record.id)).into_response()
        }
        Ok((record, report)) => (
            StatusCode::CREATED,
            Json(json!({ "dataset": record, "report": report })),
        )
            .into_response(),
        Err((error, name)) if wants_page => {
            // The typed name comes back with the reason, so the form keeps it.
            let query = serde_urlencoded::to_string([
                ("error", error.to_string()),
                ("name", name.unwrap_or_default()),
            ])
            .unwrap_or_default();
            Redirect::to(&format!("/datasets?{query}")).into_response()
        }
        Err((error, _)) => ApiError::from(error).into_response(),
    }
}

/// Receives and registers an upload; a refusal comes with the name the
/// form gave (when it came before the refusal), for the page to keep.
async fn receive(
    state: &SharedState,
    mut multipart: Multipart,
) -> Result<
    (crate::store::DatasetRecord, engine::data::DatasetReport),
    (DatasetError, Option<String>),
> {
    let mut name = None;
    let received = receive_files(state, &mut multipart, &mut name).await;
    received.map_err(|error| (error, name))
}

async fn receive_files(
    state: &SharedState,
    multipart: &mut Multipart,
    name: &mut Option<String>,
) -> Result<(crate::store::DatasetRecord, engine::data::DatasetReport), DatasetError> {
    let datasets_dir = state.data_dir.datasets();
    let mut staging = Staging::new(&datasets_dir)?;
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let field_name = field.name().unwrap_or_default().to_string();
        if field_name == "name" {
            *name = Some(field.text().await.map_err(malformed)?);
        } else if let Some(split) = Staging::split_of_field(&field_name) {
            // A form's file input left empty still sends its part, unnamed.
            if field.file_name() == Some("") {
                continue;
            }
            let file_name = field
                .file_name()
                .map_or_else(|| split.file_name().to_string(), str::to_string);
            let path = staging.path_for(split)?;
            let bytes = save_field(field, &path).await?;
            staging.received(split, &path, &file_name, bytes)?;
        } else {
            return Err(DatasetError::Invalid {
                field: "form",
                message: format!(
                    "unknown field {field_name:?}; send name and file, or name with train, valid and test"
                ),
            });
        }
    }
    let name = check_dataset_name(name.as_deref().unwrap_or_default())?;
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || staging.commit(&store, &datasets_dir, &name))
        .await
        .map_err(|error| anyhow::anyhow!("dataset check stopped: {error}"))?
}

/// Streams one file field to disk. The access layer limits the body's
/// size (`--max-upload-mb`); past it, reading fails as too large.
async fn save_field(mut field: Field<'_>, path: &std::path::Path) -> Result<u64, DatasetError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    let mut bytes = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
        bytes += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    }
    file.flush()
        .await
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    Ok(bytes)
}

/// A body that is not a complete multipart form, or one cut at the body
/// limit.
fn malformed(error: MultipartError) -> DatasetError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return DatasetError::TooLarge;
    }
    DatasetError::Invalid {
        field: "form",
        message: format!("the upload could not be read: {}", error.body_text()),
    }
}

pub async fn show(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    Query(query): Query<DatasetQuery>,
) -> Result<Json<DatasetDetail>, ApiError> {
    let detail = tokio::task::spawn_blocking(move || {
        crate::datasets::inspect(
            &state.store,
            &state.inspections,
            &state.tokenizers,
            id,
            query,
            None,
        )
    })
    .await
    .map_err(|error| anyhow::anyhow!("dataset check stopped: {error}"))??;
    detail
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("dataset {id} does not exist")))
}

pub async fn delete(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    crate::datasets::delete_dataset(&state.store, &state.data_dir.datasets(), id)?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<DatasetError> for ApiError {
    fn from(error: DatasetError) -> Self {
        match error {
            DatasetError::Invalid { field, message } => ApiError::invalid(field, message),
            DatasetError::NotFound(_) => ApiError::NotFound(error.to_string()),
            DatasetError::NameTaken(_) | DatasetError::InUse { .. } => {
                ApiError::Conflict(error.to_string())
            }
            DatasetError::TooLarge => ApiError::TooLarge(error.to_string()),
            DatasetError::Internal(error) => ApiError::Internal(error),
        }
    }
}
