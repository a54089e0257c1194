//! A Hugging Face `tokenizer.json` built from a GGUF file's tokenizer
//! metadata (`tokenizer.ggml.*`): byte-level BPE (`tokenizer.ggml.model` =
//! `gpt2`), whose split before BPE depends on `tokenizer.ggml.pre` (the
//! regex llama.cpp uses), and SentencePiece BPE (`llama`).

use serde_json::{json, Map, Value};

use super::error::Result;
use super::reader::GgufFile;

/// llama.cpp's `llama_token_type`.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// End-of-turn tokens of common chat templates.
const END_OF_TURN_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

/// GPT-2's split (what `ByteLevel` with `use_regex` does): StarCoder-family
/// vocabularies add one split before it, of every digit on its own.
const DIGITS: &str = r"\p{N}";

/// Llama 3's split: numbers in runs of up to three digits.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's split: like Llama 3's but single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How each supported `tokenizer.ggml.pre` splits text, as in llama.cpp's
/// llama-vocab.cpp and the models' own tokenizer.json files.
enum PreTokenizer {
    /// GPT-2's regex only.
    Gpt2,
    /// Each digit apart, then GPT-2's regex (SmolLM, StarCoder).
    DigitsThenGpt2,
    /// One regex, then byte-level mapping; `ignore_merges` as in the model's
    /// tokenizer.json (Llama 3 looks whole words up in the vocabulary first).
    Split {
        regex: &'static str,
        ignore_merges: bool,
        nfc: bool,
    },
}

const PRE_TOKENIZERS: &[(&str, PreTokenizer)] = &[
    ("default", PreTokenizer::Gpt2),
    ("gpt-2", PreTokenizer::Gpt2),
    ("gpt2", PreTokenizer::Gpt2),
    ("smollm", PreTokenizer::DigitsThenGpt2),
    ("starcoder", PreTokenizer::DigitsThenGpt2),
    ("refact", PreTokenizer::DigitsThenGpt2),
    (
        "llama-bpe",
        PreTokenizer::Split {
            regex: LLAMA3_SPLIT,
            ignore_merges: true,
            nfc: false,
        },
    ),
    (
        "llama3",
        PreTokenizer::Split {
            regex: LLAMA3_SPLIT,
            ignore_merges: true,
            nfc: false,
        },
    ),
    (
        "llama-v3",
        PreTokenizer::Split {
            regex: LLAMA3_SPLIT,
            ignore_merges: true,
            nfc: false,
        },
    ),
    (
        "qwen2",
        PreTokenizer::Split {
            regex: QWEN2_SPLIT,
            ignore_merges: false,
            nfc: true,
        },
    ),
    (
        "deepseek-r1-qwen",
        PreTokenizer::Split {
            regex: QWEN2_SPLIT,
            ignore_merges: false,
            nfc: true,
        },
    ),
];

/// Special token ids and flags read next to the vocabulary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufSpecialTokens {
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub padding_token_id: Option<u32>,
    pub unknown_token_id: Option<u32>,
    /// End-of-turn / end-of-message ids (`tokenizer.ggml.eot_token_id`, ...).
    pub end_of_generation_ids: Vec<u32>,
    pub add_bos_token: bool,
    pub add_eos_token: bool,
}

/// The tokenizer.json of a GGUF file's vocabulary, and its special tokens.
pub fn tokenizer_json(file: &GgufFile) -> Result<(Value, GgufSpecialTokens)> {
    let model_key = "tokenizer.ggml.model";
    let model = file
        .get(model_key)
        .ok_or_else(|| file.metadata_error(model_key, "missing: the file has no tokenizer"))?
        .as_str()
        .ok_or_else(|| file.metadata_error(model_key, "is not a string"))?;
    let sentencepiece = match model {
        "gpt2" => false,
        "llama" => true,
        other => {
            return Err(file.metadata_error(
                model_key,
                format!(
                    "tokenizer model `{other}` is not supported (supported: `gpt2`, byte-level \
                     BPE; `llama`, SentencePiece BPE)"
                ),
            ))
        }
    };

    let tokens = string_array(file, "tokenizer.ggml.tokens")?
        .ok_or_else(|| file.metadata_error("tokenizer.ggml.tokens", "missing"))?;
    let types_key = "tokenizer.ggml.token_type";
    let token_types: Vec<i64> = match file.get(types_key) {
        None => vec![1; tokens.len()],
        Some(value) => value
            .as_array()
            .and_then(|items| items.iter().map(|v| v.as_i64()).collect::<Option<Vec<_>>>())
            .ok_or_else(|| file.metadata_error(types_key, "is not an array of integers"))?,
    };
    if token_types.len() != tokens.len() {
        return Err(file.metadata_error(
            types_key,
            format!(
                "has {} entries for {} tokens",
                token_types.len(),
                tokens.len()
            ),
        ));
    }

    // SentencePiece vocabularies want BOS unless the file says otherwise
    // (llama.cpp and transformers agree); byte-level ones only when asked.
    let mut special = special_tokens(file, tokens.len(), sentencepiece)?;
    // Chat models end a turn with a control token the file does not always
    // name as EOT; llama.cpp stops on these too when they are in the vocabulary.
    for (id, (token, &t)) in tokens.iter().zip(&token_types).enumerate() {
        if t == TOKEN_TYPE_CONTROL && END_OF_TURN_TOKENS.contains(token) {
            let id = id as u32;
            if !special.end_of_generation_ids.contains(&id) {
                special.end_of_generation_ids.push(id);
            }
        }
    }

    let mut vocab = Map::new();
    for (id, token) in tokens.iter().enumerate() {
        // A repeated string maps to its last id, as in llama.cpp's
        // token-to-id table and transformers' converter.
        vocab.insert(token.to_string(), json!(id));
    }

    let added_tokens: Vec<Value> = tokens
        .iter()
        .zip(&token_types)
        .enumerate()
        .filter(|(_, (_, &t))| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
        .map(|(id, (content, &t))| {
            json!({
                "id": id,
                "content": content,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": t == TOKEN_TYPE_CONTROL,
            })
        })
        .collect();

    let pipeline = if sentencepiece {
        super::sentencepiece::pipeline(file, &tokens, &special)?
    } else {
        byte_level_pipeline(file)?
    };
    let post_processor = post_processor(&tokens, &special);
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": pipeline.normalizer,
        "pre_tokenizer": pipeline.pre_tokenizer,
        "post_processor": post_processor,
        "decoder": pipeline.decoder,
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": pipeline.unk_token,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": sentencepiece,
            "byte_fallback": sentencepiece,
            "ignore_merges": pipeline.ignore_merges,
            "vocab": vocab,
            "merges": pipeline.merges,
        },
    });
    Ok((tokenizer, special))
}

/// The parts of tokenizer.json that differ between vocabulary kinds.
pub(super) struct Pipeline {
    pub(super) normalizer: Value,
    pub(super) pre_tokenizer: Value,
    pub(super) decoder: Value,
    pub(super) unk_token: Value,
    pub(super) ignore_merges: bool,
    pub(super) merges: Vec<Value>,
}

fn byte_level_pipeline(file: &GgufFile) -> Result<Pipeline> {
    let pre_key = "tokenizer.ggml.pre";
    // Files written before llama.cpp recorded the split use its default.
    let pre_name = match file.get(pre_key) {
        None => "default",
        Some(v) => v
            .as_str()
            .ok_or_else(|| file.metadata_error(pre_key, "is not a string"))?,
    };
    let pre = &PRE_TOKENIZERS
        .iter()
        .find(|(name, _)| *name == pre_name)
        .ok_or_else(|| {
            let known: Vec<&str> = PRE_TOKENIZERS.iter().map(|(n, _)| *n).collect();
            file.metadata_error(
                pre_key,
                format!(
                    "pre-tokenizer `{pre_name}` is not supported (supported: {})",
                    known.join(", ")
                ),
            )
        })?
        .1;

    let merges = string_array(file, "tokenizer.ggml.merges")?
        .ok_or_else(|| file.metadata_error("tokenizer.ggml.merges", "missing"))?;
    let merges = merge_pairs(file, &merges)?;

    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    let (pre_tokenizer, ignore_merges, normalizer) = match pre {
        PreTokenizer::Gpt2 => (byte_level(true), false, Value::Null),
        PreTokenizer::DigitsThenGpt2 => (
            json!({"type": "Sequence", "pretokenizers": [split(DIGITS), byte_level(true)]}),
            false,
            Value::Null,
        ),
        PreTokenizer::Split {
            regex,
            ignore_merges,
            nfc,
        } => (
            json!({"type": "Sequence", "pretokenizers": [split(regex), byte_level(false)]}),
            *ignore_merges,
            if *nfc {
                json!({"type": "NFC"})
            } else {
                Value::Null
            },
        ),
    };
    Ok(Pipeline {
        normalizer,
        pre_tokenizer,
        decoder: json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
        unk_token: Value::Null,
        ignore_merges,
        merges,
    })
}

pub(super) fn merge_pairs(file: &GgufFile, merges: &[&str]) -> Result<Vec<Value>> {
    merges
        .iter()
        .enumerate()
        .map(|(index, merge)| {
            let (left, right) = merge.split_once(' ').ok_or_else(|| {
                file.metadata_error(
                    "tokenizer.ggml.merges",
                    format!("entry {index} `{merge}` is not two tokens separated by a space"),
                )
            })?;
            Ok(json!([left, right]))
        })
        .collect()
}

/// Prepends BOS / appends EOS when the file asks for it, so that
/// `encode(text, true)` matches llama.cpp's tokenization with specials.
fn post_processor(tokens: &[&str], special: &GgufSpecialTokens) -> Value {
    let bos = special
        .bos_token_id
        .filter(|_| special.add_bos_token)
        .map(|id| (id, tokens[id as usize]));
    let eos = special
        .eos_token_id
        .filter(|_| special.add_eos_token)
        .map(|id| (id, tokens[id as usize]));
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let piece = |token: &str| json!({"SpecialToken": {"id": token, "type_id": 0}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut special_tokens = Map::new();
    if let Some((id, token)) = bos {
        single.push(piece(token));
        pair.push(piece(token));
        special_tokens.insert(
            token.to_string(),
            json!({"id": token, "ids": [id], "tokens": [token]}),
        );
    }
    single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    pair.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    if let Some((_, token)) = eos {
        single.push(piece(token));
        pair.push(piece(token));
    }
    if let Some((_, token)) = bos {
        pair.push(piece(token));
    }
    pair.push(json!({"Sequence": {"id": "B", "type_id": 1}}));
    if let Some((id, token)) = eos {
        pair.push(piece(token));
        special_tokens.insert(
            token.to_string(),
            json!({"id": token, "ids": [id], "tokens": [token]}),
        );
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special_tokens})
}

pub(super) fn string_array<'a>(file: &'a GgufFile, key: &str) -> Result<Option<Vec<&'a str>>> {
    let Some(value) = file.get(key) else {
        return Ok(None);
    };
    value
        .as_array()
        .and_then(|items| items.iter().map(|v| v.as_str()).collect::<Option<Vec<_>>>())
        .map(Some)
        .ok_or_else(|| file.metadata_error(key, "is not an array of strings"))
}

fn special_tokens(
    file: &GgufFile,
    n_tokens: usize,
    add_bos_by_default: bool,
) -> Result<GgufSpecialTokens> {
    let id = |key: &str| -> Result<Option<u32>> {
        let Some(value) = file.get(key) else {
            return Ok(None);
        };
        // Some converters write -1 for "none".
        if value.as_i64() == Some(-1) {
            return Ok(None);
        }
        match value.as_u64() {
            Some(id) if (id as usize) < n_tokens => Ok(Some(id as u32)),
            _ => Err(file.metadata_error(
                key,
                format!("{value} is not a token id (the vocabulary has {n_tokens} tokens)"),
            )),
        }
    };
    let flag = |key: &str, default: bool| -> Result<bool> {
        match file.get(key) {
            None => Ok(default),
            Some(value) => value
                .as_bool()
                .ok_or_else(|| file.metadata_error(key, format!("{value} is not a bool"))),
        }
    };
    let mut end_of_generation_ids = Vec::new();
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = id(key)? {
            if !end_of_generation_ids.contains(&id) {
                end_of_generation_ids.push(id);
            }
        }
    }
    Ok(GgufSpecialTokens {
        bos_token_id: id("tokenizer.ggml.bos_token_id")?,
        eos_token_id: id("tokenizer.ggml.eos_token_id")?,
        padding_token_id: id("tokenizer.ggml.padding_token_id")?,
        unknown_token_id: id("tokenizer.ggml.unknown_token_id")?,
        end_of_generation_ids,
        add_bos_token: flag("tokenizer.ggml.add_bos_token", add_bos_by_default)?,
        add_eos_token: flag("tokenizer.ggml.add_eos_token", false)?,
    })
}

/// The `tokenizer.ggml.pre` name for an HF `tokenizer.json` pre-tokenizer
/// (the inverse of the table above), or None when llama.cpp has no name for
/// that split. Compared by structure (step types, regexes, whether the
/// byte-level step splits), not by every field a converter happened to write.
pub fn pre_tokenizer_name(pre_tokenizer: &Value, has_merges: bool) -> Option<&'static str> {
    fn signature(v: &Value, out: &mut Vec<String>) {
        match v.get("type").and_then(Value::as_str) {
            Some("Sequence") => {
                for step in v["pretokenizers"].as_array().into_iter().flatten() {
                    signature(step, out);
                }
            }
            Some("Split") => {
                let regex = v["pattern"]["Regex"].as_str().unwrap_or("?");
                out.push(format!("split {regex}"));
            }
            // `Digits` with `individual_digits` splits as the digit regex does.
            Some("Digits") if v["individual_digits"] == json!(true) => {
                out.push(format!("split {DIGITS}"));
            }
            Some("ByteLevel") => {
                let regex = v.get("use_regex").and_then(Value::as_bool).unwrap_or(true);
                out.push(format!("byte-level {regex}"));
            }
            other => out.push(format!("{other:?}")),
        }
    }
    let mut given = Vec::new();
    signature(pre_tokenizer, &mut given);
    // A byte-level step that does not split, with no merges, turns text
    // into single bytes whatever llama.cpp's default split does first.
    if given == ["byte-level false"] && !has_merges {
        return Some("default");
    }
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}});
    // "default" is llama.cpp's own split, not GPT-2's: name GPT-2's "gpt2".
    let named = PRE_TOKENIZERS.iter().filter(|(name, _)| *name != "default");
    named.into_iter().find_map(|(name, pre)| {
        let value = match pre {
            PreTokenizer::Gpt2 => byte_level(true),
            PreTokenizer::DigitsThenGpt2 => {
                json!({"type": "Sequence", "pretokenizers": [split(DIGITS), byte_level(true)]})
            }
            PreTokenizer::Split { regex, .. } => {
                json!({"type": "Sequence", "pretokenizers": [split(regex), byte_level(false)]})
            }
        };
        let mut expected = Vec::new();
        signature(&value, &mut expected);
        (expected == given).then_some(*name)
    })
}
