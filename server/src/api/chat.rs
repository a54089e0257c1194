//! Chats: create, show, change settings, send a message (the reply as
//! SSE), cancel a reply.

use std::convert::Infallible;

use app::compare_dto::{ChatSettingsForm, ChatView};
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{parse_body, ApiError};
use crate::access::{Client, StreamSlot};
use crate::chat::{ChatError, ReplySettings};
use crate::state::{AppState, SharedState};

/// Chat `id`, or a 404.
fn chat_view(state: &AppState, id: i64) -> Result<ChatView, ApiError> {
    Ok(crate::chat::chat_view(state, id)?.ok_or(ChatError::NotFound(id))?)
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
    Ok((StatusCode::CREATED, Json(chat_view(&state, id)?)))
}

pub async fn show_chat(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<ChatView>, ApiError> {
    Ok(Json(chat_view(&state, id)?))
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
    let chat = chat_view(&state, id)?;
    let form = ChatSettingsForm {
        system: request.system.or(chat.system),
        temperature: request.temperature.map(|t| t.to_string()),
        max_tokens: request.max_tokens.map(|n| n.to_string()),
    };
    crate::chat::update_settings(&state, id, &form)?;
    Ok(Json(chat_view(&state, id)?))
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
    state.store.chat(id)?.ok_or(ChatError::NotFound(id))?;
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

/// `POST /api/chat/{id}/cancel`: stops the reply being generated; the
/// stored reply keeps what came before. `{"cancelled": false}` when none was.
pub async fn cancel_chat(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    state.store.chat(id)?.ok_or(ChatError::NotFound(id))?;
    Ok(Json(
        json!({ "cancelled": crate::chat::cancel(&state, id) }),
    ))
}
