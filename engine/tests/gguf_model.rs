//! GGUF -> model on small synthetic files: Q/K row order, HF names, config
//! keys per architecture, rope scaling, and errors that name what is wrong.

mod gguf_common;

use engine::gguf::{load_gguf_model, MetadataValue as V};
use gguf_common::{f16_bytes, tiny_vocab, GgufWriter};
use mlx_rs::Dtype;

const HIDDEN: u64 = 64;
const HEADS: u64 = 2;
const KV_HEADS: u64 = 1;
const HEAD_DIM: u64 = 32;
const FF: u64 = 96;

/// An F32 matrix of `rows` x `cols` (HF order) whose row r is all r.
fn row_numbered(rows: u64, cols: u64) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| std::iter::repeat_n(r as f32, cols as usize))
        .collect()
}

/// A Q4_0 matrix whose row r dequantizes to all (r - 8) * 1.0 for r < 16:
/// every nibble is r, d is 1.
fn q4_0_row_numbered(rows: u64, cols: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for r in 0..rows {
        for _ in 0..cols / 32 {
            out.extend(f16_bytes(1.0));
            out.extend(std::iter::repeat_n((r as u8 & 15) * 0x11, 16));
        }
    }
    out
}

fn tiny_model(arch: &str) -> GgufWriter {
    let mut w = tiny_vocab(
        Some(if arch == "qwen2" { "qwen2" } else { "smollm" }),
        false,
    );
    w.metadata[0].1 = V::String(arch.into());
    let key = |k: &str| format!("{arch}.{k}");
    w.kv(&key("block_count"), V::U32(1))
        .kv(&key("embedding_length"), V::U32(HIDDEN as u32))
        .kv(&key("feed_forward_length"), V::U32(FF as u32))
        .kv(&key("attention.head_count"), V::U32(HEADS as u32))
        .kv(&key("attention.head_count_kv"), V::U32(KV_HEADS as u32))
        .kv(&key("rope.freq_base"), V::F32(500_000.0))
        .kv(&key("attention.layer_norm_rms_epsilon"), V::F32(1e-6))
        .kv(&key("context_length"), V::U32(2048));
    let vocab = 15;
    w.f32_tensor(
        "token_embd.weight",
        &[HIDDEN, vocab],
        &row_numbered(vocab, HIDDEN),
    )
    .f32_tensor(
        "blk.0.attn_norm.weight",
        &[HIDDEN],
        &vec![1.0; HIDDEN as usize],
    )
    .f32_tensor(
        "blk.0.ffn_norm.weight",
        &[HIDDEN],
        &vec![1.0; HIDDEN as usize],
    )
    .f32_tensor("output_norm.weight", &[HIDDEN], &vec![1.0; HIDDEN as usize])
    .f32_tensor(
        "blk.0.attn_q.weight",
        &[HIDDEN, HIDDEN],
        &row_numbered(HIDDEN, HIDDEN),
    )
    .tensor(
        "blk.0.attn_k.weight",
        &[HIDDEN, KV_HEADS * HEAD_DIM],
        2,
        q4_0_row_numbered(KV_HEADS * HEAD_DIM, HIDDEN),
    )
    .f32_tensor(
        "blk.0.attn_v.weight",
        &[HIDDEN, KV_HEADS * HEAD_DIM],
        &row_numbered(KV_HEADS * HEAD_DIM, HIDDEN),
    )
    .f32_tensor(
        "blk.0.attn_output.weight",
        &[HIDDEN, HIDDEN],
        &row_numbered(HIDDEN, HIDDEN),
    )
    .f32_tensor(
        "blk.0.ffn_gate.weight",
        &[HIDDEN, FF],
        &row_numbered(FF, HIDDEN),
    )
    .f32_tensor(
        "blk.0.ffn_up.weight",
        &[HIDDEN, FF],
        &row_numbered(FF, HIDDEN),
    )
    .f32_tensor(
        "blk.0.ffn_down.weight",
        &[FF, HIDDEN],
        &row_numbered(HIDDEN, FF),
    );
    w
}

fn first_column(array: &mlx_rs::Array) -> Vec<f32> {
    let cols = array.shape()[1] as usize;
    array
        .as_dtype(Dtype::Float32)
        .unwrap()
        .as_slice::<f32>()
        .chunks(cols)
        .map(|row| row[0])
        .collect()
}

#[test]
fn llama_q_and_k_rows_are_put_in_hf_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model("llama").write(dir.path(), "llama.gguf");
    let mut model = load_gguf_model(&path).unwrap();
    // Within each head, llama.cpp's rows 0, 2, 4, ... (first of each RoPE
    // pair) become HF rows 0..16, and rows 1, 3, 5, ... HF rows 16..32.
    let head: Vec<f32> = (0..16)
        .map(|i| 2.0 * i as f32)
        .chain((0..16).map(|i| 2.0 * i as f32 + 1.0))
        .collect();
    let both_heads: Vec<f32> = head
        .iter()
        .copied()
        .chain(head.iter().map(|r| r + 32.0))
        .collect();
    let q = &model.weights["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!(first_column(q), both_heads);
    // V and O are not permuted.
    let v = &model.weights["model.layers.0.self_attn.v_proj.weight"];
    assert_eq!(
        first_column(v),
        (0..32).map(|r| r as f32).collect::<Vec<_>>()
    );

    // The quantized K moves whole rows: weight, scales and biases together.
    assert_eq!(model.config.quantization.unwrap().bits, 4);
    model.dequantize_weights().unwrap();
    let k = &model.weights["model.layers.0.self_attn.k_proj.weight"];
    let expected: Vec<f32> = head.iter().map(|&r| (r as u8 & 15) as f32 - 8.0).collect();
    assert_eq!(first_column(k), expected);

    let c = &model.config;
    assert_eq!(
        (
            c.model_type.as_str(),
            c.num_hidden_layers,
            c.hidden_size,
            c.intermediate_size
        ),
        ("llama", 1, 64, 96)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads(), c.head_dim()),
        (2, 1, 32)
    );
    assert_eq!(
        (c.vocab_size, c.rope_theta, c.rms_norm_eps),
        (15, 500_000.0, 1e-6)
    );
    assert!(c.tie_word_embeddings);
    assert!(!c.attention_bias);
}

#[test]
fn qwen2_keeps_rows_and_reads_biases_and_untied_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_model("qwen2");
    w.f32_tensor(
        "blk.0.attn_q.bias",
        &[HIDDEN],
        &(0..HIDDEN).map(|r| r as f32).collect::<Vec<_>>(),
    )
    .f32_tensor("output.weight", &[HIDDEN, 15], &row_numbered(15, HIDDEN));
    let path = w.write(dir.path(), "qwen2.gguf");
    let model = load_gguf_model(&path).unwrap();
    assert_eq!(model.config.model_type, "qwen2");
    assert!(model.config.attention_bias);
    assert!(!model.config.tie_word_embeddings);
    let q = &model.weights["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!(
        first_column(q),
        (0..64).map(|r| r as f32).collect::<Vec<_>>()
    );
    let bias = &model.weights["model.layers.0.self_attn.q_proj.bias"];
    assert_eq!(bias.as_slice::<f32>()[..4], [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(model.weights["lm_head.weight"].shape(), [15, 64]);
    assert_eq!(
        model
            .tokenizer
            .tokenizer
            .encode("12345", false)
            .unwrap()
            .get_ids(),
        [2, 3, 4, 5, 6]
    );
}

#[test]
fn k_quant_weights_arrive_dense() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_model("llama");
    // Replace ffn_down (HF [64, 96] -> GGUF dims [96, 64]) by a Q6_K tensor
    // of 256-wide rows instead: HF [2, 256], a Q6_K block per row with d = 0
    // except the scale and first quant of row 1.
    w.tensors.retain(|t| t.name != "blk.0.ffn_down.weight");
    let mut block = vec![0u8; 210];
    block[192] = 3; // scale of elements 0..16
    block[0] = 0x05; // element 0: low nibble 5, high bits 0 -> q = 5 - 32
    block[208..210].copy_from_slice(&f16_bytes(0.5));
    let zero = [vec![0u8; 208], f16_bytes(0.0).to_vec()].concat();
    w.tensor(
        "blk.0.ffn_down.weight",
        &[256, 2],
        14,
        [zero, block].concat(),
    );
    let path = w.write(dir.path(), "k.gguf");
    let model = load_gguf_model(&path).unwrap();
    let down = &model.weights["model.layers.0.mlp.down_proj.weight"];
    assert_eq!(
        (down.shape(), down.dtype()),
        (&[2, 256][..], Dtype::Float32)
    );
    let values = down.as_slice::<f32>();
    assert_eq!(values[256], 0.5 * 3.0 * (5.0 - 32.0));
    assert_eq!(values[257], 0.5 * 3.0 * -32.0);
    assert_eq!(values[0], 0.0);
    assert!(!model
        .weights
        .contains_key("model.layers.0.mlp.down_proj.scales"));
}

/// Llama 3.2's rope scaling as llama.cpp stores it: one factor per frequency.
#[test]
fn llama3_rope_factors_become_rope_scaling() {
    let factors = |factor: f64| -> Vec<f32> {
        (0..HEAD_DIM / 2)
            .map(|i| {
                let freq = 1.0 / 500_000f64.powf(2.0 * i as f64 / HEAD_DIM as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let (low, high) = (8192.0 / 1.0, 8192.0 / 4.0);
                if wavelen < high {
                    1.0
                } else if wavelen > low {
                    factor as f32
                } else {
                    let smooth = (8192.0 / wavelen - 1.0) / 3.0;
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_model("llama");
    w.f32_tensor("rope_freqs.weight", &[HEAD_DIM / 2], &factors(32.0));
    let path = w.write(dir.path(), "rope.gguf");
    let model = load_gguf_model(&path).unwrap();
    let scaling = model.config.rope_scaling.unwrap();
    assert_eq!(scaling.rope_type, "llama3");
    assert_eq!(scaling.factor, Some(32.0));
    assert_eq!(
        (scaling.low_freq_factor, scaling.high_freq_factor),
        (Some(1.0), Some(4.0))
    );
    assert_eq!(scaling.original_max_position_embeddings, Some(8192));
    assert!(!model.weights.keys().any(|k| k.contains("rope")));

    let mut bad = factors(32.0);
    bad[7] *= 1.5;
    let mut w = tiny_model("llama");
    w.f32_tensor("rope_freqs.weight", &[HEAD_DIM / 2], &bad);
    let path = w.write(dir.path(), "bad_rope.gguf");
    let err = load_gguf_model(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: tensor `rope_freqs.weight`: per-frequency rope factors do not match Llama 3's \
             rope scaling (low_freq_factor 1, high_freq_factor 4, original context 8192)",
            path.display()
        )
    );
}

#[test]
fn model_errors_name_key_or_tensor() {
    let dir = tempfile::tempdir().unwrap();

    let path = tiny_model("gptneox").write(dir.path(), "arch.gguf");
    let err = load_gguf_model(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: metadata `general.architecture`: architecture `gptneox` is not supported \
             (supported: llama, qwen2, qwen3, phi3)",
            path.display()
        )
    );

    let mut w = tiny_model("llama");
    w.metadata.retain(|(k, _)| k != "llama.block_count");
    let path = w.write(dir.path(), "count.gguf");
    let err = load_gguf_model(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!("{}: metadata `llama.block_count`: missing", path.display())
    );

    let mut w = tiny_model("llama");
    w.metadata
        .retain(|(k, _)| k != "llama.attention.head_count");
    w.kv("llama.attention.head_count", V::String("two".into()));
    let path = w.write(dir.path(), "heads.gguf");
    let err = load_gguf_model(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: metadata `llama.attention.head_count`: expected a non-negative integer, found \"two\"",
            path.display()
        )
    );

    let mut w = tiny_model("llama");
    w.f32_tensor("blk.0.mystery.weight", &[4], &[0.0; 4]);
    let path = w.write(dir.path(), "extra.gguf");
    let err = load_gguf_model(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: tensor `blk.0.mystery.weight`: has no Hugging Face counterpart in a `llama` model",
            path.display()
        )
    );

    let mut w = tiny_model("llama");
    w.tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.attn_norm.weight")
        .unwrap()
        .type_code = 16; // IQ2_XXS, a type we do not convert
    w.tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.attn_norm.weight")
        .unwrap()
        .dims = vec![256];
    w.tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.attn_norm.weight")
        .unwrap()
        .data = vec![0; 66];
    let path = w.write(dir.path(), "iq.gguf");
    let err = load_gguf_model(&path).err().unwrap();
    assert!(
        err.to_string().starts_with(&format!(
            "{}: tensor `blk.0.attn_norm.weight`: ggml type IQ2_XXS is not supported (supported: F32,",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn qwen3_reads_head_dim_and_qk_norms() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_model("qwen3");
    w.kv("qwen3.attention.key_length", V::U32(HEAD_DIM as u32))
        .kv("qwen3.attention.value_length", V::U32(HEAD_DIM as u32))
        .f32_tensor(
            "blk.0.attn_q_norm.weight",
            &[HEAD_DIM],
            &vec![2.0; HEAD_DIM as usize],
        )
        .f32_tensor(
            "blk.0.attn_k_norm.weight",
            &[HEAD_DIM],
            &vec![3.0; HEAD_DIM as usize],
        );
    let path = w.write(dir.path(), "qwen3.gguf");
    let model = load_gguf_model(&path).unwrap();
    assert_eq!(model.config.model_type, "qwen3");
    assert_eq!(model.config.head_dim, Some(32));
    assert_eq!(
        model.weights["model.layers.0.self_attn.q_norm.weight"].as_slice::<f32>()[0],
        2.0
    );
    assert_eq!(
        model.weights["model.layers.0.self_attn.k_norm.weight"].as_slice::<f32>()[0],
        3.0
    );
    // Qwen rows are stored in HF order already.
    let q = &model.weights["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!(first_column(q)[..4], [0.0, 1.0, 2.0, 3.0]);
}

/// A file's quantization is the mix `general.file_type` names (llama.cpp's
/// Q4_K_M keeps some tensors at Q6_K and, on small models, falls back to
/// Q5_0 for most), not its most common tensor type.
#[test]
fn the_file_type_names_the_quantization_mix() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_model("llama");
    w.kv("general.file_type", V::U32(15));
    let (_, summary) = engine::gguf::inspect_gguf(&w.write(dir.path(), "m.gguf")).unwrap();
    assert_eq!(summary.file_type.as_deref(), Some("Q4_K_M"));
    assert!(
        !summary.tensor_types.contains_key("Q4_K"),
        "the name is the file's, not its tensors': {:?}",
        summary.tensor_types
    );

    let mut unknown = tiny_model("llama");
    unknown.kv("general.file_type", V::U32(999));
    let (_, summary) = engine::gguf::inspect_gguf(&unknown.write(dir.path(), "u.gguf")).unwrap();
    assert_eq!(summary.file_type, None);
    let (_, summary) =
        engine::gguf::inspect_gguf(&tiny_model("llama").write(dir.path(), "n.gguf")).unwrap();
    assert_eq!(summary.file_type, None);
}
