//! A model's tokenizer with what the chat template needs: its special tokens
//! and the template text itself.

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
