//! Tokenizers from Hugging Face model folders.

mod gguf_common;

use std::path::Path;

use engine::tokenizer::TokenizerBundle;
use gguf_common::{smollm2_path, tiny_vocab};
use serde_json::json;

fn write(dir: &Path, name: &str, value: &serde_json::Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn tokenizer_json_of_gguf(path: &Path) -> String {
    TokenizerBundle::from_gguf_path(path)
        .unwrap()
        .tokenizer
        .to_string(false)
        .unwrap()
}

#[test]
fn smollm2_style_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer.json"),
        tokenizer_json_of_gguf(&smollm2_path()),
    )
    .unwrap();
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({
            "bos_token": {"__type": "AddedToken", "content": "<|im_start|>", "lstrip": false},
            "eos_token": "<|im_end|>",
            "pad_token": "<|im_end|>",
            "chat_template": [
                {"name": "default", "template": "{{ messages[0]['content'] }}"},
                {"name": "tool_use", "template": "tools"},
            ],
        }),
    );
    write(
        dir.path(),
        "generation_config.json",
        &json!({"bos_token_id": 1, "eos_token_id": [2, 0, 2]}),
    );
    let bundle = TokenizerBundle::from_hf_folder(dir.path()).unwrap();
    assert_eq!(bundle.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(bundle.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(bundle.eos_token_ids, [2, 0]);
    assert_eq!(
        bundle.chat_template.as_deref(),
        Some("{{ messages[0]['content'] }}")
    );
    // No flag and a tokenizer.json that adds nothing: no BOS.
    assert!(!bundle.add_bos_token);
    assert_eq!(
        bundle
            .tokenizer
            .encode("Hello, world!", true)
            .unwrap()
            .get_ids(),
        [19556, 28, 905, 17]
    );
}

#[test]
fn llama3_style_folder_infers_add_bos_and_reads_jinja_template() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = tiny_vocab(Some("llama-bpe"), true).write(dir.path(), "tiny.gguf");
    std::fs::write(
        dir.path().join("tokenizer.json"),
        tokenizer_json_of_gguf(&gguf),
    )
    .unwrap();
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"bos_token": "<s>", "eos_token": "</s>"}),
    );
    std::fs::write(dir.path().join("chat_template.jinja"), "{{ bos_token }}").unwrap();
    let bundle = TokenizerBundle::from_hf_folder(dir.path()).unwrap();
    assert!(bundle.add_bos_token);
    assert_eq!(bundle.eos_token_ids, [1]);
    assert_eq!(bundle.chat_template.as_deref(), Some("{{ bos_token }}"));
    assert_eq!(
        bundle.tokenizer.encode("12345", true).unwrap().get_ids(),
        [0, 8, 9]
    );

    // An explicit flag wins over what the tokenizer.json does.
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": false, "chat_template": "T"}),
    );
    let bundle = TokenizerBundle::from_hf_folder(dir.path()).unwrap();
    assert!(!bundle.add_bos_token);
    assert_eq!(bundle.chat_template.as_deref(), Some("T"));
}

#[test]
fn bad_folders_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = TokenizerBundle::from_hf_folder(dir.path()).err().unwrap();
    let tokenizer_path = dir.path().join("tokenizer.json");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", tokenizer_path.display())),
        "{err}"
    );

    std::fs::write(&tokenizer_path, tokenizer_json_of_gguf(&smollm2_path())).unwrap();
    let config = dir.path().join("tokenizer_config.json");
    std::fs::write(&config, "{\"bos_token\": 5}").unwrap();
    let err = TokenizerBundle::from_hf_folder(dir.path()).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: `bos_token` must be a string or {{\"content\": ...}}, found 5",
            config.display()
        )
    );

    std::fs::write(&config, "{not json").unwrap();
    let err = TokenizerBundle::from_hf_folder(dir.path()).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!("{}: invalid JSON", config.display())
    );

    std::fs::write(
        &config,
        "{\"chat_template\": [{\"name\": \"rag\", \"template\": \"x\"}]}",
    )
    .unwrap();
    let err = TokenizerBundle::from_hf_folder(dir.path()).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: `chat_template` is a list without a template named `default`",
            config.display()
        )
    );
}
