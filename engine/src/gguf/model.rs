//! A GGUF file as a model: HF-named MLX weights, the `ModelConfig` and the
//! tokenizer, ready for `build_model`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mlx_rs::Array;

use super::config::{architecture, model_config};
use super::error::{GgufError, Result};
use super::ggml_type::file_type_name;
use super::names::{hf_name, is_auxiliary, permuted_heads, permuted_row_count, unpermute_rows};
use super::reader::GgufFile;
use super::to_mlx::{mlx_quantization, tensor_to_mlx, MlxTensor};
use crate::model_config::{ModelConfig, Quantization};
use crate::tokenizer::TokenizerBundle;

pub struct GgufModel {
    pub config: ModelConfig,
    /// HF names; a quantized linear or embedding `X` appears as `X.weight`
    /// (packed u32), `X.scales` and `X.biases`.
    pub weights: HashMap<String, Array>,
    pub tokenizer: TokenizerBundle,
    pub summary: GgufSummary,
}

/// What a user sees about a GGUF file before training on it.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufSummary {
    pub path: PathBuf,
    pub version: u32,
    pub architecture: String,
    /// `general.name`.
    pub name: Option<String>,
    pub file_size: u64,
    pub parameter_count: u64,
    /// The quantization mix `general.file_type` names ("Q4_K_M"), where the
    /// file says one we know.
    pub file_type: Option<String>,
    /// Tensor count per ggml type name ("Q4_1" -> 210).
    pub tensor_types: BTreeMap<String, usize>,
    /// Quantization of each quantized module, by HF module path
    /// ("model.embed_tokens" -> 8 bits). A file may mix widths (SmolLM2's
    /// Q4_1 file has an 8-bit embedding); `config.quantization` holds the
    /// most common one.
    pub quantized: BTreeMap<String, Quantization>,
    /// Every metadata entry, shortened for display (long arrays cut).
    pub metadata: BTreeMap<String, String>,
}

/// Config and summary of a GGUF model from its header alone (no tensor data
/// is read: ~50 ms for SmolLM2), for showing a file before loading it. Fails
/// as `load_gguf_model` would on unsupported architectures, keys or names.
pub fn inspect_gguf(path: &Path) -> Result<(ModelConfig, GgufSummary)> {
    let file = GgufFile::open(path)?;
    let plan = plan(&file)?;
    Ok((plan.config, plan.summary))
}

pub fn load_gguf_model(path: &Path) -> Result<GgufModel> {
    let file = GgufFile::open(path)?;
    let Plan {
        config,
        summary,
        names,
    } = plan(&file)?;
    let tokenizer = TokenizerBundle::from_gguf(&file)?;
    let arch = &summary.architecture;
    let (n_head, n_head_kv) = (config.num_attention_heads, config.num_key_value_heads());

    let mut weights = HashMap::new();
    for (info, name) in file.tensors.iter().zip(names) {
        let Some(name) = name else { continue };
        let mut bytes = file.tensor_data(info)?;
        if let Some(heads) = permuted_heads(arch, &info.name, n_head, n_head_kv) {
            bytes = unpermute_rows(&bytes, permuted_row_count(&info.dims), heads)
                .map_err(|e| file.tensor_error(&info.name, e))?;
        }
        match tensor_to_mlx(info, &bytes).map_err(|e| file.tensor_error(&info.name, e))? {
            MlxTensor::Dense(array) => {
                weights.insert(name, array);
            }
            MlxTensor::Quantized {
                weight,
                scales,
                biases,
                ..
            } => {
                let module = name
                    .strip_suffix(".weight")
                    .expect("plan() allows only weights to be quantized");
                weights.insert(format!("{module}.scales"), scales);
                weights.insert(format!("{module}.biases"), biases);
                weights.insert(name, weight);
            }
        }
    }
    Ok(GgufModel {
        config,
        weights,
        tokenizer,
        summary,
    })
}

/// Everything decided from the header: the config, the summary and each
/// tensor's HF name (None for tensors folded into the config).
struct Plan {
    config: ModelConfig,
    summary: GgufSummary,
    names: Vec<Option<String>>,
}

fn plan(file: &GgufFile) -> Result<Plan> {
    let arch = architecture(file)?;
    let mut config = model_config(file)?;
    let mut names = Vec::with_capacity(file.tensors.len());
    let mut quantized = BTreeMap::new();
    let mut tensor_types = BTreeMap::new();
    let mut parameter_count = 0;
    for info in &file.tensors {
        *tensor_types
            .entry(info.ggml_type.name().to_string())
            .or_insert(0) += 1;
        if is_auxiliary(&info.name) {
            names.push(None);
            continue;
        }
        let name = hf_name(&arch, &info.name).ok_or_else(|| {
            file.tensor_error(
                &info.name,
                format!("has no Hugging Face counterpart in a `{arch}` model"),
            )
        })?;
        if let Some(q) = mlx_quantization(info.ggml_type) {
            let module = name.strip_suffix(".weight").ok_or_else(|| {
                file.tensor_error(
                    &info.name,
                    format!("a {} tensor must be a weight", info.ggml_type),
                )
            })?;
            quantized.insert(module.to_string(), q);
        }
        parameter_count += info.n_elements();
        names.push(Some(name));
    }
    config.quantization = most_common(quantized.values().copied());
    let path = file.path();
    let summary = GgufSummary {
        path: path.to_path_buf(),
        version: file.version,
        architecture: arch,
        name: file
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        file_size: std::fs::metadata(path)
            .map_err(|source| GgufError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len(),
        parameter_count,
        file_type: file
            .get("general.file_type")
            .and_then(|v| v.as_u64())
            .and_then(file_type_name)
            .map(str::to_string),
        tensor_types,
        quantized,
        metadata: file
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    };
    Ok(Plan {
        config,
        summary,
        names,
    })
}

fn most_common(items: impl Iterator<Item = Quantization>) -> Option<Quantization> {
    let mut counts: Vec<(Quantization, usize)> = Vec::new();
    for q in items {
        match counts.iter_mut().find(|(seen, _)| *seen == q) {
            Some((_, n)) => *n += 1,
            None => counts.push((q, 1)),
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(q, _)| q)
}

impl GgufModel {
    /// Replaces every quantized triple by its dequantized f32 weight and
    /// clears `config.quantization`. On the CPU, f32 matmuls are ~60x faster
    /// than quantized ones, so training there wants dense weights; the
    /// legacy quants convert without loss, so nothing changes numerically.
    pub fn dequantize_weights(&mut self) -> Result<()> {
        for (module, q) in std::mem::take(&mut self.summary.quantized) {
            let take = |weights: &mut HashMap<String, Array>, suffix: &str| {
                weights
                    .remove(&format!("{module}.{suffix}"))
                    .expect("quantized modules have all three arrays")
            };
            let weight = take(&mut self.weights, "weight");
            let scales = take(&mut self.weights, "scales");
            let biases = take(&mut self.weights, "biases");
            let dense = mlx_rs::ops::dequantize(
                &weight,
                &scales,
                &biases,
                q.group_size as i32,
                q.bits as i32,
            )
            .and_then(|a| {
                // Evaluate now so each packed tensor is freed before the next.
                a.eval()?;
                Ok(a)
            })
            .map_err(|source| GgufError::Mlx {
                path: self.summary.path.clone(),
                source,
            })?;
            self.weights.insert(format!("{module}.weight"), dense);
        }
        self.config.quantization = None;
        Ok(())
    }
}
