//! A Hugging Face `ModelConfig` from GGUF metadata (`{arch}.block_count`,
//! `{arch}.embedding_length`, ...), with the facts GGUF keeps in tensors
//! instead (tied embeddings, attention biases, Llama 3 rope factors).

use super::dequant::dequantize;
use super::error::Result;
use super::reader::GgufFile;
use crate::model_config::{ModelConfig, RopeScaling};

/// `general.architecture` values this loader turns into models, with the
/// HF `model_type` of each.
pub const ARCHITECTURES: &[(&str, &str)] = &[
    ("llama", "llama"),
    ("qwen2", "qwen2"),
    ("qwen3", "qwen3"),
    ("phi3", "phi3"),
];

pub fn architecture(file: &GgufFile) -> Result<String> {
    let key = "general.architecture";
    let arch = file
        .get(key)
        .ok_or_else(|| file.metadata_error(key, "missing"))?
        .as_str()
        .ok_or_else(|| file.metadata_error(key, "is not a string"))?;
    if !ARCHITECTURES.iter().any(|(a, _)| *a == arch) {
        let known: Vec<&str> = ARCHITECTURES.iter().map(|(a, _)| *a).collect();
        return Err(file.metadata_error(
            key,
            format!(
                "architecture `{arch}` is not supported (supported: {})",
                known.join(", ")
            ),
        ));
    }
    Ok(arch.to_string())
}

pub fn model_config(file: &GgufFile) -> Result<ModelConfig> {
    let arch = architecture(file)?;
    let model_type = ARCHITECTURES
        .iter()
        .find(|(a, _)| *a == arch)
        .map(|(_, t)| t.to_string())
        .expect("checked by architecture()");
    let meta = Meta { file, arch: &arch };

    let hidden_size = meta.usize("embedding_length")?;
    let num_attention_heads = meta.usize("attention.head_count")?;
    let num_key_value_heads = meta.opt_usize("attention.head_count_kv")?;
    let head_dim = meta.opt_usize("attention.key_length")?;
    let effective_head_dim = head_dim.unwrap_or(hidden_size / num_attention_heads.max(1));
    if let Some(rope_dims) = meta.opt_usize("rope.dimension_count")? {
        if rope_dims != effective_head_dim {
            return Err(file.metadata_error(
                &format!("{arch}.rope.dimension_count"),
                format!(
                    "partial rotary embeddings ({rope_dims} of {effective_head_dim} dimensions) are not supported"
                ),
            ));
        }
    }

    let vocab_size = match meta.opt_usize("vocab_size")? {
        Some(v) => v,
        None => match file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(tokens) => tokens.len(),
            None => file
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| {
                    file.metadata_error(
                        &format!("{arch}.vocab_size"),
                        "missing, and no tokenizer.ggml.tokens or token_embd.weight to count",
                    )
                })? as usize,
        },
    };

    let rope_scaling = rope_scaling(&meta, effective_head_dim)?;

    Ok(ModelConfig {
        model_type,
        hidden_size,
        num_hidden_layers: meta.usize("block_count")?,
        intermediate_size: meta.usize("feed_forward_length")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        vocab_size,
        rms_norm_eps: meta
            .opt_f64("attention.layer_norm_rms_epsilon")?
            .map_or(1e-6, |v| v as f32),
        rope_theta: meta
            .opt_f64("rope.freq_base")?
            .map_or(10_000.0, |v| v as f32),
        rope_scaling,
        // Q and K rows are put back in HF order on load (see names.rs).
        rope_traditional: false,
        max_position_embeddings: meta.opt_usize("context_length")?,
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        attention_bias: file.tensor("blk.0.attn_q.bias").is_some()
            || file.tensor("blk.0.attn_qkv.bias").is_some(),
        quantization: None,
    })
}

/// Reads `{arch}.`-prefixed keys with errors that name the full key.
struct Meta<'a> {
    file: &'a GgufFile,
    arch: &'a str,
}

impl Meta<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn opt_usize(&self, suffix: &str) -> Result<Option<usize>> {
        let key = self.key(suffix);
        let Some(value) = self.file.get(&key) else {
            return Ok(None);
        };
        // Some models store per-layer values as arrays; a uniform array
        // is as good as a scalar.
        let scalar = match value.as_array() {
            Some(items) if !items.is_empty() && items.iter().all(|v| v == &items[0]) => &items[0],
            Some(_) => {
                return Err(self
                    .file
                    .metadata_error(&key, format!("per-layer values {value} are not supported")))
            }
            None => value,
        };
        scalar.as_u64().map(|v| Some(v as usize)).ok_or_else(|| {
            self.file.metadata_error(
                &key,
                format!("expected a non-negative integer, found {value}"),
            )
        })
    }

    fn usize(&self, suffix: &str) -> Result<usize> {
        self.opt_usize(suffix)?
            .ok_or_else(|| self.file.metadata_error(&self.key(suffix), "missing"))
    }

    fn opt_f64(&self, suffix: &str) -> Result<Option<f64>> {
        let key = self.key(suffix);
        match self.file.get(&key) {
            None => Ok(None),
            Some(value) => value.as_f64().map(Some).ok_or_else(|| {
                self.file
                    .metadata_error(&key, format!("expected a number, found {value}"))
            }),
        }
    }

    fn opt_str(&self, suffix: &str) -> Option<&str> {
        self.file.get(&self.key(suffix)).and_then(|v| v.as_str())
    }
}

fn rope_scaling(meta: &Meta, head_dim: usize) -> Result<Option<RopeScaling>> {
    if let Some(info) = meta.file.tensor("rope_freqs.weight") {
        let bytes = meta.file.tensor_data(info)?;
        let factors = dequantize(info.ggml_type, &bytes)
            .map_err(|e| meta.file.tensor_error(&info.name, e))?;
        let theta = meta.opt_f64("rope.freq_base")?.unwrap_or(10_000.0);
        return llama3_scaling(&factors, theta, head_dim)
            .map(Some)
            .ok_or_else(|| {
                meta.file.tensor_error(
                    &info.name,
                    "per-frequency rope factors do not match Llama 3's rope scaling \
                     (low_freq_factor 1, high_freq_factor 4, original context 8192)",
                )
            });
    }
    match meta.opt_str("rope.scaling.type") {
        None | Some("none") => Ok(None),
        Some(kind @ ("linear" | "yarn")) => Ok(Some(RopeScaling {
            rope_type: kind.to_string(),
            factor: meta.opt_f64("rope.scaling.factor")?.map(|v| v as f32),
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: meta
                .opt_usize("rope.scaling.original_context_length")?,
        })),
        Some(other) => Err(meta.file.metadata_error(
            &meta.key("rope.scaling.type"),
            format!("rope scaling `{other}` is not supported"),
        )),
    }
}

/// Llama 3.x's rope scaling as one factor per frequency (`head_dim / 2` of
/// them): 1 for short wavelengths, `factor` for long ones, smoothly between.
/// The export writes these; the reader recognises them.
pub fn llama3_factors(
    theta: f64,
    head_dim: usize,
    factor: f64,
    low: f64,
    high: f64,
    original: f64,
) -> Vec<f64> {
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// Llama 3.1+ checkpoints ship rope scaling as parameters; llama.cpp bakes
/// them into one factor per frequency. Every Llama 3.x release uses
/// low_freq_factor 1, high_freq_factor 4 and an original context of 8192,
/// so the parameters are recovered by checking the factors against those.
fn llama3_scaling(factors: &[f32], theta: f64, head_dim: usize) -> Option<RopeScaling> {
    let (low, high, original) = (1.0f64, 4.0f64, 8192.0f64);
    if factors.len() != head_dim / 2 {
        return None;
    }
    let factor = factors.iter().copied().fold(f32::MIN, f32::max) as f64;
    let expected = llama3_factors(theta, head_dim, factor, low, high, original);
    for (&got, expected) in factors.iter().zip(expected) {
        if ((got as f64) - expected).abs() > 1e-3 * expected {
            return None;
        }
    }
    Some(RopeScaling {
        rope_type: "llama3".into(),
        factor: Some(factor as f32),
        low_freq_factor: Some(low as f32),
        high_freq_factor: Some(high as f32),
        original_max_position_embeddings: Some(original as usize),
    })
}
