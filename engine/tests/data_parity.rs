//! Parity with mlx-lm: the tokens, prompt offsets and batches our pipeline
//! makes equal what mlx-lm 0.32.2's own `datasets.py` and
//! `iterate_batches` make from the same lines with the same tokenizer.
//! data_fixtures/parity_expected.json is mlx-lm's output
//! (data_fixtures/mlx_lm_parity.py).

mod data_support;

use data_support::*;
use engine::config::TrainConfig;
use engine::data::format::read_jsonl_bytes;
use engine::data::{batching, Encoder, FormatKeys};
use engine::tokenizer::TokenizerBundle;
use serde_json::Value;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data_fixtures")
}

fn read(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

/// Writes the byte tokenizer for the Python side to load.
#[test]
#[ignore]
fn write_byte_tokenizer_fixture() {
    byte_tokenizer()
        .save(fixtures().join("byte_tokenizer.json"), true)
        .unwrap();
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokens_offsets_and_batches_match_mlx_lm() {
    let tokenizer =
        tokenizers::Tokenizer::from_file(fixtures().join("byte_tokenizer.json")).unwrap();
    let cases = read("parity_cases.json");
    let expected = read("parity_expected.json");
    // The lines again, parsed keeping key order (serde_json's map sorts
    // keys, and tool schemas print in file order).
    let ordered: minijinja::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("parity_cases.json")).unwrap(),
    )
    .unwrap();
    let mut compared = 0;
    for (index, (case, expected)) in cases
        .as_array()
        .unwrap()
        .iter()
        .zip(expected.as_array().unwrap())
        .enumerate()
    {
        let name = case["name"].as_str().unwrap();
        assert_eq!(expected["name"], name);
        let bundle = TokenizerBundle {
            tokenizer: tokenizer.clone(),
            chat_template: case["template"].as_str().map(String::from),
            bos_token: case["bos_token"].as_str().map(String::from),
            eos_token: case["eos_token"].as_str().map(String::from),
            eos_token_ids: vec![],
            add_bos_token: case["add_bos_token"].as_bool().unwrap_or(false),
        };
        let mask_prompt = case["mask_prompt"].as_bool().unwrap();
        let lines = ordered
            .get_item_by_index(index)
            .unwrap()
            .get_attr("lines")
            .unwrap();
        let jsonl: String = lines
            .try_iter()
            .unwrap()
            .map(|line| format!("{}\n", serde_json::to_string(&line).unwrap()))
            .collect();
        let mut problems = Vec::new();
        let records = read_jsonl_bytes(
            jsonl.as_bytes(),
            "train.jsonl",
            &FormatKeys::default(),
            &mut problems,
        )
        .records;
        assert_eq!(problems, vec![], "case {name}");
        let encoder = Encoder::new(&bundle, mask_prompt, 2048).unwrap();
        let encoded: Vec<_> = records.iter().map(|r| encoder.encode(r).unwrap()).collect();
        for (i, (ours, theirs)) in encoded
            .iter()
            .zip(expected["examples"].as_array().unwrap())
            .enumerate()
        {
            assert_eq!(
                ours.tokens,
                ids(&theirs["tokens"]),
                "case {name}, example {i}: tokens"
            );
            assert_eq!(
                ours.offset as u64,
                theirs["offset"].as_u64().unwrap(),
                "case {name}, example {i}: offset"
            );
            compared += 1;
        }
        // mlx-lm keeps only full batches; ours adds the remainder as a
        // smaller last batch, which has no counterpart there.
        let cfg = TrainConfig::default();
        let batches: Vec<_> = batching::make_batches(&encoded, 2, cfg.max_seq_length)
            .into_iter()
            .filter(|b| b.rows == 2)
            .collect();
        let theirs = expected["batches"].as_array().unwrap();
        assert_eq!(batches.len(), theirs.len(), "case {name}: batches");
        for (ours, theirs) in batches.iter().zip(theirs) {
            let rows: Vec<Vec<u32>> = theirs["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(ids)
                .collect();
            assert_eq!(ours.width, rows[0].len(), "case {name}: width");
            assert_eq!(ours.tokens, rows.concat(), "case {name}: batch tokens");
            assert_eq!(
                ours.lengths,
                theirs["lengths"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                ours.offsets,
                theirs["offsets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect::<Vec<_>>()
            );
        }
    }
    assert_eq!(compared, 5 + 5 + 5 + 1 + 3 + 3 + 3);
}

/// The sample dataset with SmolLM2's real BPE (merges, digits split one by
/// one): our tokens and offsets equal mlx-lm's. Needs the folder that
/// data_fixtures/mlx_lm_parity_smollm2.py writes, named by
/// `LORALAB_PARITY_DIR` (the 3.5 MB tokenizer is not committed).
#[test]
#[ignore]
fn sample_dataset_matches_mlx_lm_with_smollm2() {
    let dir = std::path::PathBuf::from(
        std::env::var("LORALAB_PARITY_DIR")
            .expect("set LORALAB_PARITY_DIR to the folder mlx_lm_parity_smollm2.py wrote"),
    );
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let bundle = TokenizerBundle {
        tokenizer,
        chat_template: expected["chat_template"].as_str().map(String::from),
        bos_token: Some("<|im_start|>".into()),
        eos_token: Some("<|im_end|>".into()),
        eos_token_ids: vec![2],
        add_bos_token: false,
    };
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-dataset");
    let cfg = TrainConfig {
        mask_prompt: true,
        ..TrainConfig::default()
    };
    let encoder = Encoder::new(&bundle, true, cfg.max_seq_length).unwrap();
    let mut compared = 0;
    for split in ["train", "valid", "test"] {
        let mut problems = Vec::new();
        let records = engine::data::format::read_jsonl(
            &assets.join(format!("{split}.jsonl")),
            split,
            &FormatKeys::default(),
            &mut problems,
        )
        .records;
        for (record, theirs) in records
            .iter()
            .zip(expected["splits"][split].as_array().unwrap())
        {
            let ours = encoder.encode(record).unwrap();
            assert_eq!(
                ours.tokens,
                ids(&theirs["tokens"]),
                "{split}:{}",
                record.line
            );
            assert_eq!(
                ours.offset as u64,
                theirs["offset"].as_u64().unwrap(),
                "{split}:{}",
                record.line
            );
            assert!(
                ours.tokens.len() <= 80,
                "{split}:{} has {} tokens",
                record.line,
                ours.tokens.len()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 380);
}
