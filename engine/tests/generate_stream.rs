//! Streaming detokenization with SmolLM2's byte-level BPE: pieces joined
//! equal the full decode, characters split across tokens come out whole
//! and once, and chat prompts render with the generation prompt.

mod common;

use common::smollm2_path;
use engine::generate::{chat_prompt, render_chat, text_prompt, Message, StreamDecoder};
use engine::tokenizer::TokenizerBundle;

fn smollm2() -> TokenizerBundle {
    TokenizerBundle::from_gguf_path(&smollm2_path()).unwrap()
}

fn pieces(bundle: &TokenizerBundle, ids: &[u32]) -> Vec<String> {
    let mut decoder = StreamDecoder::new(&bundle.tokenizer, true);
    let mut out: Vec<String> = ids.iter().map(|&id| decoder.push(id).unwrap()).collect();
    out.push(decoder.finish().unwrap());
    out
}

#[test]
fn multibyte_characters_split_across_tokens_come_out_whole() {
    let bundle = smollm2();
    let text = "Ahoy! Größe: 日本語 🦀🎉 — naïve café. Yo-ho-ho!";
    let ids = bundle
        .tokenizer
        .encode(text, false)
        .unwrap()
        .get_ids()
        .to_vec();
    let out = pieces(&bundle, &ids);
    assert_eq!(out.concat(), text);
    // Some tokens end inside a character: they produce nothing, and the
    // token completing the character produces all of it.
    assert!(out.iter().any(String::is_empty), "{out:?}");
    for piece in &out {
        assert!(!piece.contains('\u{FFFD}'), "{out:?}");
    }
    let crab = out.iter().position(|p| p.contains('🦀')).unwrap();
    assert_eq!(out.iter().filter(|p| p.contains('🦀')).count(), 1);
    assert!(out[crab - 1].is_empty(), "{out:?}");
}

#[test]
fn spaces_and_newlines_are_kept_at_token_boundaries() {
    let bundle = smollm2();
    let text = "The capital of France is Paris.\n\n  Indented line\tand a tab.";
    let ids = bundle
        .tokenizer
        .encode(text, false)
        .unwrap()
        .get_ids()
        .to_vec();
    let out = pieces(&bundle, &ids);
    assert_eq!(out.concat(), text);
    assert_eq!(out[0], "The");
    assert_eq!(out[1], " capital");
}

#[test]
fn an_unfinished_character_at_the_end_is_flushed_as_a_replacement() {
    let bundle = smollm2();
    let ids = bundle
        .tokenizer
        .encode("ok 🦀", false)
        .unwrap()
        .get_ids()
        .to_vec();
    let mut decoder = StreamDecoder::new(&bundle.tokenizer, true);
    let mut text = String::new();
    // All but the crab's last byte-token.
    for &id in &ids[..ids.len() - 1] {
        text.push_str(&decoder.push(id).unwrap());
    }
    assert_eq!(text, "ok");
    let rest = decoder.finish().unwrap();
    assert!(
        rest.starts_with(' ') && rest.ends_with('\u{FFFD}'),
        "{rest:?}"
    );
}

#[test]
fn special_tokens_are_skipped_in_text() {
    let bundle = smollm2();
    let end = bundle.tokenizer.token_to_id("<|im_end|>").unwrap();
    let mut ids = bundle
        .tokenizer
        .encode("Hi", false)
        .unwrap()
        .get_ids()
        .to_vec();
    ids.push(end);
    assert_eq!(pieces(&bundle, &ids).concat(), "Hi");
}

#[test]
fn chat_prompt_renders_smollm2s_template_with_the_generation_prompt() {
    let bundle = smollm2();
    let messages = [Message::user("What is double 15?")];
    let text = render_chat(&bundle, &messages).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is double 15?<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = chat_prompt(&bundle, &messages).unwrap();
    let start = bundle.tokenizer.token_to_id("<|im_start|>").unwrap();
    assert_eq!(ids[0], start);
    assert_eq!(ids.iter().filter(|&&id| id == start).count(), 3);
    assert_eq!(bundle.tokenizer.decode(&ids, false).unwrap(), text);
    // The stop ids include the end of a turn.
    let end = bundle.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert!(
        bundle.eos_token_ids.contains(&end),
        "{:?}",
        bundle.eos_token_ids
    );

    let plain = text_prompt(&bundle, "The capital of France is").unwrap();
    assert_eq!(
        bundle.tokenizer.decode(&plain, false).unwrap(),
        "The capital of France is"
    );
}
