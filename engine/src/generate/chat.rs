//! A conversation as the prompt a chat model expects: its own chat template
//! rendered with `add_generation_prompt`, tokenized the way training data is
//! (the text carries its special tokens, so none are added).

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::chat_template::ChatTemplate;
use crate::tokenizer::TokenizerBundle;

/// One chat message, as chat templates read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
        }
    }

    pub fn user(content: &str) -> Self {
        Self::new("user", content)
    }

    pub fn system(content: &str) -> Self {
        Self::new("system", content)
    }

    pub fn assistant(content: &str) -> Self {
        Self::new("assistant", content)
    }
}

/// The conversation rendered by the model's chat template, ending with the
/// start of the assistant's turn.
pub fn render_chat<M: Serialize>(bundle: &TokenizerBundle, messages: &[M]) -> Result<String> {
    let template = ChatTemplate::from_bundle(bundle)?
        .ok_or_else(|| anyhow!("the model has no chat template; give a plain text prompt"))?;
    Ok(template.render(messages, None, true)?)
}

/// [`render_chat`] tokenized: the prompt tokens to generate from.
pub fn chat_prompt<M: Serialize>(bundle: &TokenizerBundle, messages: &[M]) -> Result<Vec<u32>> {
    let text = render_chat(bundle, messages)?;
    let mut ids = bundle
        .tokenizer
        .encode(text.as_str(), false)
        .map_err(|e| anyhow!("cannot tokenize the chat prompt: {e}"))?
        .get_ids()
        .to_vec();
    // A template that prints `bos_token` into text that the tokenizer also
    // starts with BOS would double it; the data pipeline drops one too.
    if let Some(bos) = bundle.bos_token_id() {
        if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
            ids.remove(0);
        }
    }
    Ok(ids)
}

/// A plain text prompt (no template), with BOS when the tokenizer adds one.
pub fn text_prompt(bundle: &TokenizerBundle, text: &str) -> Result<Vec<u32>> {
    let mut ids = bundle
        .tokenizer
        .encode(text, false)
        .map_err(|e| anyhow!("cannot tokenize the prompt: {e}"))?
        .get_ids()
        .to_vec();
    if bundle.add_bos_token {
        if let Some(bos) = bundle.bos_token_id() {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
    }
    Ok(ids)
}
