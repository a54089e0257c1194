//! A model's tokenizer with what the chat template needs: its special tokens
//! and the template text itself.

use std::path::Path;

use anyhow::{anyhow, Context};
use serde_json::Value;

use crate::gguf::error::GgufError;
use crate::gguf::reader::GgufFile;

/// The tokenizer of a model plus its chat template and special tokens, from
/// an HF folder (tokenizer.json + tokenizer_config.json) or a GGUF file.
#[derive(Clone)]
pub struct TokenizerBundle {
    pub tokenizer: tokenizers::Tokenizer,
    /// Jinja chat template (HF `chat_template`, GGUF `tokenizer.chat_template`).
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Token ids that end generation (the EOS token and the template's end-of-turn tokens).
    pub eos_token_ids: Vec<u32>,
    /// Whether encoding a plain text prepends BOS (HF `add_bos_token`).
    pub add_bos_token: bool,
}

impl TokenizerBundle {
    /// The tokenizer of an HF model folder: `tokenizer.json`, plus
    /// `tokenizer_config.json` (chat template, BOS/EOS, `add_bos_token`),
    /// `chat_template.jinja` / `chat_template.json` where newer
    /// transformers put the template, and `generation_config.json`'s EOS ids.
    pub fn from_hf_folder(dir: &Path) -> anyhow::Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow!("{}: {e}", tokenizer_path.display()))?;

        let config_path = dir.join("tokenizer_config.json");
        let config = read_json(&config_path)?.unwrap_or(Value::Null);
        let token_field = |key: &str| -> anyhow::Result<Option<String>> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                // transformers saves AddedToken objects: {"content": ..., "lstrip": ...}
                Some(Value::Object(o)) => match o.get("content") {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    _ => Err(anyhow!(
                        "{}: `{key}` is an object without a string `content`",
                        config_path.display()
                    )),
                },
                Some(other) => Err(anyhow!(
                    "{}: `{key}` must be a string or {{\"content\": ...}}, found {other}",
                    config_path.display()
                )),
            }
        };
        let bos_token = token_field("bos_token")?;
        let eos_token = token_field("eos_token")?;

        let chat_template = match config.get("chat_template") {
            Some(value) => Some(template_from_value(value, &config_path)?),
            None => read_chat_template_files(dir)?,
        };

        let bos_id = bos_token.as_deref().and_then(|t| tokenizer.token_to_id(t));
        let add_bos_token = match config.get("add_bos_token") {
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(anyhow!(
                    "{}: `add_bos_token` must be true or false, found {other}",
                    config_path.display()
                ))
            }
            // Llama 3 style: no flag, the tokenizer.json post-processor adds BOS.
            None => match bos_id {
                Some(bos) => tokenizer
                    .encode("a", true)
                    .map(|enc| enc.get_ids().first() == Some(&bos))
                    .map_err(|e| anyhow!("{}: {e}", tokenizer_path.display()))?,
                None => false,
            },
        };

        let mut eos_token_ids = Vec::new();
        if let Some(id) = eos_token.as_deref().and_then(|t| tokenizer.token_to_id(t)) {
            eos_token_ids.push(id);
        }
        let generation_path = dir.join("generation_config.json");
        if let Some(generation) = read_json(&generation_path)? {
            let ids = match generation.get("eos_token_id") {
                None | Some(Value::Null) => vec![],
                Some(Value::Array(items)) => items.iter().map(Value::as_u64).collect(),
                Some(single) => vec![single.as_u64()],
            };
            for id in ids {
                let id = id.and_then(|id| u32::try_from(id).ok()).ok_or_else(|| {
                    anyhow!(
                        "{}: `eos_token_id` must be a token id or a list of them",
                        generation_path.display()
                    )
                })?;
                if !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }

        Ok(Self {
            tokenizer,
            chat_template,
            bos_token,
            eos_token,
            eos_token_ids,
            add_bos_token,
        })
    }

    /// The tokenizer a GGUF file describes (`tokenizer.ggml.*`): byte-level
    /// BPE with the file's split regex, control tokens as special tokens,
    /// BOS/EOS and the chat template. Stopping ids: EOS, EOT/EOM and the
    /// end-of-turn control tokens of common templates.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, GgufError> {
        let (json, special) = crate::gguf::tokenizer::tokenizer_json(file)?;
        let bytes = serde_json::to_vec(&json).expect("a JSON value serializes");
        let tokenizer =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| GgufError::Invalid {
                path: file.path().to_path_buf(),
                message: format!("cannot build a tokenizer from `tokenizer.ggml.*`: {e}"),
            })?;
        let token = |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id));
        let chat_template = match file.get("tokenizer.chat_template") {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .ok_or_else(|| {
                        file.metadata_error("tokenizer.chat_template", "is not a string")
                    })?
                    .to_string(),
            ),
        };
        Ok(Self {
            bos_token: token(special.bos_token_id),
            eos_token: token(special.eos_token_id),
            tokenizer,
            chat_template,
            eos_token_ids: special.end_of_generation_ids,
            add_bos_token: special.add_bos_token,
        })
    }

    /// Opens a GGUF file and reads only its tokenizer.
    pub fn from_gguf_path(path: &Path) -> Result<Self, GgufError> {
        Self::from_gguf(&GgufFile::open(path)?)
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token
            .as_deref()
            .and_then(|t| self.tokenizer.token_to_id(t))
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token
            .as_deref()
            .and_then(|t| self.tokenizer.token_to_id(t))
    }
}

fn read_json(path: &Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{}: invalid JSON", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// `chat_template` is a string, or a list of named templates of which the
/// one called `default` is the chat template.
fn template_from_value(value: &Value, path: &Path) -> anyhow::Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) => items
            .iter()
            .find(|item| item.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|item| item.get("template").and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "{}: `chat_template` is a list without a template named `default`",
                    path.display()
                )
            }),
        other => Err(anyhow!(
            "{}: `chat_template` must be a string or a list of {{name, template}}, found {other}",
            path.display()
        )),
    }
}

fn read_chat_template_files(dir: &Path) -> anyhow::Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&jinja) {
        Ok(text) => return Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", jinja.display())),
    }
    let json_path = dir.join("chat_template.json");
    match read_json(&json_path)? {
        Some(value) => match value.get("chat_template") {
            Some(template) => template_from_value(template, &json_path).map(Some),
            None => Err(anyhow!("{}: no `chat_template` key", json_path.display())),
        },
        None => Ok(None),
    }
}
