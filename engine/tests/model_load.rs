//! Loading HF folders: sharded checkpoints, errors that name what is wrong,
//! and the KV cache agreeing with a full forward pass.

mod common;

use std::collections::HashMap;

use common::*;
use engine::config::ComputeDtype;
use engine::model_config::ModelConfig;
use engine::models::{build_model, load_hf_folder};
use mlx_rs::{Array, Dtype};

fn tiny_parts() -> (ModelConfig, HashMap<String, Array>) {
    let t = Tiny::llama();
    let config: ModelConfig = serde_json::from_value(config_json(&t)).unwrap();
    (config, tiny_weights(&t).into_iter().collect())
}

fn build_err(config: &ModelConfig, weights: HashMap<String, Array>) -> String {
    match build_model(config, weights, ComputeDtype::Auto) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn missing_tensor_is_named() {
    let (config, mut weights) = tiny_parts();
    weights.remove("model.layers.2.mlp.up_proj.weight");
    let err = build_err(&config, weights);
    assert_eq!(err, "missing tensor `model.layers.2.mlp.up_proj.weight`");
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let (config, mut weights) = tiny_parts();
    weights.insert(
        "model.layers.1.self_attn.k_proj.weight".into(),
        Array::zeros::<f32>(&[64, 64]).unwrap(),
    );
    let err = build_err(&config, weights);
    assert_eq!(
        err,
        "tensor `model.layers.1.self_attn.k_proj.weight` has shape [64, 64], expected [32, 64]"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let (config, mut weights) = tiny_parts();
    weights.insert(
        "model.layers.0.self_attn.q_proj.bias".into(),
        Array::zeros::<f32>(&[64]).unwrap(),
    );
    let err = build_err(&config, weights);
    assert_eq!(
        err,
        "1 unexpected tensor(s) for this architecture: model.layers.0.self_attn.q_proj.bias"
    );
}

#[test]
fn unsupported_model_type_is_named() {
    let (mut config, weights) = tiny_parts();
    config.model_type = "gpt2".into();
    let err = build_err(&config, weights);
    assert_eq!(
        err,
        "unsupported model_type `gpt2` (supported: llama, mistral, qwen2, qwen3, phi3)"
    );
}

#[test]
fn unsupported_rope_scaling_is_named() {
    let (mut config, weights) = tiny_parts();
    config.rope_scaling = Some(engine::model_config::RopeScaling {
        rope_type: "yarn".into(),
        factor: Some(4.0),
        low_freq_factor: None,
        high_freq_factor: None,
        original_max_position_embeddings: None,
    });
    let err = build_err(&config, weights);
    assert_eq!(
        err,
        "rope_scaling type `yarn` is not supported (supported: default, linear, llama3)"
    );
}

#[test]
fn broken_config_json_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), &Tiny::llama());
    std::fs::write(
        dir.path().join("config.json"),
        "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": \"wide\"\n}",
    )
    .unwrap();
    let err = match load_hf_folder(dir.path(), ComputeDtype::Auto) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("config.json"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn sharded_checkpoint_gives_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    write_tiny(&single, &Tiny::llama());
    let sharded = dir.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    std::fs::copy(single.join("config.json"), sharded.join("config.json")).unwrap();
    let weights = tiny_weights(&Tiny::llama());
    let (first, second) = weights.split_at(weights.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        Array::save_safetensors(
            part.iter().map(|(k, v)| (k.as_str(), v)),
            None,
            sharded.join(file),
        )
        .unwrap();
        for (k, _) in part {
            weight_map.insert(k.clone(), file.into());
        }
    }
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    let tokens = Array::from_slice(&[1u32, 5, 9, 200, 3, 7], &[1, 6]);
    let a = load_hf_folder(&single, ComputeDtype::Auto)
        .unwrap()
        .forward(&tokens)
        .unwrap();
    let b = load_hf_folder(&sharded, ComputeDtype::Auto)
        .unwrap()
        .forward(&tokens)
        .unwrap();
    assert_eq!(a.shape(), &[1, 6, VOCAB as i32]);
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

#[test]
fn quantized_checkpoint_is_dequantized_to_f32_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(
        dir.path(),
        &Tiny {
            quantize: true,
            ..Tiny::llama()
        },
    );
    let model = load_hf_folder(dir.path(), ComputeDtype::Auto).unwrap();
    if !engine::device::is_gpu() {
        assert_eq!(model.compute_dtype, Dtype::Float32);
    }
    let logits = model
        .forward(&Array::from_slice(&[1u32, 2, 3], &[1, 3]))
        .unwrap();
    assert_eq!(logits.dtype(), model.compute_dtype);
    assert_eq!(model.total_parameters(), 180_800);
}

#[test]
fn kv_cache_decoding_matches_the_full_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(
        dir.path(),
        &Tiny {
            llama3_scaling: true,
            ..Tiny::llama()
        },
    );
    let model = load_hf_folder(dir.path(), ComputeDtype::Auto).unwrap();
    let ids = [4u32, 8, 15, 16, 23, 42, 7, 99];
    let full = model
        .forward(&Array::from_slice(&ids, &[1, ids.len() as i32]))
        .unwrap();
    let mut cache = model.new_cache();
    // A prompt of 5 at once, then one token at a time.
    let prompt = model
        .forward_cached(&Array::from_slice(&ids[..5], &[1, 5]), &mut cache)
        .unwrap();
    let mut steps = vec![prompt];
    for &id in &ids[5..] {
        steps.push(
            model
                .forward_cached(&Array::from_slice(&[id], &[1, 1]), &mut cache)
                .unwrap(),
        );
    }
    assert_eq!(cache.offset(), ids.len());
    let incremental = mlx_rs::ops::concatenate(&steps, 1).unwrap();
    let diff = max_abs_diff(&full, &incremental);
    assert!(diff < 1e-4, "cached decoding differs by {diff}");
}

#[test]
fn quantize_on_load_gives_the_quantized_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let dense_dir = dir.path().join("dense");
    let quant_dir = dir.path().join("quant");
    write_tiny(&dense_dir, &Tiny::llama());
    write_tiny(
        &quant_dir,
        &Tiny {
            quantize: true,
            ..Tiny::llama()
        },
    );
    let tokens = Array::from_slice(&[3u32, 1, 4, 1, 5, 9, 2, 6], &[2, 4]);
    let mut dense = load_hf_folder(&dense_dir, ComputeDtype::Auto).unwrap();
    let before = dense.forward(&tokens).unwrap();
    dense
        .quantize(engine::config::QuantizeOnLoad {
            bits: 4,
            group_size: 64,
        })
        .unwrap();
    let after = dense.forward(&tokens).unwrap();
    let quantized = load_hf_folder(&quant_dir, ComputeDtype::Auto)
        .unwrap()
        .forward(&tokens)
        .unwrap();
    assert_eq!(max_abs_diff(&after, &quantized), 0.0);
    assert!(
        max_abs_diff(&after, &before) > 1e-3,
        "quantization changed nothing"
    );
    let q4 = engine::config::QuantizeOnLoad {
        bits: 4,
        group_size: 64,
    };
    let err = dense.quantize(q4).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`quantize` is set but the model is already quantized"
    );
    let mut fresh = load_hf_folder(&dense_dir, ComputeDtype::Auto).unwrap();
    let err = fresh
        .quantize(engine::config::QuantizeOnLoad {
            bits: 7,
            group_size: 64,
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "quantize.bits must be one of 2, 3, 4, 5, 6, 8, got 7"
    );
}
