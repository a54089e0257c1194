//! Helpers shared by the data tests: a byte-level tokenizer with one token
//! per byte (so token positions can be read off the text) and real chat
//! templates.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use engine::tokenizer::TokenizerBundle;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// ChatML as SmolLM2-135M-Instruct ships it (from its GGUF), with its
/// default system prompt.
pub const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Plain ChatML (no default system prompt).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Meta Llama 3 Instruct's template.
pub const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// A template with tools, in the style of Qwen2.5's (system default, tool
/// list printed with `tojson`, tool calls, tool responses, loop controls and
/// Python string methods).
pub const TOOLS_TEMPLATE: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "system" and loop.first %}
        {%- continue %}
    {%- elif message.role == "user" or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content.strip() + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- for tool_call in message.tool_calls %}
            {%- set tool_call = tool_call.function %}
            {{- '\n<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' + tool_call.arguments | tojson + '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

pub const SPECIALS: [&str; 7] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<s>",
];

/// A byte-level BPE without merges: every byte of ordinary text is one
/// token (ids 0..=255 in byte order), and each special token is one token
/// (ids 256.. in `SPECIALS` order).
pub fn byte_tokenizer() -> Tokenizer {
    let mut alphabet: Vec<(u8, char)> = Vec::new();
    // Rebuild GPT-2's byte-to-char table to give byte b the id b.
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let c = if printable {
            char::from_u32(b as u32).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
        alphabet.push((b, c));
    }
    let vocab: tokenizers::models::bpe::Vocab = alphabet
        .iter()
        .map(|&(b, c)| (c.to_string(), b as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .unwrap();
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    tokenizer
}

pub fn special_id(token: &str) -> u32 {
    256 + SPECIALS.iter().position(|s| *s == token).unwrap() as u32
}

/// Token ids of ordinary text under [`byte_tokenizer`].
pub fn bytes(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

pub fn chatml_bundle(template: &str) -> TokenizerBundle {
    TokenizerBundle {
        tokenizer: byte_tokenizer(),
        chat_template: Some(template.to_string()),
        bos_token: None,
        eos_token: Some("<|im_end|>".into()),
        eos_token_ids: vec![special_id("<|im_end|>")],
        add_bos_token: false,
    }
}

pub fn llama3_bundle() -> TokenizerBundle {
    TokenizerBundle {
        tokenizer: byte_tokenizer(),
        chat_template: Some(LLAMA3_TEMPLATE.to_string()),
        bos_token: Some("<|begin_of_text|>".into()),
        eos_token: Some("<|eot_id|>".into()),
        eos_token_ids: vec![special_id("<|eot_id|>")],
        add_bos_token: true,
    }
}

/// A base model's tokenizer: no chat template, BOS `<s>` added to texts.
pub fn base_bundle() -> TokenizerBundle {
    TokenizerBundle {
        tokenizer: byte_tokenizer(),
        chat_template: None,
        bos_token: Some("<s>".into()),
        eos_token: Some("<|im_end|>".into()),
        eos_token_ids: vec![special_id("<|im_end|>")],
        add_bos_token: true,
    }
}

/// Writes `files` (name, contents) into a fresh folder.
pub fn dataset_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let path = dir.path().to_path_buf();
    (dir, path)
}

pub fn write(path: &Path, contents: impl AsRef<[u8]>) {
    std::fs::write(path, contents).unwrap();
}
