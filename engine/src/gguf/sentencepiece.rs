//! SentencePiece BPE vocabularies in GGUF files (`tokenizer.ggml.model` =
//! `llama`: Llama 2, Mistral, TinyLlama, Phi-3) as tokenizer.json parts.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::error::Result;
use super::reader::GgufFile;
use super::tokenizer::{merge_pairs, string_array, GgufSpecialTokens, Pipeline};

/// SentencePiece BPE (Llama 2, Mistral, TinyLlama, Phi-3): "▁" for spaces,
/// bytes as `<0xNN>` tokens for what the vocabulary lacks, and merges that
/// the file usually leaves out, recovered from the token scores. Like
/// llama.cpp, a space is put before every text run that starts the input or
/// follows a special token (`tokenizer.ggml.add_space_prefix`, default on).
pub(super) fn pipeline(
    file: &GgufFile,
    tokens: &[&str],
    special: &GgufSpecialTokens,
) -> Result<Pipeline> {
    let merges = match string_array(file, "tokenizer.ggml.merges")? {
        Some(merges) => merge_pairs(file, &merges)?,
        None => {
            let scores_key = "tokenizer.ggml.scores";
            let scores: Vec<f64> = file
                .get(scores_key)
                .ok_or_else(|| {
                    file.metadata_error(scores_key, "missing, and there are no merges either")
                })?
                .as_array()
                .and_then(|items| items.iter().map(|v| v.as_f64()).collect::<Option<Vec<_>>>())
                .ok_or_else(|| file.metadata_error(scores_key, "is not an array of numbers"))?;
            if scores.len() != tokens.len() {
                return Err(file.metadata_error(
                    scores_key,
                    format!("has {} entries for {} tokens", scores.len(), tokens.len()),
                ));
            }
            merges_from_scores(tokens, &scores)
        }
    };
    let add_space_prefix = match file.get("tokenizer.ggml.add_space_prefix") {
        None => true,
        Some(v) => v.as_bool().ok_or_else(|| {
            file.metadata_error(
                "tokenizer.ggml.add_space_prefix",
                format!("{v} is not a bool"),
            )
        })?,
    };
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let unk_token = special
        .unknown_token_id
        .map_or(Value::Null, |id| json!(tokens[id as usize]));
    Ok(Pipeline {
        normalizer,
        pre_tokenizer: Value::Null,
        decoder: json!({"type": "Sequence", "decoders": decoders}),
        unk_token,
        ignore_merges: false,
        merges,
    })
}

/// BPE merges that reproduce SentencePiece's score-driven merging: every
/// split of a token into two tokens, best-scoring result first (ties: longer
/// left, then longer right piece, then token order), as transformers'
/// `generate_merges` does for GGUF and sentencepiece models.
fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Vec<Value> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    // A token string listed twice counts once, at its first place with its
    // last id and score (Python dict semantics, which the reference has).
    let mut scored: Vec<(&str, f64)> = Vec::new();
    let mut done = HashSet::new();
    for token in tokens {
        if done.insert(*token) {
            scored.push((token, scores[ids[token]]));
        }
    }
    for (token, score) in scored {
        let mut local: Vec<(&str, &str)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| (&token[..at], &token[at..]))
            .filter(|(l, r)| ids.contains_key(l) && ids.contains_key(r))
            .collect();
        local.sort_by_key(|(l, r)| (ids[l], ids[r]));
        merges.extend(local.into_iter().map(|(l, r)| (l, r, score)));
    }
    // A stable sort keeps token order among full ties, like Python's sorted().
    merges.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| b.0.chars().count().cmp(&a.0.chars().count()))
            .then_with(|| b.1.chars().count().cmp(&a.1.chars().count()))
    });
    merges.into_iter().map(|(l, r, _)| json!([l, r])).collect()
}
