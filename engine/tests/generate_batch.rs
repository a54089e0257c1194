//! Batched generation on a tiny random model: a batch of prompts of
//! different lengths, each row with its own adapter (none, LoRA or DoRA),
//! gives every row the tokens that generating it alone with that adapter
//! gives, ending on its own stop token or limit.

mod common;

use std::path::Path;

use common::*;
use engine::config::{ComputeDtype, LoraParameters};
use engine::generate::{
    BatchGenerator, BatchRow, FinishReason, GenerateParams, Generator, SamplingParams,
};
use engine::lora::{self, AdapterSettings};
use engine::models::{load_hf_folder, Model};
use mlx_rs::{random, Array};

/// Writes an mlx-lm adapter folder with random (non-zero) weights on the
/// top `layers` blocks; DoRA magnitudes are the base's row norms, scaled.
fn write_adapter(model: &Model, dir: &Path, seed: u64, layers: i64, rank: usize, dora: bool) {
    let settings = AdapterSettings {
        dora,
        ..AdapterSettings::from_parameters(
            layers,
            &LoraParameters {
                rank,
                scale: 8.0,
                ..LoraParameters::default()
            },
        )
    };
    let mut probe = model.clone();
    lora::attach(&mut probe, &settings, 0).unwrap();
    let mut key = random::key(seed).unwrap();
    let weights: Vec<(String, Array)> = lora::adapter_names(&probe)
        .into_iter()
        .zip(probe.lora_params())
        .map(|(name, current)| {
            let (next, sub) = random::split(&key, 2).unwrap();
            key = next;
            let value = if name.ends_with(".m") {
                let noise = random::uniform::<f32, f32>(0.5, 1.5, current.shape(), &sub).unwrap();
                current.multiply(noise).unwrap()
            } else {
                random::normal::<f32>(current.shape(), None, Some(0.08), &sub).unwrap()
            };
            (name, value)
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    Array::save_safetensors(
        weights.iter().map(|(k, v)| (k.as_str(), v)),
        None,
        dir.join(lora::ADAPTER_WEIGHTS_FILE),
    )
    .unwrap();
    let kind = if dora { "dora" } else { "lora" };
    std::fs::write(
        dir.join(lora::ADAPTER_CONFIG_FILE),
        format!(
            r#"{{"fine_tune_type": "{kind}", "num_layers": {layers}, "lora_parameters": {{"rank": {rank}, "scale": 8.0, "dropout": 0.0}}}}"#
        ),
    )
    .unwrap();
}

fn with_adapter(base: &Model, dir: &Path) -> Model {
    let mut model = base.clone();
    lora::load_adapters(&mut model, dir).unwrap();
    model
}

fn alone(model: &Model, prompt: &[u32], stop: &[u32], params: &GenerateParams) -> Vec<u32> {
    Generator::new(model, prompt, stop, params)
        .unwrap()
        .collect::<anyhow::Result<Vec<u32>>>()
        .unwrap()
}

/// Runs the batch to its end: each row's tokens, in order, and its finish.
fn batched(
    model: &Model,
    rows: &[BatchRow],
    stop: &[u32],
    params: &GenerateParams,
) -> Vec<(Vec<u32>, FinishReason)> {
    let mut generator = BatchGenerator::new(model, rows, stop, params).unwrap();
    let mut tokens = vec![Vec::new(); rows.len()];
    let mut ended = vec![false; rows.len()];
    while let Some(step) = generator.step().unwrap() {
        for (row, token) in step.tokens {
            assert!(!ended[row], "row {row} got a token after it ended");
            tokens[row].push(token);
        }
        for row in step.finished {
            ended[row] = true;
        }
    }
    assert!(ended.iter().all(|&e| e), "every row ends");
    assert_eq!(generator.live(), 0);
    tokens
        .into_iter()
        .enumerate()
        .map(|(row, t)| {
            let stats = generator.stats(row);
            assert_eq!(stats.generated_tokens, t.len());
            assert_eq!(stats.prompt_tokens, rows[row].prompt.len());
            (t, generator.finish_reason(row).unwrap())
        })
        .collect()
}

fn prompt(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| 1 + (i * 37 + salt * 11) % 250)
        .collect()
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling: SamplingParams::default(),
    }
}

#[test]
fn rows_of_mixed_lengths_and_adapters_equal_each_row_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let base = load_hf_folder(&model_dir, ComputeDtype::Float32).unwrap();
    let folders = [
        (dir.path().join("lora-a"), 1, 2, 4, false),
        (dir.path().join("lora-b"), 2, -1, 8, false),
        (dir.path().join("dora"), 3, 3, 4, true),
    ];
    for (folder, seed, layers, rank, dora) in &folders {
        write_adapter(&base, folder, *seed, *layers, *rank, *dora);
    }
    let adapted: Vec<Model> = folders
        .iter()
        .map(|(folder, ..)| with_adapter(&base, folder))
        .collect();
    let stacked = base.with_stacked_adapters(&adapted).unwrap();
    assert_eq!(stacked.stacked_adapters(), 3);

    // Base, both LoRAs and the DoRA, interleaved, prompts of 1 to 40 tokens.
    let plan: [(usize, Option<usize>); 8] = [
        (7, None),
        (23, Some(0)),
        (1, Some(1)),
        (40, Some(2)),
        (12, None),
        (12, Some(1)),
        (3, Some(2)),
        (31, Some(0)),
    ];
    let rows: Vec<BatchRow> = plan
        .iter()
        .enumerate()
        .map(|(i, &(len, adapter))| BatchRow {
            prompt: prompt(len, i as u32),
            adapter,
        })
        .collect();
    let params = greedy(20);
    let single = |row: &BatchRow, stop: &[u32], params: &GenerateParams| {
        let model = row.adapter.map_or(&base, |i| &adapted[i]);
        alone(model, &row.prompt, stop, params)
    };
    let want: Vec<Vec<u32>> = rows.iter().map(|r| single(r, &[], &params)).collect();
    // The adapters change what the model says (or the test proves nothing).
    assert_ne!(
        want[4], want[5],
        "the LoRA on the same prompt changed nothing"
    );
    let got = batched(&stacked, &rows, &[], &params);
    for (i, ((tokens, finish), want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(tokens, want, "row {i} ({:?})", plan[i]);
        assert_eq!(*finish, FinishReason::Length);
    }

    // Stop tokens end rows at different steps: a token each row's free
    // output reaches at a different point.
    let stop = [want[0][5], want[3][11]];
    let want: Vec<Vec<u32>> = rows.iter().map(|r| single(r, &stop, &params)).collect();
    let lengths: Vec<usize> = want.iter().map(Vec::len).collect();
    assert!(
        lengths.iter().any(|&n| n < 20) && lengths.contains(&20),
        "some rows stop early, some run to the limit: {lengths:?}"
    );
    let got = batched(&stacked, &rows, &stop, &params);
    for (i, ((tokens, finish), want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(tokens, want, "row {i} with stop tokens");
        let expected = if want.len() < 20 {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        assert_eq!(*finish, expected, "row {i}");
    }
}

#[test]
fn sampled_rows_draw_what_they_draw_alone() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), &Tiny::llama());
    let base = load_hf_folder(dir.path(), ComputeDtype::Float32).unwrap();
    let params = GenerateParams {
        max_tokens: 12,
        sampling: SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            top_k: 40,
            repetition_penalty: 1.1,
            seed: 5,
            ..SamplingParams::default()
        },
    };
    let rows: Vec<BatchRow> = [4usize, 17, 9]
        .iter()
        .enumerate()
        .map(|(i, &len)| BatchRow {
            prompt: prompt(len, 3 + i as u32),
            adapter: None,
        })
        .collect();
    let stacked = base.with_stacked_adapters(&[]).unwrap();
    let got = batched(&stacked, &rows, &[], &params);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(got[i].0, alone(&base, &row.prompt, &[], &params), "row {i}");
    }
}

#[test]
fn bad_rows_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), &Tiny::llama());
    let base = load_hf_folder(dir.path(), ComputeDtype::Float32).unwrap();
    let row = |prompt: Vec<u32>, adapter| BatchRow { prompt, adapter };
    let error = |rows: &[BatchRow]| {
        BatchGenerator::new(&base, rows, &[], &greedy(4))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        error(&[row(vec![1, 2], None), row(vec![], None)]),
        "row 1: the prompt has no tokens"
    );
    assert_eq!(
        error(&[row(vec![1, 999], None)]),
        "row 0: prompt token 1 is 999, outside the model's vocabulary of 256"
    );
    assert_eq!(
        error(&[row(vec![1], Some(0))]),
        "row 0 asks for adapter 0, but 0 are stacked on the model"
    );
    assert_eq!(error(&[]), "a batch needs at least one row");
}

/// 150 rows: the prefill runs in chunks of positions (4096 / 150 = 27 per
/// row, against prompts of up to 40), each chunk extending the cache.
#[test]
fn a_batch_too_wide_for_one_prefill_chunk_decodes_the_same() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), &Tiny::llama());
    let base = load_hf_folder(dir.path(), ComputeDtype::Float32).unwrap();
    let rows: Vec<BatchRow> = (0..150)
        .map(|i| BatchRow {
            prompt: prompt(1 + (i * 7) % 40, i as u32),
            adapter: None,
        })
        .collect();
    let params = greedy(3);
    let stacked = base.with_stacked_adapters(&[]).unwrap();
    let got = batched(&stacked, &rows, &[], &params);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(got[i].0, alone(&base, &row.prompt, &[], &params), "row {i}");
    }
}

/// The shipped SmolLM2 (dequantized to f32): base and two LoRAs on chat
/// prompts of different lengths, batched, equal each row alone.
#[test]
fn smollm2_rows_equal_each_row_alone() {
    let mut gguf = engine::gguf::load_gguf_model(&smollm2_path()).unwrap();
    gguf.dequantize_weights().unwrap();
    let base =
        engine::models::build_model(&gguf.config, gguf.weights, ComputeDtype::Float32).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let folders = [dir.path().join("one"), dir.path().join("two")];
    for (seed, folder) in folders.iter().enumerate() {
        write_adapter(&base, folder, 10 + seed as u64, 8, 8, false);
    }
    let adapted: Vec<Model> = folders.iter().map(|f| with_adapter(&base, f)).collect();
    let stacked = base.with_stacked_adapters(&adapted).unwrap();
    let questions = [
        "Hi!",
        "What is the capital of France, and what is it famous for?",
        "Name three colours.",
    ];
    let rows: Vec<BatchRow> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let messages = [engine::generate::Message {
                role: "user".into(),
                content: (*q).into(),
            }];
            BatchRow {
                prompt: engine::generate::chat_prompt(&gguf.tokenizer, &messages).unwrap(),
                adapter: [None, Some(0), Some(1)][i],
            }
        })
        .collect();
    let stop = gguf.tokenizer.eos_token_ids.clone();
    let params = greedy(16);
    let got = batched(&stacked, &rows, &stop, &params);
    for (i, row) in rows.iter().enumerate() {
        let model = row.adapter.map_or(&base, |a| &adapted[a]);
        assert_eq!(
            got[i].0,
            alone(model, &row.prompt, &stop, &params),
            "row {i}"
        );
    }
}
