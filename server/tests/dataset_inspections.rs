//! A dataset tokenized once: the stored inspection is what a fresh one
//! gives, is used again for the same files and settings, and is computed
//! again when a file changes or a setting that changes the figures does.

mod common;

use engine::config::TrainConfig;
use engine::data::Split;
use server::datasets::TokenizerCache;
use server::inspections::inspect;

#[test]
fn an_inspection_is_stored_reused_and_renewed_when_the_files_change() {
    let setup = common::tiny_setup();
    let (_, store) = server::setup::prepare(&setup.data_dir, None).unwrap();
    let model = store.model_by_name("tiny").unwrap().unwrap();
    let tokenizers = TokenizerCache::default();
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

    let first = inspect(&store, &tokenizers, &model, &folder, &cfg, 2).unwrap();
    assert_eq!(examples(&first), 4);
    assert_eq!(first.previews.len(), 2);
    let stored = |cfg: &TrainConfig| inspect(&store, &tokenizers, &model, &folder, cfg, 2).unwrap();
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
