//! Comparisons, blind votes, imported adapters, chats and the inference
//! worker's figures. Outputs stream by SSE.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use app::compare_dto::{
    AdapterChoice, Ballot, ChatSettingsForm, ChatView, ComparisonSummary, ComparisonView,
};
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
use tokio::sync::mpsc;

use super::ApiError;
use crate::access::{Client, StreamSlot};
use crate::chat::ReplySettings;
use crate::compare::{self, view, CompareRequest};
use crate::inference::InferenceStats;
use crate::state::{AppState, SharedState};

pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        ApiError::invalid(field, error.into_inner().to_string())
    })
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("comparison {id} does not exist"))
}

pub async fn list(
    State(state): State<SharedState>,
) -> Result<Json<Vec<ComparisonSummary>>, ApiError> {
    Ok(Json(state.store.list_comparisons()?))
}

/// Checks, saves and starts a comparison; returns its id.
pub fn create_comparison(state: &AppState, request: &CompareRequest) -> Result<i64, ApiError> {
    let new = compare::request::resolve(state, request)?;
    let id = state.store.insert_comparison(&new)?;
    compare::start(state, id);
    Ok(id)
}

pub async fn create(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ComparisonView>), ApiError> {
    let request: CompareRequest = parse_body(&body)?;
    let id = create_comparison(&state, &request)?;
    Ok((StatusCode::CREATED, Json(comparison_view(&state, id)?)))
}

pub fn comparison_view(state: &AppState, id: i64) -> Result<ComparisonView, ApiError> {
    let record = state.store.comparison(id)?.ok_or_else(|| not_found(id))?;
    Ok(view::comparison_view(&record))
}

pub async fn show(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<ComparisonView>, ApiError> {
    Ok(Json(comparison_view(&state, id)?))
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

/// `POST /api/chat/{id}/cancel`: stops the reply being generated; the
/// stored reply keeps what came before. `{"cancelled": false}` when none was.
pub async fn cancel_chat(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    state
        .store
        .chat(id)?
        .ok_or_else(|| ApiError::NotFound(format!("chat {id} does not exist")))?;
    Ok(Json(
        json!({ "cancelled": crate::chat::cancel(&state, id) }),
    ))
}

#[derive(Debug, Deserialize)]
pub struct BallotQuery {
    #[serde(default)]
    prompt: usize,
}

/// A seed for a ballot's order: a new order at every look, so position
/// tells nothing either.
pub fn shuffle_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub async fn ballot(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    Query(query): Query<BallotQuery>,
) -> Result<Json<Ballot>, ApiError> {
    let record = state.store.comparison(id)?.ok_or_else(|| not_found(id))?;
    let ballot = view::ballot(&record, query.prompt, shuffle_seed()).ok_or_else(|| {
        ApiError::NotFound(format!("comparison {id} has no prompt {}", query.prompt))
    })?;
    Ok(Json(ballot))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    pub prompt: usize,
    pub output: i64,
}

pub fn cast_vote(state: &AppState, id: i64, vote: &VoteRequest) -> Result<(), ApiError> {
    state.store.comparison(id)?.ok_or_else(|| not_found(id))?;
    if !state.store.insert_vote(id, vote.prompt, vote.output)? {
        return Err(ApiError::invalid(
            "output",
            format!(
                "output {} is not an output of prompt {} of comparison {id}",
                vote.output, vote.prompt
            ),
        ));
    }
    Ok(())
}

pub async fn vote(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<(StatusCode, Json<ComparisonView>), ApiError> {
    let request: VoteRequest = parse_body(&body)?;
    cast_vote(&state, id, &request)?;
    Ok((StatusCode::CREATED, Json(comparison_view(&state, id)?)))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChatRequest {
    pub model: String,
    pub adapter: String,
    #[serde(default)]
    pub system: Option<String>,
    /// 0 is greedy; default 0.7.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Default 256.
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

pub async fn create_chat(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ChatView>), ApiError> {
    let request: NewChatRequest = parse_body(&body)?;
    let defaults = ReplySettings::default();
    let settings = ReplySettings {
        temperature: request.temperature.unwrap_or(defaults.temperature),
        max_tokens: request.max_tokens.unwrap_or(defaults.max_tokens),
    };
    let id = crate::chat::create_chat(
        &state,
        &request.model,
        &request.adapter,
        request.system.as_deref(),
        settings,
    )?;
    let chat = crate::chat::chat_view(&state, id)?
        .ok_or_else(|| ApiError::NotFound(format!("chat {id} does not exist")))?;
    Ok((StatusCode::CREATED, Json(chat)))
}

pub async fn show_chat(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<ChatView>, ApiError> {
    crate::chat::chat_view(&state, id)?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("chat {id} does not exist")))
}

/// `PATCH /api/chat/{id}`: what is given changes for the next replies;
/// `"system": ""` removes the system message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettingsRequest {
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

pub async fn update_chat(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<ChatView>, ApiError> {
    let request: ChatSettingsRequest = parse_body(&body)?;
    let chat = crate::chat::chat_view(&state, id)?
        .ok_or_else(|| ApiError::NotFound(format!("chat {id} does not exist")))?;
    let form = ChatSettingsForm {
        system: request.system.or(chat.system),
        temperature: request.temperature.map(|t| t.to_string()),
        max_tokens: request.max_tokens.map(|n| n.to_string()),
    };
    crate::chat::update_settings(&state, id, &form)?;
    crate::chat::chat_view(&state, id)?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("chat {id} does not exist")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageRequest {
    pub content: String,
}

/// `POST /api/chat/{id}/messages`: the reply as SSE, `text` pieces then
/// `done` (the whole reply and its speed) or `error`.
pub async fn send_chat_message(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    client: Option<Extension<Client>>,
    body: Bytes,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    let slot = super::events::open_slot(client).map_err(IntoResponse::into_response)?;
    chat_reply_stream(state, id, slot, &body).map_err(IntoResponse::into_response)
}

fn chat_reply_stream(
    state: SharedState,
    id: i64,
    slot: Option<StreamSlot>,
    body: &[u8],
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let request: ChatMessageRequest = parse_body(body)?;
    state
        .store
        .chat(id)?
        .ok_or_else(|| ApiError::NotFound(format!("chat {id} does not exist")))?;
    let (sender, receiver) = mpsc::unbounded_channel::<(&'static str, Value)>();
    tokio::spawn(async move {
        let pieces = sender.clone();
        let inference = state.inference.clone();
        let mut on_text = move |piece: &str| {
            // The reader is gone (the page closed, the fetch aborted): stop
            // generating for nobody; what came so far is stored.
            if pieces.send(("text", json!({ "text": piece }))).is_err() {
                inference.cancel(&crate::chat::cancel_key(id));
            }
        };
        let outcome = crate::chat::send_message(&state, id, &request.content, &mut on_text).await;
        let last = match outcome {
            Ok(finished) => (
                "done",
                json!({
                    "text": finished.text,
                    "generated_tokens": finished.generated_tokens,
                    "tokens_per_sec": finished.generation_tokens_per_sec,
                    "finish_reason": finished.finish_reason,
                }),
            ),
            Err(error) => ("error", json!({ "error": error.to_string() })),
        };
        let _ = sender.send(last);
    });
    let stream = stream::unfold((receiver, slot), |(mut receiver, slot)| async move {
        let (kind, data) = receiver.recv().await?;
        Some((
            Ok(SseEvent::default().event(kind).data(data.to_string())),
            (receiver, slot),
        ))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
