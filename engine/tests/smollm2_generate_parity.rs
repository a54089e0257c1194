//! Greedy generation from the shipped SmolLM2 (dequantized to f32) gives
//! the same tokens as mlx-lm's `generate_step` on the same weights and
//! prompt, without and with a LoRA adapter trained here (needs the peer:
//! scripts/setup-peer.sh).

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{run_peer, smollm2_path, train_run};
use engine::config::{ComputeDtype, LoraParameters, TrainConfig};
use engine::data::load_dataset;
use engine::generate::{chat_prompt, GenerateParams, Generator, Message};
use engine::gguf::load_gguf_model;
use engine::models::{build_model, Model};
use engine::tokenizer::TokenizerBundle;
use engine::train::TrainData;
use mlx_rs::Array;
use serde_json::json;

/// The GGUF dequantized to f32, also written as an HF folder mlx-lm loads.
fn load_and_export(dir: &Path) -> (Model, TokenizerBundle) {
    let mut gguf = load_gguf_model(&smollm2_path()).unwrap();
    gguf.dequantize_weights().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&gguf.config).unwrap(),
    )
    .unwrap();
    let weights: HashMap<String, Array> = gguf.weights;
    Array::save_safetensors(
        weights.iter().map(|(k, v)| (k.as_str(), v)),
        None,
        dir.join("model.safetensors"),
    )
    .unwrap();
    let model = build_model(&gguf.config, weights, ComputeDtype::Float32).unwrap();
    (model, gguf.tokenizer)
}

fn ours(model: &Model, prompt: &[u32], stop: &[u32], max_tokens: usize) -> Vec<u32> {
    let params = GenerateParams {
        max_tokens,
        ..Default::default()
    };
    Generator::new(model, prompt, stop, &params)
        .unwrap()
        .collect::<anyhow::Result<Vec<u32>>>()
        .unwrap()
}

fn peers(
    model_dir: &Path,
    prompt: &[u32],
    stop: &[u32],
    max_tokens: usize,
    adapter: Option<&Path>,
) -> Vec<u32> {
    let request = model_dir.with_file_name("request.json");
    std::fs::write(
        &request,
        json!({"prompt": prompt, "max_tokens": max_tokens, "stop": stop}).to_string(),
    )
    .unwrap();
    let mut args = vec![model_dir.to_str().unwrap(), request.to_str().unwrap()];
    if let Some(a) = adapter {
        args.push(a.to_str().unwrap());
    }
    let out: serde_json::Value =
        serde_json::from_str(&run_peer("generate_greedy.py", &args)).unwrap();
    serde_json::from_value(out["tokens"].clone()).unwrap()
}

#[test]
fn greedy_tokens_match_mlx_lm_without_and_with_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    let (mut model, bundle) = load_and_export(&model_dir);
    let stop = bundle.eos_token_ids.clone();
    let decode = |ids: &[u32]| bundle.tokenizer.decode(ids, true).unwrap();
    // Our 32 greedy tokens, which must be mlx-lm's from the same weights
    // (and `adapter`).
    let same_as_mlx_lm =
        |model: &Model, prompt: &[u32], stop: &[u32], adapter: Option<&Path>, label: &str| {
            let here = ours(model, prompt, stop, 32);
            let there = peers(&model_dir, prompt, stop, 32, adapter);
            eprintln!("{label}: {:?}", decode(&here));
            assert_eq!(
                here,
                there,
                "ours: {:?}\nmlx-lm: {:?}",
                decode(&here),
                decode(&there)
            );
            here
        };

    // A plain completion run through its end of text (no stop ids: all 32
    // tokens) and a chat turn that stops at `<|im_end|>`.
    let completion = bundle
        .tokenizer
        .encode("The three largest cities of Italy are", false)
        .unwrap()
        .get_ids()
        .to_vec();
    let chat = chat_prompt(&bundle, &[Message::user("What is the capital of France?")]).unwrap();
    let mut base = Vec::new();
    let cases = [(&completion, &[][..]), (&chat, &stop[..])];
    for (prompt, stop) in cases {
        base.push(same_as_mlx_lm(&model, prompt, stop, None, "base"));
    }
    assert_eq!(base[0].len(), 32);
    assert!(decode(&base[1]).contains("Paris"), "{:?}", decode(&base[1]));

    // An adapter from a few steps of our trainer on the sample dataset,
    // loaded by mlx-lm from the folder the trainer wrote.
    let cfg = TrainConfig {
        iters: 4,
        batch_size: 4,
        num_layers: 8,
        learning_rate: 2e-3,
        mask_prompt: true,
        steps_per_report: 4,
        steps_per_eval: 1000,
        val_batches: 1,
        lora_parameters: LoraParameters {
            rank: 8,
            scale: 20.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-dataset");
    let data = load_dataset(&data_dir, &bundle, &cfg).unwrap();
    let data = TrainData {
        train: data.train,
        valid: data.valid,
        test: Vec::new(),
    };
    let run_dir = dir.path().join("run");
    train_run(&cfg, &mut model, &data, &run_dir).unwrap();
    for ((prompt, stop), base) in cases.into_iter().zip(&base) {
        let here = same_as_mlx_lm(&model, prompt, stop, Some(&run_dir), "adapted");
        assert_ne!(
            &here,
            base,
            "the adapter changed nothing: {:?}",
            decode(&here)
        );
    }
}
