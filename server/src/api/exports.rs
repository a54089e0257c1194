//! Exports: `POST /api/runs/{id}/exports` starts one, `GET /api/exports[/{id}]`
//! lists them, `.../events` follows one over SSE, `.../cancel` stops it,
//! `.../download?as=zip|tar` streams its folder, `DELETE` forgets it.
//! The run page's export form posts here too (form-encoded); a browser is
//! redirected to the export's page.

use std::convert::Infallible;

use app::dto::ExportView;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::watch;

use super::ApiError;
use crate::access::Client;
use crate::archive::{stream_folder, ArchiveKind};
use crate::exports::{ExportError, NewExport};
use crate::state::SharedState;

impl From<ExportError> for ApiError {
    fn from(error: ExportError) -> Self {
        match error {
            ExportError::RunNotFound(id) => ApiError::run_not_found(id),
            not_found @ ExportError::NotFound(_) => ApiError::NotFound(not_found.to_string()),
            ExportError::Invalid { field, message } => ApiError::invalid(field, message),
            ExportError::Conflict(message) => ApiError::Conflict(message),
            ExportError::Store(error) => error.into(),
            ExportError::Internal(message) => ApiError::Internal(anyhow::anyhow!(message)),
        }
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The body as JSON, or as a form (`application/x-www-form-urlencoded`:
/// the run page's form without JavaScript, where empty fields mean default).
fn parse_new_export(headers: &HeaderMap, body: &Bytes) -> Result<NewExport, ApiError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        #[derive(Deserialize)]
        struct Form {
            format: String,
            #[serde(default)]
            dtype: Option<String>,
            #[serde(default)]
            bits: Option<String>,
            #[serde(default)]
            quant: Option<String>,
            #[serde(default)]
            step: Option<String>,
        }
        let form: Form = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::invalid("body", e.to_string()))?;
        let number = |field: &str, text: Option<String>| -> Result<Option<i64>, ApiError> {
            match text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) => t
                    .parse()
                    .map(Some)
                    .map_err(|_| ApiError::invalid(field, format!("`{t}` is not a number"))),
            }
        };
        return Ok(NewExport {
            format: form.format,
            dtype: form.dtype,
            bits: number("bits", form.bits)?
                .map(|b| u8::try_from(b).map_err(|_| ApiError::invalid("bits", "must be 4 or 8")))
                .transpose()?,
            quant: form.quant,
            step: number("step", form.step)?,
        });
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid("body", e.to_string()))
}

pub async fn create(
    State(state): State<SharedState>,
    Path(run_id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let html = wants_html(&headers);
    let outcome = parse_new_export(&headers, &body)
        .and_then(|new| state.exports.create(run_id, &new).map_err(ApiError::from));
    match (outcome, html) {
        (Ok(view), false) => Ok((StatusCode::ACCEPTED, Json(view)).into_response()),
        (Ok(view), true) => Ok(Redirect::to(&format!("/exports/{}", view.id)).into_response()),
        (Err(error), true) => {
            let query = serde_urlencoded::to_string([("export_error", error.to_string())])
                .unwrap_or_default();
            Err(Redirect::to(&format!("/runs/{run_id}?{query}#export")).into_response())
        }
        (Err(error), false) => Err(error.into_response()),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    run: Option<i64>,
}

pub async fn list(
    State(state): State<SharedState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ExportView>>, ApiError> {
    Ok(Json(state.exports.list(query.run)?))
}

pub async fn show(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<ExportView>, ApiError> {
    Ok(Json(state.exports.view(id)?))
}

pub async fn cancel(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.exports.view(id)?;
    let cancelled = state.exports.cancel(id);
    if wants_html(&headers) {
        return Ok(Redirect::to(&format!("/exports/{id}")).into_response());
    }
    Ok(Json(serde_json::json!({ "cancelled": cancelled })).into_response())
}

pub async fn delete(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.exports.delete(id)?;
    if wants_html(&headers) {
        return Ok(Redirect::to("/exports").into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    #[serde(rename = "as")]
    kind: Option<String>,
}

pub async fn download(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    Query(query): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    let kind_text = query.kind.as_deref().unwrap_or("zip");
    let kind = ArchiveKind::parse(kind_text)
        .ok_or_else(|| ApiError::invalid("as", format!("`{kind_text}`: choose zip or tar")))?;
    let view = state.exports.view(id)?;
    if view.status != "done" {
        return Err(ApiError::Conflict(format!(
            "export {id} is {}; only a finished export can be downloaded",
            view.status
        )));
    }
    let folder = state.exports.folder(id);
    if !folder.is_dir() {
        return Err(ApiError::NotFound(format!(
            "export {id}'s folder {} is gone",
            folder.display()
        )));
    }
    let name = format!("loralab-export-{id}-{}", view.format);
    Ok((
        [
            (header::CONTENT_TYPE, kind.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{}\"", kind.extension()),
            ),
        ],
        stream_folder(folder, name, kind),
    )
        .into_response())
}

/// SSE: `progress` (the export's whole view, at most every 200 ms), then
/// one `done`, `failed` or `cancelled` with the same data; then the stream ends.
pub async fn events(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    client: Option<Extension<Client>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    let view = state
        .exports
        .view(id)
        .map_err(|e| ApiError::from(e).into_response())?;
    let slot = super::events::open_slot(client).map_err(IntoResponse::into_response)?;
    let cursor = Cursor {
        _slot: slot,
        updates: state.exports.subscribe(id),
        ended_view: Some(view),
        shutdown: state.supervisor.shutdown_signal(),
        first: true,
        done: false,
    };
    let stream = stream::unfold(cursor, |mut cursor| async move {
        let view = cursor.next().await?;
        let kind = match view.status.as_str() {
            "queued" | "running" => "progress",
            other => other,
        };
        let data = serde_json::to_string(&view).unwrap_or_default();
        Some((Ok(SseEvent::default().event(kind).data(data)), cursor))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Cursor {
    _slot: Option<crate::access::StreamSlot>,
    /// None when the export had ended before the stream opened.
    updates: Option<watch::Receiver<ExportView>>,
    /// The view read when the stream opened, and the last one sent.
    ended_view: Option<ExportView>,
    shutdown: watch::Receiver<bool>,
    first: bool,
    done: bool,
}

impl Cursor {
    async fn next(&mut self) -> Option<ExportView> {
        if self.done || *self.shutdown.borrow() {
            return None;
        }
        let Some(updates) = self.updates.as_mut() else {
            self.done = true;
            return self.ended_view.take();
        };
        if !self.first {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        // The export ended and its live view is gone: the
                        // last value seen is its final state.
                        self.done = true;
                        return Some(updates.borrow().clone());
                    }
                }
                _ = self.shutdown.changed() => return None,
            }
        }
        self.first = false;
        let view = updates.borrow_and_update().clone();
        self.done = !matches!(view.status.as_str(), "queued" | "running");
        Some(view)
    }
}
