//! `GET /api/models`, `POST /api/models` (import a local GGUF file or
//! model folder), `DELETE /api/models/{id}`, `GET /api/datasets`, and pulls
//! from the Hugging Face Hub (`POST /api/models/pull`,
//! `GET /api/models/pulls[/{id}[/events]]`).

use std::convert::Infallible;

use app::dto::PullView;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::watch;

use super::ApiError;
use crate::access::Client;
use crate::hub::pulls;
use crate::state::SharedState;
use crate::store::{DatasetRecord, ModelSummary};

pub async fn list_models(
    State(state): State<SharedState>,
) -> Result<Json<Vec<ModelSummary>>, ApiError> {
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
) -> Result<(StatusCode, Json<ModelSummary>), ApiError> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    repo: String,
    revision: Option<String>,
}

/// Pulls are the owner's business (they write to the disk and reveal what
/// is being fetched): viewers and operators neither start nor watch them.
/// Posts are refused by the access layer already; reads are refused here.
fn owner_only(client: &Option<Extension<Client>>) -> Result<(), ApiError> {
    match client {
        Some(Extension(client)) if !client.role.can_manage() => Err(ApiError::Forbidden(format!(
            "{}s cannot see model pulls; the owner's link grants that",
            client.role.label()
        ))),
        _ => Ok(()),
    }
}

/// `POST /api/models/pull`: 202 with the pull (a running pull of the same
/// model is joined, not repeated).
pub async fn start_pull(
    State(state): State<SharedState>,
    Json(request): Json<PullRequest>,
) -> Result<(StatusCode, Json<PullView>), ApiError> {
    let spec = pulls::parse_request(&request.repo, request.revision.as_deref())?;
    let (pull, _joined) = state.pulls.start(state.store.clone(), spec)?;
    Ok((StatusCode::ACCEPTED, Json(pull.view())))
}

/// `POST /api/models/pulls/{id}/retry`: the failed pull's model pulled
/// again, as a new pull in its place.
pub async fn retry_pull(
    State(state): State<SharedState>,
    Path(id): Path<u64>,
) -> Result<(StatusCode, Json<PullView>), ApiError> {
    let (pull, _joined) = state.pulls.retry(state.store.clone(), id)?;
    Ok((StatusCode::ACCEPTED, Json(pull.view())))
}

/// `DELETE /api/models/pulls/{id}`: a failed pull leaves the list.
pub async fn dismiss_pull(
    State(state): State<SharedState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.pulls.dismiss(&state.store, id)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_pulls(
    State(state): State<SharedState>,
    client: Option<Extension<Client>>,
) -> Result<Json<Vec<PullView>>, ApiError> {
    owner_only(&client)?;
    Ok(Json(state.pulls.list()))
}

pub async fn show_pull(
    State(state): State<SharedState>,
    Path(id): Path<u64>,
    client: Option<Extension<Client>>,
) -> Result<Json<PullView>, ApiError> {
    owner_only(&client)?;
    let pull = state.pulls.get(id).ok_or_else(|| pull_not_found(id))?;
    Ok(Json(pull.view()))
}

fn pull_not_found(id: u64) -> ApiError {
    pulls::PullError::NotFound(id).into()
}

/// `GET /api/models/pulls/{id}/events`: `progress` events with the pull's
/// whole state (at most every 200 ms), then one `done` or `failed`, then
/// the stream ends.
pub async fn pull_events(
    State(state): State<SharedState>,
    Path(id): Path<u64>,
    client: Option<Extension<Client>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    owner_only(&client).map_err(IntoResponse::into_response)?;
    let pull = state
        .pulls
        .get(id)
        .ok_or_else(|| pull_not_found(id).into_response())?;
    let slot = super::events::open_slot(client).map_err(IntoResponse::into_response)?;
    let shutdown = state.supervisor.shutdown_signal();
    let cursor = PullCursor {
        _slot: slot,
        updates: pull.subscribe(),
        shutdown,
        first: true,
        ended: false,
    };
    let stream = stream::unfold(cursor, |mut cursor| async move {
        let view = cursor.next().await?;
        let kind = match view.status.as_str() {
            "running" => "progress",
            other => other,
        };
        let data = serde_json::to_string(&view).unwrap_or_default();
        Some((Ok(SseEvent::default().event(kind).data(data)), cursor))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct PullCursor {
    _slot: Option<crate::access::StreamSlot>,
    updates: watch::Receiver<PullView>,
    shutdown: watch::Receiver<bool>,
    first: bool,
    ended: bool,
}

impl PullCursor {
    /// The state now, then each change (coalesced: a watch keeps only the
    /// latest), until the pull ends or the server shuts down.
    async fn next(&mut self) -> Option<PullView> {
        if self.ended || *self.shutdown.borrow() {
            return None;
        }
        if !self.first {
            // A local download changes thousands of times a second; a
            // progress bar needs a few updates.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            tokio::select! {
                changed = self.updates.changed() => changed.ok()?,
                _ = self.shutdown.changed() => return None,
            }
        }
        self.first = false;
        let view = self.updates.borrow_and_update().clone();
        self.ended = view.status != "running";
        Some(view)
    }
}

impl From<pulls::PullError> for ApiError {
    fn from(error: pulls::PullError) -> Self {
        match error {
            pulls::PullError::Invalid { field, message } => ApiError::invalid(field, message),
            busy @ pulls::PullError::Busy { .. } => ApiError::Conflict(busy.to_string()),
            missing @ pulls::PullError::NotFound(_) => ApiError::NotFound(missing.to_string()),
            not_failed @ pulls::PullError::NotFailed { .. } => {
                ApiError::Conflict(not_failed.to_string())
            }
            pulls::PullError::Store(error) => ApiError::Internal(error.into()),
        }
    }
}
