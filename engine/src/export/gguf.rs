//! GGUF exports for llama.cpp (and Ollama, LM Studio): the fused model as
//! one `model.gguf`, or the adapter alone as llama.cpp's `--lora` file.
//!
//! Names and hyperparameter keys are llama.cpp's (convert_hf_to_gguf.py):
//! `blk.N.attn_q.weight`, `llama.embedding_length`, ...; Llama's Q and K
//! rows are permuted into llama.cpp's interleaved RoPE order. A GGUF base
//! keeps its own metadata (tokenizer included); an HF base's is built from
//! `config.json` and `tokenizer.json`. When the base is a GGUF and the
//! target type is its file type, tensors the adapter leaves alone are
//! copied byte for byte and only fused ones are quantized again.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use mlx_rs::Array;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::adapter::Adapter;
use super::base::BaseModel;
use super::ModelCard;
use crate::gguf::names::{
    gguf_name, hf_name, is_auxiliary, permute_rows, permuted_heads, permuted_row_count,
};
use crate::gguf::quantize::{quantize, QUANTIZABLE};
use crate::gguf::{GgmlType, MetadataValue, TensorSpec, ValueType};
use crate::tokenizer::TokenizerBundle;

/// The file a model export writes.
pub const MODEL_FILE: &str = "model.gguf";
/// The file an adapter export writes.
pub const ADAPTER_FILE: &str = "adapter.gguf";
/// Ollama's recipe beside the GGUF (`ollama create NAME -f Modelfile`).
pub const MODELFILE: &str = "Modelfile";
/// LM Studio's models-folder layout beside a model export (see
/// [`lay_out_for_lm_studio`]).
pub const LM_STUDIO_DIR: &str = "lmstudio";
/// The publisher folder LM Studio lists the export under.
const LM_STUDIO_PUBLISHER: &str = "loralab";

/// Tensor type of a GGUF export (`quant`): one type for every matrix, or
/// one of llama.cpp's K-quant mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum GgufQuant {
    /// The base GGUF's own file type: unchanged tensors copied as stored.
    #[serde(rename = "same")]
    Same,
    #[serde(rename = "f32")]
    F32,
    #[default]
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "bf16")]
    Bf16,
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q6_k")]
    Q6K,
    #[serde(rename = "q5_k_m")]
    Q5KM,
    #[serde(rename = "q5_0")]
    Q5_0,
    #[serde(rename = "q5_1")]
    Q5_1,
    #[serde(rename = "q4_k_m")]
    Q4KM,
    #[serde(rename = "q4_0")]
    Q4_0,
    #[serde(rename = "q4_1")]
    Q4_1,
}

impl GgufQuant {
    pub const ALL: [GgufQuant; 12] = [
        Self::Same,
        Self::F32,
        Self::F16,
        Self::Bf16,
        Self::Q8_0,
        Self::Q6K,
        Self::Q5KM,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q4KM,
        Self::Q4_0,
        Self::Q4_1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "q8_0",
            Self::Q6K => "q6_k",
            Self::Q5KM => "q5_k_m",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q4KM => "q4_k_m",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
        }
    }

    /// Case-insensitive, so `Q4_K_M` as llama.cpp spells it works too.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.to_ascii_lowercase();
        Self::ALL.into_iter().find(|q| q.name() == text)
    }

    /// The list for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// The type of most matrices (None for `same`).
    fn base_type(self) -> Option<GgmlType> {
        Some(match self {
            Self::Same => return None,
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Bf16 => GgmlType::Bf16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q6K => GgmlType::Q6K,
            Self::Q5KM => GgmlType::Q5K,
            Self::Q5_0 => GgmlType::Q5_0,
            Self::Q5_1 => GgmlType::Q5_1,
            Self::Q4KM => GgmlType::Q4K,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4_1 => GgmlType::Q4_1,
        })
    }

    /// llama.cpp's `llama_ftype` (`general.file_type`); None for `same`.
    fn file_type(self) -> Option<u32> {
        Some(match self {
            Self::Same => return None,
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 7,
            Self::Q5_0 => 8,
            Self::Q5_1 => 9,
            Self::Q4KM => 15,
            Self::Q5KM => 17,
            Self::Q6K => 18,
            Self::Bf16 => 32,
        })
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers
/// and every third one between them.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    let (i, n) = (layer as i64, layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The type of tensor `name` (ggml `dims`) in an export of `quant`, as
/// llama.cpp's quantizer (llama-quant.cpp, without an importance matrix)
/// chooses it: 1-D tensors stay F32; the output matrix (the embeddings when
/// tied) gets Q6_K in the K mixes; the _M mixes give Q6_K to attn_v and
/// ffn_down of the layers `use_more_bits` picks and one step more to a
/// fused attn_qkv; a K-quant on rows that are not whole 256-blocks falls
/// back to Q5_0 / Q5_1 / Q8_0, other types to F16.
fn choose_type(
    quant: GgufQuant,
    name: &str,
    dims: &[u64],
    layers: usize,
    has_output: bool,
) -> GgmlType {
    let base = quant.base_type().expect("not `same`");
    if dims.len() < 2 {
        return GgmlType::F32;
    }
    let row = dims[0];
    let k_mix = matches!(quant, GgufQuant::Q4KM | GgufQuant::Q5KM | GgufQuant::Q6K);
    let medium = matches!(quant, GgufQuant::Q4KM | GgufQuant::Q5KM);
    let layer = name
        .strip_prefix("blk.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.parse::<usize>().ok());
    let more_bits = layer.is_some_and(|l| use_more_bits(l, layers));
    let is_output = name == "output.weight" || (!has_output && name == "token_embd.weight");
    let chosen = if k_mix && is_output {
        if row.is_multiple_of(256) {
            GgmlType::Q6K
        } else {
            GgmlType::Q8_0
        }
    } else if medium && (name.contains("attn_v.weight") || name.contains("ffn_down")) {
        if more_bits {
            GgmlType::Q6K
        } else {
            base
        }
    } else if name.contains("attn_qkv.weight") && quant == GgufQuant::Q4KM {
        GgmlType::Q5K
    } else if name.contains("attn_qkv.weight") && quant == GgufQuant::Q5KM {
        GgmlType::Q6K
    } else {
        base
    };
    if row.is_multiple_of(chosen.block_size()) {
        return chosen;
    }
    match chosen {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    }
}

/// llama.cpp's architecture for each `model_type` we train: Mistral runs
/// as Llama there, as convert_hf_to_gguf.py writes it.
pub fn architecture(model_type: &str) -> Option<&'static str> {
    Some(match model_type {
        "llama" | "mistral" => "llama",
        "qwen2" => "qwen2",
        "qwen3" => "qwen3",
        "phi3" => "phi3",
        _ => return None,
    })
}

/// How one tensor of the file is made.
#[derive(Debug, Clone)]
enum Make {
    /// Tensor `i` of the base GGUF, its bytes as stored.
    Copy(usize),
    /// Base tensor `i` (HF naming), fused, Q/K-permuted with this many
    /// heads, encoded as the spec's type.
    Encode { base: usize, heads: Option<usize> },
    /// Values made at plan time (Llama 3's rope factors).
    Values(Vec<f32>),
    /// An adapter layer's `lora_a` as llama.cpp wants it: `[rank, in]`.
    LoraA(String),
    /// Its `lora_b`: `[out, rank]`, Q/K-permuted like the weight it adapts.
    LoraB(String, Option<usize>),
}

/// A planned GGUF file.
pub struct GgufPlan {
    pub file_name: &'static str,
    pub metadata: Vec<(String, MetadataValue)>,
    pub specs: Vec<TensorSpec>,
    makes: Vec<Make>,
}

/// What writing a GGUF did, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct GgufCounts {
    pub copied: usize,
    pub encoded: usize,
    pub fused: usize,
}

impl GgufPlan {
    pub fn bytes_total(&self) -> u64 {
        self.specs.iter().map(TensorSpec::n_bytes).sum()
    }
}

fn string(s: impl Into<String>) -> MetadataValue {
    MetadataValue::String(s.into())
}

fn u32_value(v: usize) -> MetadataValue {
    MetadataValue::U32(v as u32)
}

/// The type a matrix is written as: 1-D tensors (norms, biases) stay F32
/// as llama.cpp keeps them; a row that is not a whole number of blocks
/// falls back to F16, as llama.cpp's quantizer does.
fn tensor_type(target: GgmlType, shape: &[usize]) -> GgmlType {
    if shape.len() < 2 {
        return GgmlType::F32;
    }
    let row = *shape.last().expect("2-D") as u64;
    if row.is_multiple_of(target.block_size()) {
        target
    } else {
        GgmlType::F16
    }
}

/// Plans the fused model as one GGUF file.
pub fn plan_model(
    base: &BaseModel,
    adapter: Option<&Adapter>,
    quant: GgufQuant,
    card: &ModelCard,
) -> Result<GgufPlan> {
    let model_type = &base.config.model_type;
    let arch = architecture(model_type).ok_or_else(|| {
        anyhow!("cannot write architecture `{model_type}` as GGUF (writable: llama, mistral, qwen2, qwen3, phi3)")
    })?;
    let adapted = |name: &str| adapter.is_some_and(|a| a.changes(name));
    let heads = (
        base.config.num_attention_heads,
        base.config.num_key_value_heads(),
    );
    let mut specs = Vec::new();
    let mut makes = Vec::new();
    let metadata = match base.gguf_file() {
        Some(file) => {
            let base_file_type = file.get("general.file_type").and_then(|v| v.as_u64());
            let copy = match quant.file_type() {
                None => true,
                Some(t) => base_file_type == Some(u64::from(t)),
            };
            let has_output = file.tensor("output.weight").is_some();
            let layers = base.config.num_hidden_layers;
            let file_arch = crate::gguf::config::architecture(file).map_err(|e| anyhow!("{e}"))?;
            for (i, info) in file.tensors.iter().enumerate() {
                let hf = match is_auxiliary(&info.name) {
                    true => None,
                    false => Some(hf_name(&file_arch, &info.name).ok_or_else(|| {
                        anyhow!(
                            "{}: tensor `{}` has no place in a `{file_arch}` model",
                            file.path().display(),
                            info.name
                        )
                    })?),
                };
                let fused = hf.as_deref().is_some_and(adapted);
                let ggml_type = match copy || hf.is_none() {
                    // Auxiliary tensors (rope factors) are kept as they are.
                    true => info.ggml_type,
                    false => choose_type(quant, &info.name, &info.dims, layers, has_output),
                };
                let make = match (&hf, copy || hf.is_none()) {
                    (Some(_), true) if !fused => Make::Copy(i),
                    (None, _) => Make::Copy(i),
                    (Some(name), _) => Make::Encode {
                        base: base.position(name).expect("open_gguf lists every tensor"),
                        heads: permuted_heads(&file_arch, &info.name, heads.0, heads.1),
                    },
                };
                if matches!(make, Make::Encode { .. }) && !QUANTIZABLE.contains(&ggml_type) {
                    bail!(
                        "cannot re-quantize `{}` to {ggml_type}: writable types are {} \
                         (export with another quant)",
                        info.name,
                        QUANTIZABLE
                            .iter()
                            .map(|t| t.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                specs.push(TensorSpec {
                    name: info.name.clone(),
                    dims: info.dims.clone(),
                    ggml_type,
                });
                makes.push(make);
            }
            let mut meta: BTreeMap<String, MetadataValue> = file.metadata.clone();
            meta.remove("general.alignment");
            if let (false, Some(t)) = (copy, quant.file_type()) {
                meta.insert("general.file_type".into(), MetadataValue::U32(t));
            }
            finish_metadata(meta, &specs)
        }
        None => {
            let file_type = quant.file_type().ok_or_else(|| {
                anyhow!(
                    "quant `same` keeps a GGUF base's types, and {} is not a GGUF: choose one of {}",
                    base.path.display(),
                    GgufQuant::names()
                )
            })?;
            let tied = base.config.tie_word_embeddings;
            let layers = base.config.num_hidden_layers;
            for (i, tensor) in base.tensors.iter().enumerate() {
                if tied && tensor.name == "lm_head.weight" {
                    continue;
                }
                let name = gguf_name(arch, &tensor.name).ok_or_else(|| {
                    anyhow!(
                        "{}: tensor `{}` has no llama.cpp name in a `{arch}` model",
                        base.path.display(),
                        tensor.name
                    )
                })?;
                let dims: Vec<u64> = tensor.shape.iter().rev().map(|&d| d as u64).collect();
                let ggml_type = choose_type(quant, &name, &dims, layers, !tied);
                makes.push(Make::Encode {
                    base: i,
                    heads: permuted_heads(arch, &name, heads.0, heads.1),
                });
                specs.push(TensorSpec::from_shape(name, &tensor.shape, ggml_type));
            }
            if let Some(factors) = llama3_rope_factors(base) {
                specs.push(TensorSpec::from_shape(
                    "rope_freqs.weight",
                    &[factors.len()],
                    GgmlType::F32,
                ));
                makes.push(Make::Values(factors));
            }
            let mut meta = hf_metadata(base, arch, card)?;
            meta.insert("general.file_type".into(), MetadataValue::U32(file_type));
            finish_metadata(meta, &specs)
        }
    };
    Ok(GgufPlan {
        file_name: MODEL_FILE,
        metadata,
        specs,
        makes,
    })
}

/// `general.quantization_version` (2, ggml's current block layouts) where
/// the file holds quantized tensors, as llama.cpp writes it.
fn finish_metadata(
    mut meta: BTreeMap<String, MetadataValue>,
    specs: &[TensorSpec],
) -> Vec<(String, MetadataValue)> {
    let quantized = specs.iter().any(|s| s.ggml_type.block_size() > 1);
    if quantized {
        meta.insert("general.quantization_version".into(), MetadataValue::U32(2));
    } else {
        meta.remove("general.quantization_version");
    }
    // general.architecture first, as llama.cpp's writer puts it.
    let mut out: Vec<(String, MetadataValue)> = Vec::with_capacity(meta.len());
    if let Some(v) = meta.remove("general.architecture") {
        out.push(("general.architecture".into(), v));
    }
    out.extend(meta);
    out
}

/// Llama 3.x rope scaling as one factor per frequency, the tensor
/// convert_hf_to_gguf.py writes (our reader turns it back into the config).
fn llama3_rope_factors(base: &BaseModel) -> Option<Vec<f32>> {
    let scaling = base.config.rope_scaling.as_ref()?;
    if scaling.rope_type != "llama3" {
        return None;
    }
    let factor = f64::from(scaling.factor.unwrap_or(8.0));
    let low = f64::from(scaling.low_freq_factor.unwrap_or(1.0));
    let high = f64::from(scaling.high_freq_factor.unwrap_or(4.0));
    let original = scaling.original_max_position_embeddings.unwrap_or(8192) as f64;
    let theta = f64::from(base.config.rope_theta);
    let factors = crate::gguf::config::llama3_factors(
        theta,
        base.config.head_dim(),
        factor,
        low,
        high,
        original,
    );
    Some(factors.into_iter().map(|value| value as f32).collect())
}

/// The hyperparameters and tokenizer of an HF base, with llama.cpp's keys.
fn hf_metadata(
    base: &BaseModel,
    arch: &str,
    card: &ModelCard,
) -> Result<BTreeMap<String, MetadataValue>> {
    let c = &base.config;
    let mut meta = BTreeMap::new();
    let mut put = |key: &str, value: MetadataValue| {
        meta.insert(key.to_string(), value);
    };
    put("general.architecture", string(arch));
    put("general.type", string("model"));
    let name = if card.title.is_empty() {
        &card.base_name
    } else {
        &card.title
    };
    if !name.is_empty() {
        put("general.name", string(name.as_str()));
    }
    let key = |k: &str| format!("{arch}.{k}");
    put(
        &key("context_length"),
        u32_value(c.max_position_embeddings.unwrap_or(2048)),
    );
    put(&key("embedding_length"), u32_value(c.hidden_size));
    put(&key("block_count"), u32_value(c.num_hidden_layers));
    put(&key("feed_forward_length"), u32_value(c.intermediate_size));
    put(
        &key("attention.head_count"),
        u32_value(c.num_attention_heads),
    );
    put(
        &key("attention.head_count_kv"),
        u32_value(c.num_key_value_heads()),
    );
    put(
        &key("attention.layer_norm_rms_epsilon"),
        MetadataValue::F32(c.rms_norm_eps),
    );
    put(&key("rope.freq_base"), MetadataValue::F32(c.rope_theta));
    put(&key("rope.dimension_count"), u32_value(c.head_dim()));
    if c.head_dim
        .is_some_and(|d| d != c.hidden_size / c.num_attention_heads)
        || arch == "qwen3"
    {
        put(&key("attention.key_length"), u32_value(c.head_dim()));
        put(&key("attention.value_length"), u32_value(c.head_dim()));
    }
    put(&key("vocab_size"), u32_value(c.vocab_size));
    if let Some(scaling) = &c.rope_scaling {
        match scaling.rope_type.as_str() {
            // Written as the rope_freqs tensor.
            "llama3" => {}
            kind @ ("linear" | "yarn") => {
                put(&key("rope.scaling.type"), string(kind));
                if let Some(f) = scaling.factor {
                    put(&key("rope.scaling.factor"), MetadataValue::F32(f));
                }
                if let Some(n) = scaling.original_max_position_embeddings {
                    put(&key("rope.scaling.original_context_length"), u32_value(n));
                }
            }
            other => bail!(
                "{}: rope scaling `{other}` cannot be written as GGUF (writable: linear, yarn, llama3)",
                base.path.display()
            ),
        }
    }
    for (k, v) in hf_tokenizer(&base.path, c.vocab_size)? {
        meta.insert(k, v);
    }
    Ok(meta)
}

const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

/// `tokenizer.*` keys from an HF folder's `tokenizer.json` (byte-level BPE,
/// llama.cpp's `gpt2` model) and `tokenizer_config.json`. The token list is
/// padded to the embedding's `vocab_size` with unused `[PADn]` tokens, as
/// convert_hf_to_gguf.py pads it.
fn hf_tokenizer(dir: &Path, vocab_size: usize) -> Result<Vec<(String, MetadataValue)>> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: a GGUF export carries the tokenizer and needs it",
            path.display()
        )
    })?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let model = &json["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == Value::Bool(true) {
        bail!(
            "{}: only byte-level BPE tokenizers are written to GGUF so far (this one is {} {}); \
             SentencePiece-style vocabularies are not",
            path.display(),
            model["type"],
            if model["byte_fallback"] == Value::Bool(true) {
                "with byte_fallback"
            } else {
                ""
            }
        );
    }
    let mut tokens: Vec<Option<(String, i32)>> = Vec::new();
    let mut place = |id: usize, token: String, kind: i32| {
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
        }
        tokens[id] = Some((token, kind));
    };
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| anyhow!("{}: `model.vocab` is not an object", path.display()))?;
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| anyhow!("{}: vocab id of `{token}` is not a number", path.display()))?;
        place(id as usize, token.clone(), TOKEN_NORMAL);
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else {
            bail!("{}: an added token lacks `id` or `content`", path.display());
        };
        let kind = if added["special"] == Value::Bool(true) {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
        place(id as usize, content.to_string(), kind);
    }
    if tokens.len() > vocab_size {
        bail!(
            "{}: the tokenizer has {} tokens, more than the model's vocab_size {vocab_size}",
            path.display(),
            tokens.len()
        );
    }
    tokens.resize(vocab_size, None);
    let (names, kinds): (Vec<MetadataValue>, Vec<MetadataValue>) = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (name, kind) = t.unwrap_or_else(|| (format!("[PAD{i}]"), TOKEN_UNUSED));
            (MetadataValue::String(name), MetadataValue::I32(kind))
        })
        .unzip();
    let merges: Vec<MetadataValue> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Value::String(s) => Ok(string(s.as_str())),
            Value::Array(pair) => match (pair.first(), pair.get(1)) {
                (Some(Value::String(a)), Some(Value::String(b))) => Ok(string(format!("{a} {b}"))),
                _ => Err(anyhow!("{}: a merge is not two strings", path.display())),
            },
            _ => Err(anyhow!("{}: a merge is not a string", path.display())),
        })
        .collect::<Result<_>>()?;
    let pre =
        crate::gguf::tokenizer::pre_tokenizer_name(&json["pre_tokenizer"], !merges.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "{}: its pre-tokenizer {} is not one llama.cpp names (tokenizer.ggml.pre)",
                    path.display(),
                    json["pre_tokenizer"]
                )
            })?;
    let bundle = TokenizerBundle::from_hf_folder(dir)?;
    let id_of = |token: Option<&str>| token.and_then(|t| bundle.tokenizer.token_to_id(t));
    let config: Value = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let token_field = |key: &str| match &config[key] {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let mut out = vec![
        ("tokenizer.ggml.model".to_string(), string("gpt2")),
        ("tokenizer.ggml.pre".into(), string(pre)),
        (
            "tokenizer.ggml.tokens".into(),
            MetadataValue::Array(ValueType::String, names),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            MetadataValue::Array(ValueType::I32, kinds),
        ),
        (
            "tokenizer.ggml.merges".into(),
            MetadataValue::Array(ValueType::String, merges),
        ),
        (
            "tokenizer.ggml.add_bos_token".into(),
            MetadataValue::Bool(bundle.add_bos_token),
        ),
        (
            "tokenizer.ggml.add_eos_token".into(),
            MetadataValue::Bool(false),
        ),
    ];
    let ids = [
        ("bos_token_id", id_of(bundle.bos_token.as_deref())),
        ("eos_token_id", id_of(bundle.eos_token.as_deref())),
        ("unknown_token_id", id_of(model["unk_token"].as_str())),
        (
            "padding_token_id",
            id_of(token_field("pad_token").as_deref()),
        ),
    ];
    for (key, id) in ids {
        if let Some(id) = id {
            out.push((format!("tokenizer.ggml.{key}"), MetadataValue::U32(id)));
        }
    }
    if let Some(template) = &bundle.chat_template {
        out.push(("tokenizer.chat_template".into(), string(template.as_str())));
    }
    Ok(out)
}

/// Plans the adapter alone in llama.cpp's LoRA format: per adapted matrix
/// `<name>.lora_a` (ggml dims `[in, rank]`) and `<name>.lora_b` (`[rank,
/// out]`), `adapter.lora.alpha = scale * rank` (llama.cpp scales by
/// alpha / rank). Types: F32, F16 or Q8_0 (a rank that is not a whole
/// number of Q8_0 blocks keeps `lora_b` in F16).
pub fn plan_lora(
    base: &BaseModel,
    adapter: &Adapter,
    quant: GgufQuant,
    card: &ModelCard,
) -> Result<GgufPlan> {
    let model_type = &base.config.model_type;
    let arch = architecture(model_type).ok_or_else(|| {
        anyhow!("cannot write architecture `{model_type}` as GGUF (writable: llama, mistral, qwen2, qwen3, phi3)")
    })?;
    if adapter.settings.dora {
        bail!("a DoRA adapter cannot be written as a GGUF LoRA adapter (llama.cpp has no DoRA): export `gguf` to fuse it instead");
    }
    let target = match quant {
        GgufQuant::F32 => GgmlType::F32,
        GgufQuant::F16 => GgmlType::F16,
        GgufQuant::Q8_0 => GgmlType::Q8_0,
        other => bail!(
            "a GGUF LoRA adapter is written as f32, f16 or q8_0, not `{}`",
            other.name()
        ),
    };
    let heads = (
        base.config.num_attention_heads,
        base.config.num_key_value_heads(),
    );
    let mut specs = Vec::new();
    let mut makes = Vec::new();
    let mut rank = 0;
    for (module, layer) in &adapter.layers {
        let hf = format!("{module}.weight");
        let name = gguf_name(arch, &hf)
            .ok_or_else(|| anyhow!("the adapter's `{module}` has no llama.cpp name"))?;
        let (a, b) = (layer.lora_a.shape(), layer.lora_b.shape());
        let (inner, r, out) = (a[0] as usize, a[1] as usize, b[1] as usize);
        rank = r;
        specs.push(TensorSpec::from_shape(
            format!("{name}.lora_a"),
            &[r, inner],
            tensor_type(target, &[r, inner]),
        ));
        makes.push(Make::LoraA(module.clone()));
        specs.push(TensorSpec::from_shape(
            format!("{name}.lora_b"),
            &[out, r],
            tensor_type(target, &[out, r]),
        ));
        makes.push(Make::LoraB(
            module.clone(),
            permuted_heads(arch, &name, heads.0, heads.1),
        ));
    }
    let mut meta = BTreeMap::new();
    meta.insert("general.architecture".to_string(), string(arch));
    meta.insert("general.type".into(), string("adapter"));
    let title = if card.title.is_empty() {
        "LoRA adapter"
    } else {
        &card.title
    };
    meta.insert("general.name".into(), string(title));
    meta.insert("adapter.type".into(), string("lora"));
    meta.insert(
        "adapter.lora.alpha".into(),
        MetadataValue::F32(adapter.settings.scale * rank as f32),
    );
    let file_type = match target {
        GgmlType::Q8_0 => 7,
        GgmlType::F16 => 1,
        _ => 0,
    };
    meta.insert("general.file_type".into(), MetadataValue::U32(file_type));
    Ok(GgufPlan {
        file_name: ADAPTER_FILE,
        metadata: finish_metadata(meta, &specs),
        specs,
        makes,
    })
}

/// An array's f32 values in row-major order.
fn f32_values(array: &Array) -> Result<Vec<f32>> {
    let array = array.as_dtype(mlx_rs::Dtype::Float32)?.contiguous()?;
    array.eval()?;
    Ok(array
        .try_as_slice::<f32>()
        .map_err(|e| anyhow!("cannot read a tensor's values: {e}"))?
        .to_vec())
}

fn permuted(values: Vec<f32>, rows: usize, heads: Option<usize>, name: &str) -> Result<Vec<f32>> {
    let Some(heads) = heads else {
        return Ok(values);
    };
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = permute_rows(&bytes, rows, heads).map_err(|e| anyhow!("`{name}`: {e}"))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Writes the planned file into `dir`, one tensor at a time; `each` is
/// called after every tensor with its size and may stop the write (a
/// cancel) by returning an error.
pub fn write(
    plan: &GgufPlan,
    dir: &Path,
    base: &BaseModel,
    adapter: Option<&Adapter>,
    fuse: &dyn Fn(usize) -> Result<(Array, bool)>,
    each: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<GgufCounts> {
    let path = dir.join(plan.file_name);
    let mut writer = crate::gguf::GgufWriter::create(&path, &plan.metadata, plan.specs.clone())
        .map_err(|e| anyhow!("{e}"))?;
    let mut counts = GgufCounts::default();
    let layer = |module: &str| {
        adapter
            .and_then(|a| a.layers.get(module))
            .ok_or_else(|| anyhow!("the adapter has no `{module}`"))
    };
    for (spec, make) in plan.specs.iter().zip(&plan.makes) {
        let encode = |values: Vec<f32>| {
            quantize(spec.ggml_type, &values).map_err(|e| anyhow!("`{}`: {e}", spec.name))
        };
        let bytes = match make {
            Make::Copy(i) => {
                counts.copied += 1;
                let file = base.gguf_file().expect("copies come from a GGUF base");
                file.tensor_data(&file.tensors[*i])
                    .map_err(|e| anyhow!("{e}"))?
            }
            Make::Encode { base: i, heads } => {
                counts.encoded += 1;
                let (weight, fused) = fuse(*i)?;
                counts.fused += usize::from(fused);
                let values = f32_values(&weight)?;
                drop(weight);
                let rows = permuted_row_count(&spec.dims);
                encode(permuted(values, rows, *heads, &spec.name)?)?
            }
            Make::Values(values) => {
                counts.encoded += 1;
                encode(values.clone())?
            }
            Make::LoraA(module) => {
                counts.encoded += 1;
                encode(f32_values(&layer(module)?.lora_a.t())?)?
            }
            Make::LoraB(module, heads) => {
                counts.encoded += 1;
                let values = f32_values(&layer(module)?.lora_b.t())?;
                let rows = permuted_row_count(&spec.dims);
                encode(permuted(values, rows, *heads, &spec.name)?)?
            }
        };
        writer
            .write_tensor(&spec.name, &bytes)
            .map_err(|e| anyhow!("{e}"))?;
        each(bytes.len() as u64)?;
    }
    writer.finish().map_err(|e| anyhow!("{e}"))?;
    Ok(counts)
}

/// Ollama's prompt template and stop strings for the chat formats our
/// families use, recognised by their special tokens in the Jinja template
/// (Ollama templates are Go templates, not Jinja).
const OLLAMA_TEMPLATES: &[(&str, &str, &[&str])] = &[
    (
        "<|im_start|>",
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}\
         {{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}\
         <|im_start|>assistant\n",
        &["<|im_start|>", "<|im_end|>"],
    ),
    (
        "<|start_header_id|>",
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}\
         {{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}\
         <|start_header_id|>assistant<|end_header_id|>\n\n",
        &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    ),
    (
        "<|assistant|>",
        "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}\
         {{ range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
        &["<|end|>", "<|user|>", "<|assistant|>"],
    ),
];

/// LM Studio finds models as `publisher/model/file.gguf` under its models
/// folder (`~/.lmstudio/models`). The export holds that layout as
/// `lmstudio/loralab/<name>/<name>-<TYPE>.gguf`, a hard link to
/// `model.gguf` (the bytes are stored once), so copying `lmstudio/loralab`
/// there, or pointing LM Studio's models folder at `lmstudio`, lists it
/// with its quantization in the name. Returns the link's path relative to
/// `dir`.
pub fn lay_out_for_lm_studio(dir: &Path, plan: &GgufPlan, card: &ModelCard) -> Result<String> {
    let file_type = plan
        .metadata
        .iter()
        .find(|(key, _)| key == "general.file_type")
        .and_then(|(_, value)| value.as_u64())
        .and_then(crate::gguf::ggml_type::file_type_name)
        .unwrap_or("GGUF");
    let name = folder_name(&card.title);
    let relative = format!("{LM_STUDIO_DIR}/{LM_STUDIO_PUBLISHER}/{name}/{name}-{file_type}.gguf");
    let link = dir.join(&relative);
    let folder = link.parent().expect("the link has a folder");
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    std::fs::hard_link(dir.join(MODEL_FILE), &link)
        .with_context(|| format!("cannot link {} for LM Studio", link.display()))?;
    Ok(relative)
}

/// A title as a folder name LM Studio shows: letters, digits, `.`, `_`
/// and `-`, everything else one `-`.
fn folder_name(title: &str) -> String {
    let mut name = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_matches(|c| c == '-' || c == '.');
    if name.is_empty() {
        "model".to_string()
    } else {
        name.to_string()
    }
}

/// An Ollama Modelfile for the export: `FROM ./model.gguf`, or for the
/// adapter `FROM` the base and `ADAPTER ./adapter.gguf`; the family's
/// `TEMPLATE` and stop `PARAMETER`s when its chat template is one we know
/// (else Ollama falls back to the template in the GGUF).
pub fn modelfile(plan: &GgufPlan, base: &BaseModel, card: &ModelCard) -> Result<String> {
    let mut text = format!("# {}\n", card.title);
    if plan.file_name == ADAPTER_FILE {
        let from = match (base.is_gguf(), &card.hub_repo) {
            (true, _) => base.path.display().to_string(),
            (false, Some(repo)) => format!("hf.co/{repo}"),
            (false, None) => card.base_name.clone(),
        };
        text.push_str("# The adapter applies to this base, which Ollama must have as a GGUF.\n");
        text.push_str(&format!("FROM {from}\nADAPTER ./{ADAPTER_FILE}\n"));
    } else {
        text.push_str(&format!("FROM ./{MODEL_FILE}\n"));
    }
    let template = match base.gguf_file() {
        Some(file) => file
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        None => TokenizerBundle::from_hf_folder(&base.path)
            .ok()
            .and_then(|b| b.chat_template),
    };
    let known = template.as_deref().and_then(|t| {
        OLLAMA_TEMPLATES
            .iter()
            .find(|(marker, ..)| t.contains(marker))
    });
    if let Some((_, go_template, stops)) = known {
        text.push_str(&format!("TEMPLATE \"\"\"{go_template}\"\"\"\n"));
        for stop in *stops {
            text.push_str(&format!("PARAMETER stop \"{stop}\"\n"));
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::folder_name;

    #[test]
    fn lm_studio_folder_names_keep_what_a_folder_name_may_hold() {
        assert_eq!(folder_name("ahoy run #3 · step 60"), "ahoy-run-3-step-60");
        assert_eq!(folder_name("SmolLM2-135M_v1.2"), "SmolLM2-135M_v1.2");
        assert_eq!(folder_name("../../etc"), "etc");
        assert_eq!(folder_name("· ·"), "model");
    }
}
