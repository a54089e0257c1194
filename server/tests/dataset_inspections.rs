//! A dataset tokenized once: the stored inspection is what a fresh one
//! gives, is used again for the same files and settings, and is computed
//! again when a file changes or a setting that changes the figures does.

mod common;

use engine::config::TrainConfig;
use engine::data::Split;
use server::datasets::TokenizerCache;
use server::inspections::{Inspected, Inspections};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn an_inspection_is_stored_reused_and_renewed_when_the_files_change() {
    let setup = common::tiny_setup();
    let (_, store) = server::setup::prepare(&setup.data_dir, None).unwrap();
    let model = store.model_by_name("tiny").unwrap().unwrap();
    let tokenizers = TokenizerCache::default();
    let inspections = Inspections::new(Arc::new(store));
    let folder = setup.temp.path().join("notes");
    std::fs::create_dir_all(&folder).unwrap();
    let line = |text: &str| format!("{{\"prompt\": \"{text}?\", \"completion\": \"{text}!\"}}\n");
    let train: String = ["one", "two", "three", "four"].map(line).concat();
    std::fs::write(folder.join("train.jsonl"), &train).unwrap();
    std::fs::write(folder.join("valid.jsonl"), line("five")).unwrap();
    let cfg = TrainConfig::default();
    let examples = |inspection: &engine::data::Inspection| {
        inspection
            .report
            .split(Split::Train)
            .tokens
            .clone()
            .unwrap()
            .examples
    };

    let first = inspections
        .inspect(&tokenizers, &model, &folder, &cfg, 2)
        .unwrap();
    assert_eq!(examples(&first), 4);
    assert_eq!(first.previews.len(), 2);
    let stored = |cfg: &TrainConfig| {
        inspections
            .inspect(&tokenizers, &model, &folder, cfg, 2)
            .unwrap()
    };
    // Stored: the same figures come back, and they are a fresh computation's.
    let fresh = engine::data::inspect_with_tokenizer(
        &folder,
        &engine::data::FormatKeys::default(),
        &tokenizers.get(&model).unwrap(),
        &cfg,
        Split::Train,
        2,
    );
    assert_eq!(stored(&cfg), fresh);

    // What is stored is what is read: a stored figure changed by hand
    // comes back changed, which only a read of the store can give.
    let connection = rusqlite::Connection::open(setup.data_dir.join("loralab.sqlite3")).unwrap();
    let rows: i64 = connection
        .query_row("SELECT count(*) FROM dataset_inspections", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(rows, 1);
    connection
        .execute(
            "UPDATE dataset_inspections
                SET inspection_json = json_set(inspection_json, '$.previews', json('[]'))",
            [],
        )
        .unwrap();
    assert!(stored(&cfg).previews.is_empty(), "read from the store");

    // A setting that changes the figures is its own entry.
    let short = TrainConfig {
        max_seq_length: 4,
        ..TrainConfig::default()
    };
    let truncated = stored(&short);
    assert_eq!(truncated.previews.len(), 2, "computed, not the edited row");
    assert!(
        truncated
            .report
            .split(Split::Train)
            .tokens
            .clone()
            .unwrap()
            .truncated_examples
            > 0
    );
    // One that does not (the learning rate) reuses the stored one.
    let other_rate = TrainConfig {
        learning_rate: 0.5,
        ..TrainConfig::default()
    };
    assert!(stored(&other_rate).previews.is_empty());

    // New files: computed again.
    std::fs::write(
        folder.join("train.jsonl"),
        format!("{train}{}", line("six")),
    )
    .unwrap();
    let renewed = stored(&cfg);
    assert_eq!(examples(&renewed), 5);
    assert_eq!(renewed.previews.len(), 2);
}

#[test]
fn a_first_inspection_reports_its_progress_and_later_asks_share_it() {
    let setup = common::tiny_setup();
    let (_, store) = server::setup::prepare(&setup.data_dir, None).unwrap();
    let model = store.model_by_name("tiny").unwrap().unwrap();
    let tokenizers = TokenizerCache::default();
    let inspections = Inspections::new(Arc::new(store));
    let folder = setup.temp.path().join("many");
    std::fs::create_dir_all(&folder).unwrap();
    const EXAMPLES: usize = 20_000;
    let train: String = (0..EXAMPLES)
        .map(|i| format!("{{\"prompt\": \"question {i}?\", \"completion\": \"answer {i}!\"}}\n"))
        .collect();
    std::fs::write(folder.join("train.jsonl"), train).unwrap();
    let cfg = TrainConfig::default();
    let ask = |patience| {
        inspections
            .inspect_or_progress(&tokenizers, &model, &folder, &cfg, 2, patience)
            .unwrap()
    };

    // No patience: the computation starts and the answer is how far it is.
    let Inspected::Running(first) = ask(Duration::ZERO) else {
        panic!("20,000 examples are not tokenized in no time");
    };
    assert!(first.encoded < EXAMPLES, "{first:?}");
    let mut seen = vec![first];
    let inspection = loop {
        match ask(Duration::from_millis(20)) {
            Inspected::Running(progress) => seen.push(progress),
            Inspected::Ready(inspection) => break inspection,
        }
    };
    let later: Vec<_> = seen.iter().filter(|p| p.total > 0).collect();
    assert!(
        later.iter().all(|p| p.total == EXAMPLES),
        "the total is every example read: {later:?}"
    );
    assert!(
        seen.windows(2)
            .all(|pair| pair[0].encoded <= pair[1].encoded),
        "one computation, moving forward: {seen:?}"
    );
    assert!(
        later.iter().any(|p| p.encoded > 0 && p.encoded < EXAMPLES),
        "a count between none and all was reported: {seen:?}"
    );
    let fresh = engine::data::inspect_with_tokenizer(
        &folder,
        &engine::data::FormatKeys::default(),
        &tokenizers.get(&model).unwrap(),
        &cfg,
        Split::Train,
        2,
    );
    assert_eq!(inspection, fresh);
    // Stored: the next ask answers without waiting.
    assert_eq!(ask(Duration::ZERO), Inspected::Ready(fresh));
}
