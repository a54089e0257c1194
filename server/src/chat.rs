//! Chats: a conversation with one base model and adapter, kept in the
//! store and rendered with the model's chat template for every reply. A
//! reply in progress can be cancelled ([`cancel`]): it ends between two
//! tokens and is stored with what it had, marked cancelled.

use app::compare_dto::{ChatMessageView, ChatSettingsForm, ChatView, GenerationSettings};
use engine::protocol::{InferencePrompt, PromptMessage};

use crate::compare::request::check_settings;
use crate::compare::{resolve_adapter, CompareError};
use crate::inference::{Finished, InferenceError};
use crate::state::AppState;
use crate::store::{ChatRecord, NewChat, StoreError};

/// Why a chat or a reply was refused or failed; `api::error` turns these
/// into HTTP answers.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A request field with a bad value.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("chat {0} does not exist")]
    NotFound(i64),
    /// The inference worker cannot take the reply now (trainings hold
    /// every slot).
    #[error("{0}")]
    Busy(String),
    /// The inference worker failed on the reply: its reason, which pages
    /// show and the API logs.
    #[error("{0}")]
    Generation(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ChatError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

/// A chat's model, adapter and sampling are checked as a comparison's are.
impl From<CompareError> for ChatError {
    fn from(error: CompareError) -> Self {
        match error {
            CompareError::Invalid { field, message } => Self::Invalid { field, message },
            // Only a missing adapter or model is "not found" here: a bad field.
            CompareError::NotFound(message) => Self::invalid("adapter", message),
            CompareError::Internal(error) => Self::Internal(error),
        }
    }
}

/// Longest message a user may send.
const MAX_MESSAGE_CHARS: usize = 20_000;

/// How a chat generates its replies; kept with the chat and changeable
/// between replies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplySettings {
    /// 0 is greedy.
    pub temperature: f32,
    pub max_tokens: usize,
}

impl Default for ReplySettings {
    /// Replies are sampled lightly: a chat that always answers the same way
    /// to the same words feels broken, and the seed still makes them
    /// repeatable. The store's column defaults are the same.
    fn default() -> Self {
        Self {
            temperature: 0.7,
            max_tokens: 256,
        }
    }
}

impl ReplySettings {
    /// These settings with the form's non-empty fields applied, checked.
    pub fn with_typed(
        self,
        temperature: Option<&str>,
        max_tokens: Option<&str>,
    ) -> Result<Self, ChatError> {
        let mut settings = self;
        if let Some(text) = typed(temperature) {
            settings.temperature = text.parse().map_err(|_| {
                ChatError::invalid("temperature", format!("{text:?} is not a number"))
            })?;
        }
        if let Some(text) = typed(max_tokens) {
            settings.max_tokens = text.parse().map_err(|_| {
                ChatError::invalid("max_tokens", format!("{text:?} is not a whole number"))
            })?;
        }
        settings.checked()
    }

    pub fn checked(self) -> Result<Self, ChatError> {
        check_settings(&self.sampling())?;
        Ok(self)
    }

    fn sampling(self) -> GenerationSettings {
        GenerationSettings {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: 0.95,
            ..GenerationSettings::default()
        }
    }
}

/// An optional field as typed: blank is none.
fn typed(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|text| !text.is_empty())
}

pub fn create_chat(
    state: &AppState,
    model: &str,
    adapter: &str,
    system: Option<&str>,
    settings: ReplySettings,
) -> Result<i64, ChatError> {
    let settings = settings.checked()?;
    let model = state
        .store
        .model_by_name(model.trim())?
        .ok_or_else(|| ChatError::invalid("model", format!("no model named {model:?}")))?;
    let resolved = resolve_adapter(state, adapter, &model.name, "adapter")?;
    Ok(state.store.insert_chat(&NewChat {
        model_name: model.name,
        model_location: model.location,
        adapter_ref: resolved.reference,
        adapter_label: resolved.label,
        adapter_path: resolved.path,
        system_prompt: typed(system).map(str::to_string),
        temperature: settings.temperature,
        max_tokens: settings.max_tokens,
    })?)
}

/// Changes chat `id`'s system message and settings for its next replies:
/// the form's empty number fields keep theirs.
pub fn update_settings(
    state: &AppState,
    id: i64,
    form: &ChatSettingsForm,
) -> Result<(), ChatError> {
    let chat = state.store.chat(id)?.ok_or(ChatError::NotFound(id))?;
    let settings = reply_settings(&chat)
        .with_typed(form.temperature.as_deref(), form.max_tokens.as_deref())?;
    state.store.set_chat_settings(
        id,
        typed(form.system.as_deref()),
        settings.temperature,
        settings.max_tokens,
    )?;
    Ok(())
}

fn reply_settings(chat: &ChatRecord) -> ReplySettings {
    ReplySettings {
        temperature: chat.temperature,
        max_tokens: chat.max_tokens,
    }
}

pub(crate) fn cancel_key(id: i64) -> String {
    format!("chat:{id}")
}

/// Stops the reply chat `id` is generating; false when there is none.
pub fn cancel(state: &AppState, id: i64) -> bool {
    state.inference.cancel(&cancel_key(id))
}

fn messages(chat: &ChatRecord) -> Vec<ChatMessageView> {
    serde_json::from_str(&chat.messages_json).unwrap_or_default()
}

/// Chats listed on `/chat` to reopen.
const RECENT_CHATS: usize = 50;

/// The newest chats, newest first.
pub fn recent_chats(state: &AppState) -> Result<Vec<ChatView>, ChatError> {
    let mut chats = Vec::new();
    for id in state.store.recent_chat_ids(RECENT_CHATS)? {
        chats.extend(chat_view(state, id)?);
    }
    Ok(chats)
}

pub fn chat_view(state: &AppState, id: i64) -> Result<Option<ChatView>, ChatError> {
    Ok(state.store.chat(id)?.map(|chat| ChatView {
        id: chat.id,
        messages: messages(&chat),
        model: chat.model_name,
        adapter: chat.adapter_label,
        system: chat.system_prompt,
        temperature: chat.temperature,
        max_tokens: chat.max_tokens,
    }))
}

/// Sends the user's message and generates the reply, calling `on_text`
/// as it comes; both are stored once the reply is complete.
pub async fn send_message(
    state: &AppState,
    id: i64,
    content: &str,
    on_text: &mut (dyn FnMut(&str) + Send),
) -> Result<Finished, ChatError> {
    let chat = state.store.chat(id)?.ok_or(ChatError::NotFound(id))?;
    let content = content.trim();
    if content.is_empty() {
        return Err(ChatError::invalid("content", "the message is empty"));
    }
    if content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ChatError::invalid(
            "content",
            format!("at most {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    let mut history = messages(&chat);
    history.push(ChatMessageView {
        role: "user".into(),
        content: content.to_string(),
        cancelled: false,
    });
    let mut prompt: Vec<PromptMessage> = Vec::new();
    if let Some(system) = &chat.system_prompt {
        prompt.push(PromptMessage {
            role: "system".into(),
            content: system.clone(),
        });
    }
    prompt.extend(history.iter().map(|m| PromptMessage {
        role: m.role.clone(),
        content: m.content.clone(),
    }));
    let settings = reply_settings(&chat).sampling();
    check_settings(&settings)?;
    let cancellable = state.inference.cancellable(&cancel_key(id));
    let finished = state
        .inference
        .generate_cancellable(
            &chat.model_location,
            chat.adapter_path.as_deref(),
            InferencePrompt::Chat { messages: prompt },
            settings,
            on_text,
            Some(cancellable.token()),
        )
        .await
        .map_err(|error| match error {
            InferenceError::Busy(message) => ChatError::Busy(message),
            InferenceError::Failed(message) => ChatError::Generation(message),
        })?;
    history.push(ChatMessageView {
        role: "assistant".into(),
        content: finished.text.clone(),
        cancelled: finished.finish_reason == crate::compare::CANCELLED,
    });
    state.store.set_chat_messages(
        id,
        &serde_json::to_string(&history).map_err(anyhow::Error::from)?,
    )?;
    Ok(finished)
}
