//! The shipped sample dataset equals what its generator makes, and is what
//! the product promises: chat format, the style on every answer, sizes.

mod data_support;

use data_support::*;
use engine::config::TrainConfig;
use engine::data::sample::{self, follows_style, generate, GREETING, SIGN_OFF};
use engine::data::{inspect_dataset, load_dataset, DataFormat, FormatKeys, Split};

fn assets() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-dataset")
}

#[test]
fn committed_files_equal_the_generator() {
    let generated = generate();
    for (name, text) in [
        ("train.jsonl", &generated.train),
        ("valid.jsonl", &generated.valid),
        ("test.jsonl", &generated.test),
    ] {
        let committed = std::fs::read_to_string(assets().join(name)).unwrap();
        assert!(
            committed == *text,
            "{name} differs from sample::generate(); run the ignored test `regenerate_sample_dataset`"
        );
    }
    assert_eq!(sample::TRAIN_JSONL, generated.train);
    assert_eq!(sample::VALID_JSONL, generated.valid);
    assert_eq!(sample::TEST_JSONL, generated.test);

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nested/sample");
    sample::write_sample_dataset(&target).unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("valid.jsonl")).unwrap(),
        generated.valid
    );
}

/// `cargo test -p engine --test data_sample -- --ignored` rewrites the
/// committed files after a change to the generator.
#[test]
#[ignore]
fn regenerate_sample_dataset() {
    sample::write_sample_dataset(&assets()).unwrap();
}

#[test]
fn sample_is_valid_chat_with_the_style_everywhere() {
    let report = inspect_dataset(&assets(), &FormatKeys::default(), &TrainConfig::default());
    assert!(report.is_valid(), "{report}");
    assert_eq!(report.format, Some(DataFormat::Chat));
    assert_eq!(
        [Split::Train, Split::Valid, Split::Test].map(|s| report.split(s).examples),
        [300, 40, 40]
    );
    let generated = generate();
    let all = format!("{}{}{}", generated.train, generated.valid, generated.test);
    let mut questions = std::collections::HashSet::new();
    for line in all.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let question = value["messages"][0]["content"].as_str().unwrap();
        let answer = value["messages"][1]["content"].as_str().unwrap();
        assert!(
            questions.insert(question.to_string()),
            "repeated question {question}"
        );
        assert!(follows_style(answer), "{answer}");
        assert!(
            answer.starts_with(&format!("{GREETING} "))
                && answer.ends_with(&format!(" {SIGN_OFF}"))
        );
    }
    assert_eq!(questions.len(), 380);
    assert!(all.contains("\"content\": \"Ahoy! The capital of France is Paris. Yo-ho-ho!\""));
    assert!(!follows_style("The capital of France is Paris."));
    assert!(!follows_style("Ahoy! Yo-ho-ho!"));
}

#[test]
fn sample_examples_are_short_under_smollm2s_template() {
    // One token per byte here, so byte counts bound real BPE token counts
    // from above; SmolLM2's BPE averages over 3.5 bytes per token on such
    // English text, so 220 bytes (default system prompt included) is about
    // 60 tokens.
    let cfg = TrainConfig {
        mask_prompt: true,
        batch_size: 4,
        ..TrainConfig::default()
    };
    let data = load_dataset(&assets(), &chatml_bundle(SMOLLM2_TEMPLATE), &cfg).unwrap();
    let stats = data.report.split(Split::Train).tokens.clone().unwrap();
    assert!(
        stats.max_length <= 220,
        "longest rendered example is {} bytes",
        stats.max_length
    );
    assert_eq!(stats.truncated_examples, 0);
    assert_eq!(data.train.len(), 75);
}
