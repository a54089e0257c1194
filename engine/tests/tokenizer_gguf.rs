//! Tokenizers from GGUF metadata and from HF folders.

mod gguf_common;

use engine::gguf::ValueType;
use engine::gguf::{GgufFile, MetadataValue as V};
use engine::tokenizer::TokenizerBundle;
use gguf_common::{smollm2_path, tiny_vocab, GgufWriter};

/// Expected ids from two references that agree on every text: Python
/// `tokenizers` 0.23.3 with SmolLM2's own tokenizer.json pipeline
/// (Digits(individual_digits) + ByteLevel(add_prefix_space=false)) fed the
/// GGUF's vocabulary, merges and control tokens, and transformers 5.24's GGUF
/// tokenizer converter (`convert_gguf_tokenizer`) on the same metadata.
/// scripts/reference/gguf_tokenizer_ids.py prints both.
const SMOLLM2_CASES: &[(&str, &[u32])] = &[
    ("Hello, world!", &[19556, 28, 905, 17]),
    (
        "The capital of France is Paris.",
        &[504, 3575, 282, 4649, 314, 7042, 30],
    ),
    (
        "café naïve résumé Zürich",
        &[
            83, 1939, 2756, 15486, 46494, 412, 2756, 5422, 2756, 1777, 7170, 5130,
        ],
    ),
    (
        "emoji 🦀🎉 ok",
        &[391, 33777, 15107, 116, 218, 10813, 232, 227, 10907],
    ),
    (
        "digits 12345 and 3.14159",
        &[
            37307, 216, 33, 34, 35, 36, 37, 284, 216, 35, 30, 33, 36, 33, 37, 41,
        ],
    ),
    (
        "line one\nline two\n\n  indented\ttab",
        &[1311, 582, 198, 1311, 827, 8866, 641, 6574, 197, 15999],
    ),
    (
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        &[1, 4093, 198, 26843, 665, 2, 198, 1, 520, 9531, 198],
    ),
    (
        "  leading spaces and trailing   ",
        &[216, 2899, 5600, 284, 35079, 333],
    ),
    ("don't I'll we've", &[12420, 982, 339, 3060, 392, 3543]),
    (
        "日本語のテキスト",
        &[
            23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226,
        ],
    ),
    ("", &[]),
];

#[test]
fn smollm2_gguf_tokenizer_matches_reference_ids_and_round_trips() {
    let bundle = TokenizerBundle::from_gguf_path(&smollm2_path()).unwrap();
    let tok = &bundle.tokenizer;
    assert_eq!(tok.get_vocab_size(true), 49152);
    for (text, expected) in SMOLLM2_CASES {
        let ids = tok.encode(*text, false).unwrap().get_ids().to_vec();
        assert_eq!(&ids, expected, "{text:?}");
        // add_bos_token is false in this file: specials add nothing.
        assert_eq!(tok.encode(*text, true).unwrap().get_ids(), *expected);
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            *text,
            "round trip of {text:?}"
        );
    }
    // Control tokens are special: skipped when decoding for display.
    assert_eq!(
        tok.decode(&[1, 4093, 198, 26843, 665, 2], true).unwrap(),
        "user\nHi there"
    );
}

#[test]
fn smollm2_gguf_special_tokens_and_template() {
    let bundle = TokenizerBundle::from_gguf_path(&smollm2_path()).unwrap();
    assert_eq!(bundle.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(bundle.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(bundle.bos_token_id(), Some(1));
    assert_eq!(bundle.eos_token_id(), Some(2));
    // EOS, then <|endoftext|> (a control token chat models also stop on).
    assert_eq!(bundle.eos_token_ids, [2, 0]);
    assert!(!bundle.add_bos_token);
    let template = bundle.chat_template.as_deref().unwrap();
    assert!(
        template.starts_with("{% for message in messages %}"),
        "{template}"
    );
    assert!(template.contains("You are a helpful AI assistant named SmolLM"));
}

fn ids(bundle: &TokenizerBundle, text: &str, specials: bool) -> Vec<u32> {
    bundle
        .tokenizer
        .encode(text, specials)
        .unwrap()
        .get_ids()
        .to_vec()
}

#[test]
fn split_regex_follows_tokenizer_ggml_pre() {
    let dir = tempfile::tempdir().unwrap();
    for (pre, expected) in [
        // GPT-2: " ?\p{N}+" keeps the run whole.
        (None, vec![10]),
        (Some("gpt2"), vec![10]),
        // SmolLM / StarCoder: every digit alone.
        (Some("smollm"), vec![2, 3, 4, 5, 6]),
        // Llama 3: runs of at most three digits.
        (Some("llama-bpe"), vec![8, 9]),
        // Qwen 2: single digits.
        (Some("qwen2"), vec![2, 3, 4, 5, 6]),
    ] {
        let path = tiny_vocab(pre, false).write(dir.path(), "tiny.gguf");
        let bundle = TokenizerBundle::from_gguf_path(&path).unwrap();
        assert_eq!(ids(&bundle, "12345", false), expected, "pre {pre:?}");
        assert_eq!(ids(&bundle, "a a", false), [11, 13], "pre {pre:?}");
        assert_eq!(
            ids(&bundle, "a<think>a", false),
            [11, 14, 11],
            "pre {pre:?}"
        );
        assert_eq!(
            bundle.tokenizer.decode(&[11, 13, 14], true).unwrap(),
            "a a<think>"
        );
    }
}

#[test]
fn add_bos_token_prepends_bos() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_vocab(Some("llama-bpe"), true).write(dir.path(), "bos.gguf");
    let bundle = TokenizerBundle::from_gguf_path(&path).unwrap();
    assert!(bundle.add_bos_token);
    assert_eq!(ids(&bundle, "12345", true), [0, 8, 9]);
    assert_eq!(ids(&bundle, "12345", false), [8, 9]);
    assert_eq!(bundle.eos_token_ids, [1]);
}

#[test]
fn unsupported_tokenizers_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_vocab(Some("mystery"), false).write(dir.path(), "pre.gguf");
    let err = TokenizerBundle::from_gguf_path(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: metadata `tokenizer.ggml.pre`: pre-tokenizer `mystery` is not supported \
             (supported: default, gpt-2, gpt2, smollm, starcoder, refact, llama-bpe, llama3, \
             llama-v3, qwen2, deepseek-r1-qwen)",
            path.display()
        )
    );

    let mut w = tiny_vocab(None, false);
    w.metadata[1].1 = V::String("t5".into());
    let path = w.write(dir.path(), "t5.gguf");
    let err = TokenizerBundle::from_gguf_path(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: metadata `tokenizer.ggml.model`: tokenizer model `t5` is not supported \
             (supported: `gpt2`, byte-level BPE; `llama`, SentencePiece BPE)",
            path.display()
        )
    );

    let mut w = tiny_vocab(None, false);
    w.kv("tokenizer.ggml.padding_token_id", V::U32(99));
    let path = w.write(dir.path(), "pad.gguf");
    let err = TokenizerBundle::from_gguf_path(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: metadata `tokenizer.ggml.padding_token_id`: 99 is not a token id (the vocabulary has 15 tokens)",
            path.display()
        )
    );
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(
        file.get("tokenizer.ggml.padding_token_id")
            .unwrap()
            .as_u64(),
        Some(99)
    );
}

/// The SmolLM2 vocabulary under other `tokenizer.ggml.pre` values. Expected
/// ids: transformers 5.24's `convert_gguf_tokenizer` on the same metadata
/// with `pre_tokenizer_type` set to each value (its split regexes for
/// llama-bpe and qwen2 are those of the Llama 3 and Qwen 2 tokenizer.json
/// files). The vocabulary has single digits only, so the regexes differ here
/// on whitespace runs.
#[test]
fn other_split_regexes_match_transformers_on_a_real_vocabulary() {
    let source = GgufFile::open(smollm2_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let newline_run_split: &[u32] = &[1311, 582, 198, 1311, 827, 1116, 216, 641, 6574, 197, 15999];
    let gpt2_newlines: &[u32] = &[1311, 582, 198, 1311, 827, 8866, 641, 6574, 197, 15999];
    for (pre, newlines) in [
        ("llama-bpe", newline_run_split),
        ("qwen2", newline_run_split),
        ("gpt2", gpt2_newlines),
    ] {
        let mut w = gguf_common::GgufWriter::default();
        for (key, value) in &source.metadata {
            if key.starts_with("tokenizer.ggml.") || key == "general.architecture" {
                w.kv(key, value.clone());
            }
        }
        w.metadata
            .iter_mut()
            .find(|(k, _)| k == "tokenizer.ggml.pre")
            .unwrap()
            .1 = V::String(pre.into());
        let path = w.write(dir.path(), "pre.gguf");
        let bundle = TokenizerBundle::from_gguf_path(&path).unwrap();
        let ids = |text: &str| {
            bundle
                .tokenizer
                .encode(text, false)
                .unwrap()
                .get_ids()
                .to_vec()
        };
        assert_eq!(
            ids("line one\nline two\n\n  indented\ttab"),
            newlines,
            "{pre}"
        );
        assert_eq!(
            ids("digits 12345 and 3.14159"),
            [37307, 216, 33, 34, 35, 36, 37, 284, 216, 35, 30, 33, 36, 33, 37, 41],
            "{pre}"
        );
        assert_eq!(
            ids("don't I'LL We'Ve"),
            [12420, 982, 339, 23, 16421, 1046, 23, 25917],
            "{pre}"
        );
        assert_eq!(
            ids("Hello, world!!! ..."),
            [19556, 28, 905, 29646, 4563],
            "{pre}"
        );
        assert_eq!(
            ids("café 日本語 🦀"),
            [83, 1939, 2756, 17097, 241, 115, 40993, 179, 120, 248, 15107, 116, 218],
            "{pre}"
        );
    }
}

/// A SentencePiece-style vocabulary (`tokenizer.ggml.model` = `llama`):
/// three specials, 256 byte tokens, a few scored pieces, no merges. The
/// same list is in scripts/reference/gguf_spm_tokenizer_ids.py.
fn spm_vocab() -> GgufWriter {
    const PIECES: &[(&str, f32)] = &[
        ("\u{2581}", -1.0),
        ("h", -2.0),
        ("e", -2.5),
        ("l", -3.0),
        ("o", -3.5),
        ("w", -4.0),
        ("r", -4.5),
        ("d", -5.0),
        ("\u{2581}h", -6.0),
        ("he", -6.5),
        ("ll", -7.0),
        ("llo", -7.5),
        ("\u{2581}he", -8.0),
        ("\u{2581}hello", -8.5),
        ("\u{2581}w", -9.0),
        ("or", -9.5),
        ("ld", -10.0),
        ("\u{2581}world", -10.5),
        ("\u{2581}\u{2581}", -11.0),
    ];
    let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
    let mut tokens: Vec<&str> = vec!["<unk>", "<s>", "</s>"];
    tokens.extend(bytes.iter().map(String::as_str));
    tokens.extend(PIECES.iter().map(|(p, _)| *p));
    let mut scores = vec![0.0f32; 259];
    scores.extend(PIECES.iter().map(|(_, s)| *s));
    let mut types = vec![2i32, 3, 3];
    types.extend(std::iter::repeat_n(6, 256));
    types.extend(std::iter::repeat_n(1, PIECES.len()));
    let mut w = GgufWriter::default();
    w.kv("general.architecture", V::String("llama".into()))
        .kv("tokenizer.ggml.model", V::String("llama".into()))
        .kv("tokenizer.ggml.tokens", gguf_common::string_array(&tokens))
        .kv(
            "tokenizer.ggml.scores",
            V::Array(ValueType::F32, scores.into_iter().map(V::F32).collect()),
        )
        .kv(
            "tokenizer.ggml.token_type",
            V::Array(ValueType::I32, types.into_iter().map(V::I32).collect()),
        )
        .kv("tokenizer.ggml.unknown_token_id", V::U32(0))
        .kv("tokenizer.ggml.bos_token_id", V::U32(1))
        .kv("tokenizer.ggml.eos_token_id", V::U32(2));
    w
}

/// Expected ids: transformers 5.24's `convert_gguf_tokenizer` on the same
/// vocabulary, through its Phi-3 path, which puts the prefix space the way
/// llama.cpp does (before the text and after each special token); see
/// scripts/reference/gguf_spm_tokenizer_ids.py.
#[test]
fn sentencepiece_vocabulary_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let path = spm_vocab().write(dir.path(), "spm.gguf");
    let bundle = TokenizerBundle::from_gguf_path(&path).unwrap();
    assert!(
        bundle.add_bos_token,
        "SentencePiece files add BOS by default"
    );
    assert_eq!(bundle.bos_token.as_deref(), Some("<s>"));
    assert_eq!(bundle.eos_token_ids, [2]);
    for (text, expected, decoded) in [
        ("hello world", &[272, 273, 274, 275][..], "hello world"),
        (" hello", &[259, 272], " hello"),
        ("hello\nworld", &[272, 13, 264, 274, 275], "hello\nworld"),
        ("h\u{e9}llo", &[267, 198, 172, 270], "h\u{e9}llo"),
        ("  world", &[277, 273, 274, 275], "  world"),
        ("<s>hello</s>", &[1, 272, 2], "hello"),
        ("wold", &[273, 263, 275], "wold"),
    ] {
        let ids = bundle
            .tokenizer
            .encode(text, false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids, expected, "{text:?}");
        assert_eq!(
            bundle.tokenizer.decode(&ids, true).unwrap(),
            decoded,
            "{text:?}"
        );
        let with_bos = bundle
            .tokenizer
            .encode(text, true)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(with_bos[0], 1, "{text:?}");
        assert_eq!(with_bos[1..], *expected, "{text:?}");
    }

    // Without tokenizer.ggml.add_space_prefix nothing is prepended.
    let mut w = spm_vocab();
    w.kv("tokenizer.ggml.add_space_prefix", V::Bool(false));
    let path = w.write(dir.path(), "spm_no_prefix.gguf");
    let bundle = TokenizerBundle::from_gguf_path(&path).unwrap();
    assert_eq!(
        bundle.tokenizer.encode("hello", false).unwrap().get_ids(),
        [268, 270]
    );
}

/// The GGUF's chat template renders with minijinja (the engine's Jinja) and
/// its output tokenizes with the turn markers as single special tokens.
#[test]
fn smollm2_chat_template_renders_and_tokenizes() {
    let bundle = TokenizerBundle::from_gguf_path(&smollm2_path()).unwrap();
    let mut env = minijinja::Environment::new();
    env.add_template("chat", bundle.chat_template.as_deref().unwrap())
        .unwrap();
    let text = env
        .get_template("chat")
        .unwrap()
        .render(minijinja::context! {
            messages => vec![minijinja::context! { role => "user", content => "Hi" }],
            add_generation_prompt => true,
        })
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = bundle.tokenizer.encode(text.as_str(), false).unwrap();
    let ids = ids.get_ids();
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&id| id == 2).count(), 2);
    assert_eq!(ids[0], 1);
    assert_eq!(ids[ids.len() - 4..], [1, 520, 9531, 198]);
}
