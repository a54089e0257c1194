//! Comparisons, blind votes, imported adapters and the inference worker's
//! figures. Outputs stream by SSE.

use std::convert::Infallible;

use app::compare_dto::{AdapterChoice, Ballot, ComparisonSummary, ComparisonView};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::{parse_body, ApiError};
use crate::access::{Client, StreamSlot};
use crate::compare::{self, view, CompareError, CompareRequest};
use crate::inference::InferenceStats;
use crate::state::SharedState;

fn not_found(id: i64) -> ApiError {
    CompareError::comparison_not_found(id).into()
}

pub async fn list(
    State(state): State<SharedState>,
) -> Result<Json<Vec<ComparisonSummary>>, ApiError> {
    Ok(Json(state.store.list_comparisons()?))
}

pub async fn create(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ComparisonView>), ApiError> {
    let request: CompareRequest = parse_body(&body)?;
    let id = compare::create_comparison(&state, &request)?;
    Ok((
        StatusCode::CREATED,
        Json(compare::comparison_view(&state, id)?),
    ))
}

pub async fn show(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<ComparisonView>, ApiError> {
    Ok(Json(compare::comparison_view(&state, id)?))
}

/// `GET /api/compare/{id}/events`: first every output's current state
/// (`output` events), then `text` pieces and `output` updates as they
/// come, and `done` at the end. A finished comparison sends its outputs
/// and `done` at once.
pub async fn events(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    client: Option<Extension<Client>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    let slot = super::events::open_slot(client).map_err(IntoResponse::into_response)?;
    comparison_stream(state, id, slot).map_err(IntoResponse::into_response)
}

fn comparison_stream(
    state: SharedState,
    id: i64,
    slot: Option<StreamSlot>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Subscribe before reading the store: an output stored in between is
    // sent twice, which listeners handle (an `output` event replaces).
    let subscription = state.comparisons.subscribe(id);
    let record = state.store.comparison(id)?.ok_or_else(|| not_found(id))?;
    let mut first: Vec<(&'static str, Value)> = Vec::new();
    for output in &record.outputs {
        let text = subscription.in_progress.get(&output.id);
        let status = match (output.status.as_str(), text) {
            ("pending", Some(_)) => "running",
            (status, _) => compare::output_status(status, output.finish_reason.as_deref()),
        };
        first.push((
            "output",
            json!({
                "output": output.id,
                "column": output.column_index,
                "prompt": output.prompt_index,
                "status": status,
                "text": text.cloned().unwrap_or_else(|| output.text.clone()),
                "error": output.error,
                "generated_tokens": output.generated_tokens,
                "finish_reason": output.finish_reason,
                "tokens_per_sec": output.generation_tokens_per_sec,
            }),
        ));
    }
    let finished = !subscription.running;
    if finished {
        first.push((
            "done",
            json!({ "status": record.status, "failure": record.failure }),
        ));
    }
    let shutdown = state.supervisor.shutdown_signal();
    let cursor = Cursor {
        _slot: slot,
        state: state.clone(),
        id,
        first: first.into(),
        events: subscription.events,
        shutdown,
        ended: finished,
    };
    let stream = stream::unfold(cursor, |mut cursor| async move {
        let (kind, data) = cursor.next().await?;
        let sse = SseEvent::default().event(kind).data(data.to_string());
        Some((Ok(sse), cursor))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Cursor {
    /// Counts against the client's cap on open streams until dropped.
    _slot: Option<StreamSlot>,
    state: SharedState,
    id: i64,
    first: std::collections::VecDeque<(&'static str, Value)>,
    events: tokio::sync::broadcast::Receiver<std::sync::Arc<compare::HubEvent>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    ended: bool,
}

impl Cursor {
    async fn next(&mut self) -> Option<(&'static str, Value)> {
        if let Some(item) = self.first.pop_front() {
            return Some(item);
        }
        if self.ended || *self.shutdown.borrow() {
            return None;
        }
        loop {
            tokio::select! {
                received = self.events.recv() => match received {
                    Ok(event) if event.comparison == self.id => {
                        if event.kind == "done" {
                            self.ended = true;
                        }
                        return Some((event.kind, event.data.clone()));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        // Missed pieces: resend the whole text of what is in progress.
                        for (output, text) in self.state.comparisons.in_progress(self.id) {
                            self.first.push_back((
                                "output",
                                json!({ "output": output, "status": "running", "text": text }),
                            ));
                        }
                        if let Some(item) = self.first.pop_front() {
                            return Some(item);
                        }
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.shutdown.changed() => return None,
            }
        }
    }
}

/// `POST /api/compare/{id}/cancel`: stops a comparison being generated
/// (the output in progress keeps its text); `{"cancelled": false}` when it
/// was not running.
pub async fn cancel(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    state.store.comparison(id)?.ok_or_else(|| not_found(id))?;
    let cancelled = compare::cancel(&state, id);
    if cancelled {
        state.comparisons.wait(id).await;
    }
    Ok(Json(json!({ "cancelled": cancelled })))
}

#[derive(Debug, Deserialize)]
pub struct BallotQuery {
    #[serde(default)]
    prompt: usize,
}

pub async fn ballot(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    Query(query): Query<BallotQuery>,
) -> Result<Json<Ballot>, ApiError> {
    let record = state.store.comparison(id)?.ok_or_else(|| not_found(id))?;
    let ballot = view::ballot(&record, query.prompt, compare::shuffle_seed()).ok_or_else(|| {
        ApiError::NotFound(format!("comparison {id} has no prompt {}", query.prompt))
    })?;
    Ok(Json(ballot))
}

pub async fn vote(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<(StatusCode, Json<ComparisonView>), ApiError> {
    let request: compare::VoteRequest = parse_body(&body)?;
    compare::cast_vote(&state, id, &request)?;
    Ok((
        StatusCode::CREATED,
        Json(compare::comparison_view(&state, id)?),
    ))
}

pub async fn list_adapters(
    State(state): State<SharedState>,
) -> Result<Json<Vec<AdapterChoice>>, ApiError> {
    Ok(Json(compare::adapter_choices(&state)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub model: Option<String>,
}

pub async fn import_adapter(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: ImportRequest = parse_body(&body)?;
    let id = compare::import_adapter(
        &state,
        &request.name,
        &request.path,
        request.model.as_deref(),
    )?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "reference": format!("adapter:{id}") })),
    ))
}

pub async fn inference_stats(State(state): State<SharedState>) -> Json<InferenceStats> {
    Json(state.inference.stats())
}
