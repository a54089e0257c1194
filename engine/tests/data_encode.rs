//! Tokenization and prompt masks, checked token by token with a tokenizer
//! that gives one token per byte and one per special token.

mod data_support;

use data_support::*;
use engine::config::TrainConfig;
use engine::data::format::read_jsonl_bytes;
use engine::data::{
    load_dataset, preview, Encoder, FormatKeys, LengthHistogram, Record, SegmentKind, Split,
};

fn records(jsonl: &str) -> Vec<Record> {
    let mut problems = Vec::new();
    let contents = read_jsonl_bytes(
        jsonl.as_bytes(),
        "train.jsonl",
        &FormatKeys::default(),
        &mut problems,
    );
    assert_eq!(problems, vec![]);
    contents.records
}

fn chat_line(turns: &[(&str, &str)]) -> String {
    let messages: Vec<serde_json::Value> = turns
        .iter()
        .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
        .collect();
    serde_json::json!({ "messages": messages }).to_string()
}

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

/// Token ids of a ChatML text made of special tokens and plain text.
fn chatml_ids(parts: &[&str]) -> Vec<u32> {
    parts
        .iter()
        .flat_map(|part| match *part {
            IM_START | IM_END => vec![special_id(part)],
            text => bytes(text),
        })
        .collect()
}

#[test]
fn chatml_mask_covers_everything_before_the_last_answer() {
    let bundle = chatml_bundle(SMOLLM2_TEMPLATE);
    let encoder = Encoder::new(&bundle, true, 2048).unwrap();
    let record = &records(&chat_line(&[("user", "Hi"), ("assistant", "Yo")]))[0];
    let encoded = encoder.encode(record).unwrap();
    let prompt = chatml_ids(&[
        IM_START,
        "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face",
        IM_END,
        "\n",
        IM_START,
        "user\nHi",
        IM_END,
        "\n",
        IM_START,
        "assistant\n",
    ]);
    let answer = chatml_ids(&["Yo", IM_END, "\n"]);
    assert_eq!(encoded.tokens, [prompt.clone(), answer.clone()].concat());
    assert_eq!(encoded.offset, prompt.len());
    assert_eq!(encoded.offset, 99);
    // The trained part, token by token: "Y", "o", <|im_end|>, "\n".
    assert_eq!(&encoded.tokens[encoded.offset..], &[89, 111, 257, 10]);
    assert_eq!(encoded.trained_tokens(), 4);

    // Without mask_prompt every token trains but the first, which is
    // never predicted.
    let encoded = Encoder::new(&bundle, false, 2048)
        .unwrap()
        .encode(record)
        .unwrap();
    assert_eq!(encoded.offset, 0);
    assert_eq!(encoded.tokens.len(), 103);
    assert_eq!(encoded.trained_tokens(), 102);
}

#[test]
fn multi_turn_masks_earlier_answers_and_trailing_turns_train() {
    let bundle = chatml_bundle(CHATML_TEMPLATE);
    let encoder = Encoder::new(&bundle, true, 2048).unwrap();
    let line = chat_line(&[
        ("system", "S"),
        ("user", "A?"),
        ("assistant", "a"),
        ("user", "B?"),
        ("assistant", "bb"),
    ]);
    let encoded = encoder.encode(&records(&line)[0]).unwrap();
    let prompt = chatml_ids(&[
        IM_START,
        "system\nS",
        IM_END,
        "\n",
        IM_START,
        "user\nA?",
        IM_END,
        "\n",
        IM_START,
        "assistant\na",
        IM_END,
        "\n",
        IM_START,
        "user\nB?",
        IM_END,
        "\n",
        IM_START,
        "assistant\n",
    ]);
    assert_eq!(encoded.offset, prompt.len());
    assert_eq!(&encoded.tokens[..encoded.offset], prompt.as_slice());
    assert_eq!(
        &encoded.tokens[encoded.offset..],
        chatml_ids(&["bb", IM_END, "\n"]).as_slice()
    );
}

#[test]
fn llama3_has_one_bos_and_masks_the_header() {
    let bundle = llama3_bundle();
    let encoder = Encoder::new(&bundle, true, 2048).unwrap();
    let encoded = encoder
        .encode(&records(&chat_line(&[("user", "Hi"), ("assistant", "Yo")]))[0])
        .unwrap();
    let bos = special_id("<|begin_of_text|>");
    assert_eq!(encoded.tokens[0], bos);
    assert_eq!(encoded.tokens.iter().filter(|&&t| t == bos).count(), 1);
    let header_end = special_id("<|end_header_id|>");
    let last_header = encoded
        .tokens
        .iter()
        .rposition(|&t| t == header_end)
        .unwrap();
    // "<|end_header_id|>\n\n" is prompt; "Yo<|eot_id|>" is trained.
    assert_eq!(encoded.offset, last_header + 3);
    assert_eq!(
        &encoded.tokens[encoded.offset..],
        &[89, 111, special_id("<|eot_id|>")]
    );
}

#[test]
fn text_and_completions_without_a_template() {
    let bundle = base_bundle();
    let bos = special_id("<s>");
    let eos = special_id("<|im_end|>");
    let encoder = Encoder::new(&bundle, false, 2048).unwrap();
    let lines = records("{\"text\": \"ab\"}\n{\"text\": \"<s>ab<|im_end|>\"}\n");
    for record in &lines {
        let encoded = encoder.encode(record).unwrap();
        assert_eq!(
            encoded.tokens,
            vec![bos, 97, 98, eos],
            "line {}",
            record.line
        );
        assert_eq!(encoded.offset, 0);
    }
    let masked = Encoder::new(&bundle, true, 2048).unwrap();
    let encoded = masked
        .encode(&records("{\"prompt\": \"Q:\", \"completion\": \" A\"}")[0])
        .unwrap();
    assert_eq!(encoded.tokens, vec![bos, 81, 58, 32, 65, eos]);
    assert_eq!(encoded.offset, 3);
    let unmasked = encoder
        .encode(&records("{\"prompt\": \"Q:\", \"completion\": \" A\"}")[0])
        .unwrap();
    assert_eq!((unmasked.tokens.len(), unmasked.offset), (6, 0));
}

#[test]
fn completions_with_a_template_become_a_user_and_an_assistant_turn() {
    let bundle = chatml_bundle(CHATML_TEMPLATE);
    let encoder = Encoder::new(&bundle, true, 2048).unwrap();
    let encoded = encoder
        .encode(&records("{\"prompt\": \"Q\", \"completion\": \"A\"}")[0])
        .unwrap();
    let prompt = chatml_ids(&[IM_START, "user\nQ", IM_END, "\n", IM_START, "assistant\n"]);
    assert_eq!(
        encoded.tokens,
        [prompt.clone(), chatml_ids(&["A", IM_END, "\n"])].concat()
    );
    assert_eq!(encoded.offset, prompt.len());
}

#[test]
fn truncation_is_counted_and_previewed() {
    let bundle = chatml_bundle(CHATML_TEMPLATE);
    let jsonl = [
        chat_line(&[("user", "Hi"), ("assistant", "0123456789")]),
        chat_line(&[
            ("user", "a long question that fills the window"),
            ("assistant", "x"),
        ]),
        chat_line(&[("user", "Q"), ("assistant", "A")]),
    ]
    .join("\n");
    let (_dir, path) = dataset_dir(&[("train.jsonl", &jsonl), ("valid.jsonl", &jsonl)]);
    let cfg = TrainConfig {
        mask_prompt: true,
        max_seq_length: 30,
        batch_size: 2,
        ..TrainConfig::default()
    };
    // (prompt, length): (21, 33), (56, 59), (20, 23); one token per byte
    // and per special token.
    let data = load_dataset(&path, &bundle, &cfg).unwrap();
    let stats = data.report.split(Split::Train).tokens.clone().unwrap();
    assert_eq!(stats.examples, 3);
    assert_eq!((stats.min_length, stats.max_length), (23, 59));
    assert_eq!(stats.truncated_examples, 2);
    assert_eq!(stats.truncated_tokens, (33 - 30) + (59 - 30));
    assert_eq!(stats.untrainable_examples, 1);
    assert_eq!(stats.tokens, 30 + 30 + 23);
    // The second example has no trained token left.
    assert_eq!(stats.trained_tokens, (30 - 21) + (23 - 20));
    assert_eq!(
        stats.histogram,
        Some(LengthHistogram {
            bucket_width: 32,
            counts: vec![1, 2]
        })
    );

    let previews = preview(&path, Split::Train, 2, &bundle, &cfg).unwrap();
    assert_eq!(previews.len(), 2);
    let kinds: Vec<(SegmentKind, &str, usize)> = previews[0]
        .segments
        .iter()
        .map(|s| (s.kind, s.text.as_str(), s.tokens))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                SegmentKind::Masked,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                21
            ),
            (SegmentKind::Trained, "012345678", 9),
            (SegmentKind::Truncated, "9<|im_end|>\n", 3),
        ]
    );
    assert_eq!(
        (
            previews[0].tokens,
            previews[0].trained_tokens,
            previews[0].truncated_tokens
        ),
        (30, 9, 3)
    );
    assert_eq!(previews[1].segments.len(), 2);
    assert_eq!(previews[1].segments[0].kind, SegmentKind::Masked);
    assert_eq!(previews[1].segments[1].kind, SegmentKind::Truncated);
    assert_eq!(previews[1].line, 2);
}

#[test]
fn tools_keep_their_key_order_from_the_file() {
    let bundle = chatml_bundle(TOOLS_TEMPLATE);
    let line = r#"{"messages": [{"role": "user", "content": "W?"}, {"role": "assistant", "content": "ok"}], "tools": [{"zeta": 1, "alpha": "é"}]}"#;
    let (_dir, path) = dataset_dir(&[("train.jsonl", line)]);
    let previews = preview(&path, Split::Train, 1, &bundle, &TrainConfig::default()).unwrap();
    // Without mask_prompt only the first token, never predicted, is masked.
    assert_eq!(previews[0].segments.len(), 2);
    assert_eq!(
        (
            previews[0].segments[0].kind,
            previews[0].segments[0].text.as_str()
        ),
        (SegmentKind::Masked, "<|im_start|>")
    );
    assert!(
        previews[0].segments[1]
            .text
            .contains("<tools>\n{\"zeta\": 1, \"alpha\": \"é\"}\n</tools>"),
        "{}",
        previews[0].segments[1].text
    );
}

#[test]
fn dataset_level_errors_are_reported_once_or_per_line() {
    let chat = chat_line(&[("user", "Hi"), ("assistant", "Yo")]);
    let (_dir, path) = dataset_dir(&[("train.jsonl", &format!("{chat}\n{chat}\n"))]);
    let error = load_dataset(&path, &base_bundle(), &TrainConfig::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the dataset has 1 problem:\n  train.jsonl: chat examples need a chat template and the model's tokenizer has none; use the completions or text format"
    );

    let (_dir, path) = dataset_dir(&[("train.jsonl", "{\"text\": \"a\"}\n")]);
    let cfg = TrainConfig {
        mask_prompt: true,
        ..TrainConfig::default()
    };
    let error = load_dataset(&path, &base_bundle(), &cfg).unwrap_err();
    assert_eq!(
        error.0.problems[0].to_string(),
        "train.jsonl: mask_prompt is on but text examples have no prompt to mask; turn it off or use the chat or completions format"
    );

    let strict = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system prompts') }}{% endif %}{{ m.content }}{% endfor %}";
    let bad = chat_line(&[("system", "S"), ("user", "Hi"), ("assistant", "Yo")]);
    let (_dir, path) = dataset_dir(&[("train.jsonl", &format!("{chat}\n{bad}\n{chat}\n{bad}\n"))]);
    let error = load_dataset(&path, &chatml_bundle(strict), &TrainConfig::default()).unwrap_err();
    let problems: Vec<String> = error.0.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        vec![
            "train.jsonl:2: chat template line 1: the template raised an error: no system prompts",
            "train.jsonl:4: chat template line 1: the template raised an error: no system prompts",
        ]
    );

    let broken = chatml_bundle("{% for m in messages %}");
    let error = load_dataset(&path, &broken, &TrainConfig::default()).unwrap_err();
    assert_eq!(
        error.0.problems[0].to_string(),
        "tokenizer: chat template line 1: syntax error: unexpected end of input, expected end of block"
    );
}

#[test]
fn inspection_reports_everything_and_previews_what_it_can() {
    let strict = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system prompts') }}{% endif %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    let good = chat_line(&[("user", "Hi"), ("assistant", "Yo")]);
    let bad = chat_line(&[("system", "S"), ("user", "Hi"), ("assistant", "Yo")]);
    let (_dir, path) = dataset_dir(&[
        ("train.jsonl", &format!("{bad}\n{good}\n{good}\n")),
        ("valid.jsonl", &good),
    ]);
    let cfg = TrainConfig {
        mask_prompt: true,
        batch_size: 4,
        ..TrainConfig::default()
    };
    let inspection = engine::data::inspect_with_tokenizer(
        &path,
        &FormatKeys::default(),
        &chatml_bundle(strict),
        &cfg,
        Split::Train,
        2,
    );
    let problems: Vec<String> = inspection
        .report
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        vec![
            "train.jsonl:1: chat template line 1: the template raised an error: no system prompts"
        ]
    );
    // The first two lines were asked for; line 1 failed, line 2 is shown.
    assert_eq!(inspection.previews.len(), 1);
    assert_eq!(inspection.previews[0].line, 2);
    let texts: Vec<(SegmentKind, &str)> = inspection.previews[0]
        .segments
        .iter()
        .map(|s| (s.kind, s.text.as_str()))
        .collect();
    assert_eq!(
        texts,
        vec![
            (SegmentKind::Masked, "<user>Hi<assistant>"),
            (SegmentKind::Trained, "Yo")
        ]
    );
    let train = inspection.report.split(Split::Train);
    assert_eq!((train.examples, train.batches), (3, 1));
    assert_eq!(train.tokens.as_ref().unwrap().examples, 2);
    assert_eq!(train.tokens.as_ref().unwrap().trained_tokens, 4);
    // "<user>Hi<assistant>Yo": 21 bytes, one token each.
    assert_eq!(
        inspection
            .report
            .split(Split::Valid)
            .tokens
            .as_ref()
            .unwrap()
            .tokens,
        21
    );
}
