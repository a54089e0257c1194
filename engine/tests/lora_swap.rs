//! Swapping adapters on one loaded base: after each swap the model computes
//! exactly what a freshly loaded base with that adapter computes; swapping
//! to none gives the base back; a bad adapter leaves the bare base.

mod common;

use std::path::Path;

use common::*;
use engine::config::{ComputeDtype, LoraParameters};
use engine::lora::{self, AdapterSettings};
use engine::models::{load_hf_folder, Model};
use mlx_rs::{random, Array};

/// Writes an mlx-lm adapter folder with random (non-zero) A and B.
fn write_adapter(model: &Model, dir: &Path, seed: u64) {
    let settings = AdapterSettings::from_parameters(
        2,
        &LoraParameters {
            rank: 4,
            scale: 10.0,
            ..LoraParameters::default()
        },
    );
    let mut probe = model.clone();
    lora::attach(&mut probe, &settings, 0).unwrap();
    let names = lora::adapter_names(&probe);
    let mut key = random::key(seed).unwrap();
    let weights: Vec<(String, Array)> = names
        .into_iter()
        .zip(probe.lora_params())
        .map(|(name, current)| {
            let (next, sub) = random::split(&key, 2).unwrap();
            key = next;
            let value = random::normal::<f32>(current.shape(), None, Some(0.05), &sub).unwrap();
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
    std::fs::write(
        dir.join(lora::ADAPTER_CONFIG_FILE),
        r#"{"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": {"rank": 4, "scale": 10.0, "dropout": 0.0}}"#,
    )
    .unwrap();
}

fn logits(model: &Model) -> Vec<f32> {
    let tokens = Array::from_slice(&[3u32, 17, 42, 9, 200, 5], &[1, 6]);
    let out = model.forward(&tokens).unwrap();
    out.as_dtype(mlx_rs::Dtype::Float32)
        .unwrap()
        .as_slice::<f32>()
        .to_vec()
}

fn fresh(dir: &Path, adapter: Option<&Path>) -> Vec<f32> {
    let mut model = load_hf_folder(dir, ComputeDtype::Float32).unwrap();
    if let Some(adapter) = adapter {
        lora::load_adapters(&mut model, adapter).unwrap();
    }
    logits(&model)
}

#[test]
fn swapping_adapters_equals_loading_each_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let mut model = load_hf_folder(&model_dir, ComputeDtype::Float32).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_adapter(&model, &a, 1);
    write_adapter(&model, &b, 2);
    let base = logits(&model);

    lora::swap_adapters(&mut model, Some(&a)).unwrap();
    let with_a = logits(&model);
    assert_eq!(with_a, fresh(&model_dir, Some(&a)));
    assert!(max_diff(&with_a, &base) > 1e-3, "adapter A changed nothing");

    lora::swap_adapters(&mut model, Some(&b)).unwrap();
    let with_b = logits(&model);
    assert_eq!(with_b, fresh(&model_dir, Some(&b)));
    assert!(max_diff(&with_b, &with_a) > 1e-3);

    lora::swap_adapters(&mut model, None).unwrap();
    assert_eq!(logits(&model), base);
    assert_eq!(lora::trainable_parameters(&model), 0);

    lora::swap_adapters(&mut model, Some(&a)).unwrap();
    assert_eq!(logits(&model), with_a);

    // A folder whose weights do not fit: an error naming the file, and the
    // bare base afterwards rather than a half-swapped model.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        a.join(lora::ADAPTER_WEIGHTS_FILE),
        bad.join(lora::ADAPTER_WEIGHTS_FILE),
    )
    .unwrap();
    std::fs::write(
        bad.join(lora::ADAPTER_CONFIG_FILE),
        r#"{"num_layers": 2, "lora_parameters": {"rank": 8, "scale": 10.0}}"#,
    )
    .unwrap();
    let error = lora::swap_adapters(&mut model, Some(&bad))
        .unwrap_err()
        .to_string();
    assert!(error.contains("adapters.safetensors"), "{error}");
    assert!(error.contains("shape"), "{error}");
    assert_eq!(logits(&model), base);
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
