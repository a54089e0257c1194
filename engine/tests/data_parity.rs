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
