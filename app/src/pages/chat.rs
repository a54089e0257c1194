//! Chat with one adapter: `/chat` starts a conversation, `/chat/:id` holds
//! it. Without JavaScript a message posts and the page comes back with the
//! whole reply; `/assets/compare.js` streams the reply instead, with a
//! Stop button that keeps what came so far.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::compare_dto::{ChatSettingsForm, ChatView, CompareChoices, NewChatForm};
use crate::layout::{Heading, Page};
use crate::pages::compare::comparison_choices;
use crate::pages::{posted_error, ErrorBox};

#[server(prefix = "/fn", endpoint = "chat/start")]
pub async fn start_chat(form: NewChatForm) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let id = backend.create_chat(form).map_err(ServerFnError::new)?;
    backend.redirect(&format!("/chat/{id}"));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "chat/detail")]
pub async fn load_chat(id: i64) -> Result<Option<ChatView>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.chat(id).map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "chat/recent")]
pub async fn recent_chats() -> Result<Vec<ChatView>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.recent_chats().map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "chat/settings")]
pub async fn save_chat_settings(id: i64, form: ChatSettingsForm) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend
        .set_chat_settings(id, form)
        .map_err(ServerFnError::new)?;
    backend.redirect(&format!("/chat/{id}"));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "chat/send")]
pub async fn send_message(id: i64, message: String) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend
        .send_chat(id, message)
        .await
        .map_err(ServerFnError::new)?;
    backend.redirect(&format!("/chat/{id}"));
    Ok(())
}

#[component]
pub fn NewChatPage() -> impl IntoView {
    let choices = Resource::new_blocking(|| (), |_| comparison_choices());
    let recent = Resource::new_blocking(|| (), |_| recent_chats());
    let error = posted_error();
    view! {
        <Page current="/chat">
            <Heading text="Chat" />
            <ErrorBox message=error />
            <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                {move || Suspend::new(async move {
                    let form = match choices.await {
                        Ok(choices) => view! { <StartChatForm choices /> }.into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load the choices: {error}")}</p>
                        }
                        .into_any(),
                    };
                    let earlier = match recent.await {
                        Ok(chats) if chats.is_empty() => ().into_any(),
                        Ok(chats) => view! { <EarlierChats chats /> }.into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load earlier chats: {error}")}</p>
                        }
                        .into_any(),
                    };
                    view! { {form} {earlier} }
                })}
            </Suspense>
        </Page>
    }
}

/// Earlier chats to reopen: each by its adapter and its first message.
#[component]
fn EarlierChats(chats: Vec<ChatView>) -> impl IntoView {
    const SHOWN_CHARS: usize = 80;
    let rows = chats
        .into_iter()
        .map(|chat| {
            let opening = chat
                .messages
                .iter()
                .find(|m| m.role == "user")
                .map(|m| {
                    let mut text: String = m.content.chars().take(SHOWN_CHARS).collect();
                    if m.content.chars().count() > SHOWN_CHARS {
                        text.push('…');
                    }
                    text
                })
                .unwrap_or_else(|| "(no message yet)".to_string());
            view! {
                <tr data-chat=chat.id>
                    <td><a href=format!("/chat/{}", chat.id)>{opening}</a></td>
                    <td>{chat.adapter}</td>
                    <td>{chat.model}</td>
                    <td class="num">{chat.messages.len()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel" id="earlier-chats">
            <h2>"Earlier chats"</h2>
            <table>
                <thead>
                    <tr><th>"First message"</th><th>"Adapter"</th><th>"Model"</th><th class="num">"Messages"</th></tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}

#[component]
fn StartChatForm(choices: CompareChoices) -> impl IntoView {
    let models = choices
        .models
        .iter()
        .map(|m| view! { <option value=m.name.clone()>{m.name.clone()}</option> })
        .collect_view();
    let adapters = choices
        .adapters
        .iter()
        .map(|a| {
            let label = match &a.model {
                Some(model) => format!("{} · {model}", a.label),
                None => a.label.clone(),
            };
            view! { <option value=a.reference.clone()>{label}</option> }
        })
        .collect_view();
    view! {
        <form class="stacked panel" method="post" action="/fn/chat/start" id="chat-start-form">
            <label><span>"Base model"</span><select name="form[model]" id="chat-model">{models}</select></label>
            <label><span>"Adapter"</span><select name="form[adapter]" id="chat-adapter">{adapters}</select></label>
            <label><span>"System message (optional)"</span><input type="text" name="form[system]" /></label>
            <div class="pair">
                <label>
                    <span>"Temperature (0 is greedy)"</span>
                    <input type="number" name="form[temperature]" id="chat-temperature" min="0" step="0.05" placeholder="0.7" />
                </label>
                <label>
                    <span>"Longest reply (tokens)"</span>
                    <input type="number" name="form[max_tokens]" id="chat-max-tokens" min="1" step="1" placeholder="256" />
                </label>
            </div>
            <button type="submit" class="primary" id="chat-start">"Start chatting"</button>
        </form>
    }
}

#[component]
pub fn ChatPage() -> impl IntoView {
    let id = use_params_map()
        .with_untracked(|params| params.get("id").and_then(|id| id.parse::<i64>().ok()));
    let chat = Resource::new_blocking(
        move || id,
        |id| async move {
            match id {
                Some(id) => load_chat(id).await,
                None => Ok(None),
            }
        },
    );
    let error = posted_error();
    view! {
        <Page current="/chat">
            <ErrorBox message=error />
            <div class="error-box" id="chat-error" role="alert" hidden></div>
            <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                {move || Suspend::new(async move {
                    match chat.await {
                        Ok(Some(chat)) => view! { <Conversation chat /> }.into_any(),
                        Ok(None) => view! { <Heading text="No such chat" /> }.into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load the chat: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

/// The system message and generation settings, changeable between replies.
#[component]
fn ChatSettings(chat: ChatView) -> impl IntoView {
    view! {
        <details class="panel" id="chat-settings">
            <summary>"Settings for the next replies"</summary>
            <form class="stacked" method="post" action="/fn/chat/settings" id="chat-settings-form">
                <input type="hidden" name="id" value=chat.id />
                <label>
                    <span>"System message (empty for none)"</span>
                    <input type="text" name="form[system]" value=chat.system.clone().unwrap_or_default() />
                </label>
                <div class="pair">
                    <label>
                        <span>"Temperature (0 is greedy)"</span>
                        <input type="number" name="form[temperature]" min="0" step="0.05" value=chat.temperature.to_string() />
                    </label>
                    <label>
                        <span>"Longest reply (tokens)"</span>
                        <input type="number" name="form[max_tokens]" min="1" step="1" value=chat.max_tokens.to_string() />
                    </label>
                </div>
                <button type="submit" id="chat-settings-save">"Save settings"</button>
            </form>
        </details>
    }
}

#[component]
fn Conversation(chat: ChatView) -> impl IntoView {
    let id = chat.id;
    let messages = chat
        .messages
        .iter()
        .map(|m| {
            view! {
                <div class=format!("message {}", m.role) class:cancelled=m.cancelled>
                    <div class="role muted">
                        {m.role.clone()}
                        {m.cancelled.then(|| view! { <span class="stopped">" · stopped"</span> })}
                    </div>
                    <pre class="content">{m.content.clone()}</pre>
                </div>
            }
        })
        .collect_view();
    view! {
        <Heading text=format!("Chat with {}", chat.adapter) />
        <p class="muted" id="chat-summary">
            {format!(
                "{} · temperature {} · up to {} tokens{}",
                chat.model,
                chat.temperature,
                chat.max_tokens,
                chat.system.as_ref().map(|s| format!(" · system: {s}")).unwrap_or_default(),
            )}
        </p>
        <ChatSettings chat=chat.clone() />
        <div class="panel chat" id="messages">{messages}</div>
        <form class="stacked panel" method="post" action="/fn/chat/send" id="chat-form" data-chat=id>
            <input type="hidden" name="id" value=id />
            <label>
                <span>"Message (Enter sends, Shift+Enter for a new line)"</span>
                <textarea name="message" id="chat-input" rows="3" required></textarea>
            </label>
            <div class="actions">
                <button type="submit" class="primary" id="chat-send">"Send"</button>
                // Shown by compare.js while a reply streams: a page without
                // JavaScript waits for the whole reply instead.
                <button type="button" class="danger" id="chat-stop" hidden>"Stop"</button>
            </div>
        </form>
    }
}
