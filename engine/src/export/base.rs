//! The base model of an export, tensor by tensor in Hugging Face naming:
//! an HF folder (dense, or mlx-community's quantized triples) or a GGUF file
//! (any type our reader converts, K-quants included). Each tensor is read
//! and made dense f32 only when asked for, so an export holds one tensor of
//! the base at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use mlx_rs::{ops::dequantize, Array, Dtype};
use serde_json::Value;

use crate::gguf::names::{
    hf_name, is_auxiliary, permuted_heads, permuted_row_count, unpermute_rows,
};
use crate::gguf::{tensor_to_mlx, GgufFile, MlxTensor};
use crate::model_config::{ModelConfig, Quantization};
use crate::tokenizer::TokenizerBundle;

/// One tensor of the base as the export writes it: its HF name and its
/// logical (dequantized) shape.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseTensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// The quantization it is stored with, for matrices stored quantized.
    pub quantized: Option<Quantization>,
}

pub struct BaseModel {
    pub path: PathBuf,
    pub config: ModelConfig,
    /// `config.json` as an HF folder has it (kept whole in the export, so
    /// a family's own keys survive); None for a GGUF base.
    pub raw_config: Option<Value>,
    pub tensors: Vec<BaseTensor>,
    source: Source,
}

enum Source {
    /// MLX loads safetensors lazily: an array is read from its file when
    /// it is evaluated.
    Hf(HashMap<String, Array>),
    Gguf {
        file: GgufFile,
        /// HF name -> index in `file.tensors`.
        index: HashMap<String, usize>,
    },
}

impl BaseModel {
    /// Opens a GGUF file or an HF model folder; reads headers only.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            open_hf(path)
        } else if path.is_file() {
            open_gguf(path)
        } else {
            bail!(
                "model {} does not exist: give a GGUF file or a model folder",
                path.display()
            )
        }
    }

    pub fn is_gguf(&self) -> bool {
        matches!(self.source, Source::Gguf { .. })
    }

    /// The base's GGUF file, when it is one: a GGUF export copies its
    /// metadata and the bytes of tensors the adapter leaves alone.
    pub fn gguf_file(&self) -> Option<&GgufFile> {
        match &self.source {
            Source::Gguf { file, .. } => Some(file),
            Source::Hf(_) => None,
        }
    }

    /// The position in `tensors` of the tensor named `name` (HF naming).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }

    /// Whether any matrix of the base is stored quantized.
    pub fn is_quantized(&self) -> bool {
        self.tensors.iter().any(|t| t.quantized.is_some())
    }

    pub fn tokenizer(&self) -> Result<TokenizerBundle> {
        match &self.source {
            Source::Hf(_) => TokenizerBundle::from_hf_folder(&self.path),
            Source::Gguf { file, .. } => {
                TokenizerBundle::from_gguf(file).map_err(|e| anyhow!("{e}"))
            }
        }
    }

    /// Tensor `tensors[i]` as a dense f32 array (evaluated).
    pub fn dense(&self, i: usize) -> Result<Array> {
        let tensor = &self.tensors[i];
        let name = &tensor.name;
        let array = match &self.source {
            Source::Hf(map) => {
                let get = |n: &str| {
                    map.get(n)
                        .ok_or_else(|| anyhow!("{}: missing tensor `{n}`", self.path.display()))
                };
                match tensor.quantized {
                    None => get(name)?.clone(),
                    Some(q) => {
                        let module = name.strip_suffix(".weight").expect("checked at open");
                        dequantize(
                            get(name)?,
                            get(&format!("{module}.scales"))?,
                            get(&format!("{module}.biases"))?,
                            q.group_size as i32,
                            i32::from(q.bits),
                        )?
                    }
                }
            }
            Source::Gguf { file, index } => {
                let info = &file.tensors[index[name]];
                let mut bytes = file.tensor_data(info)?;
                let (heads, kv_heads) = (
                    self.config.num_attention_heads,
                    self.config.num_key_value_heads(),
                );
                let arch = gguf_architecture(file)?;
                if let Some(heads) = permuted_heads(&arch, &info.name, heads, kv_heads) {
                    bytes = unpermute_rows(&bytes, permuted_row_count(&info.dims), heads)
                        .map_err(|e| anyhow!("{}: `{}`: {e}", self.path.display(), info.name))?;
                }
                match tensor_to_mlx(info, &bytes)
                    .map_err(|e| anyhow!("{}: `{}` {e}", self.path.display(), info.name))?
                {
                    MlxTensor::Dense(array) => array,
                    MlxTensor::Quantized {
                        weight,
                        scales,
                        biases,
                        bits,
                        group_size,
                    } => dequantize(
                        &weight,
                        &scales,
                        &biases,
                        group_size as i32,
                        i32::from(bits),
                    )?,
                }
            }
        };
        let array = array.as_dtype(Dtype::Float32)?;
        array
            .eval()
            .with_context(|| format!("reading `{name}` from {}", self.path.display()))?;
        Ok(array)
    }
}

fn gguf_architecture(file: &GgufFile) -> Result<String> {
    crate::gguf::config::architecture(file).map_err(|e| anyhow!("{e}"))
}

fn open_hf(dir: &Path) -> Result<BaseModel> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let raw_config: Value =
        serde_json::from_str(&text).with_context(|| format!("{}", config_path.display()))?;
    let config: ModelConfig = serde_json::from_value(raw_config.clone())
        .with_context(|| format!("{}", config_path.display()))?;
    crate::models::Family::from_model_type(&config.model_type)?;
    let mut map = HashMap::new();
    for file in crate::models::weight_files(dir)? {
        let loaded = Array::load_safetensors(&file)
            .map_err(|e| anyhow!("cannot load {}: {e}", file.display()))?;
        map.extend(loaded);
    }
    let mut names: Vec<&String> = map
        .keys()
        .filter(|name| !name.ends_with(".scales") && !name.ends_with(".biases"))
        .collect();
    names.sort_by(|a, b| natural_order(a, b));
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let array = &map[name];
        let module = name.strip_suffix(".weight");
        let scales = module.and_then(|m| map.get(&format!("{m}.scales")));
        let (shape, quantized) = match (module, scales) {
            (Some(_), Some(scales)) => {
                let (out, packed) = match array.shape() {
                    [out, packed] => (*out as usize, *packed as usize),
                    other => bail!(
                        "{}: quantized `{name}` has shape {other:?}, expected 2 dimensions",
                        dir.display()
                    ),
                };
                let q = stored_quantization(&raw_config, module.expect("matched")).ok_or_else(
                    || {
                        anyhow!(
                            "{}: `{name}` is quantized but config.json has no `quantization`",
                            dir.display()
                        )
                    },
                )?;
                let groups = scales.shape().get(1).copied().unwrap_or(0) as usize;
                let in_dim = groups * q.group_size;
                if in_dim == 0 || packed * 32 != in_dim * usize::from(q.bits) {
                    bail!(
                        "{}: quantized `{name}` (packed {packed}, {groups} groups) does not fit \
                         {} bits in groups of {}",
                        dir.display(),
                        q.bits,
                        q.group_size
                    );
                }
                (vec![out, in_dim], Some(q))
            }
            _ => (array.shape().iter().map(|&d| d as usize).collect(), None),
        };
        tensors.push(BaseTensor {
            name: name.clone(),
            shape,
            quantized,
        });
    }
    Ok(BaseModel {
        path: dir.to_path_buf(),
        config,
        raw_config: Some(raw_config),
        tensors,
        source: Source::Hf(map),
    })
}

/// The quantization config.json gives a module: its own entry (mlx-lm's
/// mixed recipes list modules by path), else the global one.
fn stored_quantization(raw_config: &Value, module: &str) -> Option<Quantization> {
    let entry = raw_config
        .get("quantization")
        .or_else(|| raw_config.get("quantization_config"))?;
    let read = |v: &Value| -> Option<Quantization> {
        Some(Quantization {
            group_size: v.get("group_size")?.as_u64()? as usize,
            bits: v.get("bits")?.as_u64()? as u8,
        })
    };
    entry.get(module).and_then(read).or_else(|| read(entry))
}

fn open_gguf(path: &Path) -> Result<BaseModel> {
    let (config, _) = crate::gguf::inspect_gguf(path).map_err(|e| anyhow!("{e}"))?;
    let file = GgufFile::open(path).map_err(|e| anyhow!("{e}"))?;
    let arch = gguf_architecture(&file)?;
    let mut index = HashMap::new();
    let mut tensors = Vec::new();
    for (i, info) in file.tensors.iter().enumerate() {
        if is_auxiliary(&info.name) {
            continue;
        }
        let name = hf_name(&arch, &info.name).ok_or_else(|| {
            anyhow!(
                "{}: tensor `{}` has no Hugging Face counterpart",
                path.display(),
                info.name
            )
        })?;
        index.insert(name.clone(), i);
        tensors.push(BaseTensor {
            name,
            shape: info.shape(),
            quantized: crate::gguf::mlx_quantization(info.ggml_type),
        });
    }
    tensors.sort_by(|a, b| natural_order(&a.name, &b.name));
    Ok(BaseModel {
        path: path.to_path_buf(),
        config,
        raw_config: None,
        tensors,
        source: Source::Gguf { file, index },
    })
}

/// Orders names as a model reads: layer numbers numerically
/// (`layers.2` before `layers.10`), everything else by text.
pub fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(name: &str) -> (Option<usize>, &str, &str) {
        match name.split_once("layers.") {
            Some((head, rest)) => {
                let (number, tail) = rest.split_once('.').unwrap_or((rest, ""));
                match number.parse() {
                    Ok(n) => (Some(n), head, tail),
                    Err(_) => (None, name, ""),
                }
            }
            None => (None, name, ""),
        }
    }
    let (ka, kb) = (key(a), key(b));
    // Embeddings first, then layers, then the rest (norm, lm_head).
    let rank = |k: &(Option<usize>, &str, &str), name: &str| -> u8 {
        if name.contains("embed_tokens") {
            0
        } else if k.0.is_some() {
            1
        } else {
            2
        }
    };
    rank(&ka, a)
        .cmp(&rank(&kb, b))
        .then(ka.0.cmp(&kb.0))
        .then(ka.2.cmp(kb.2))
        .then(a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::natural_order;

    #[test]
    fn layers_sort_numerically_between_embeddings_and_head() {
        let mut names = vec![
            "lm_head.weight",
            "model.layers.10.mlp.up_proj.weight",
            "model.norm.weight",
            "model.layers.2.self_attn.q_proj.weight",
            "model.embed_tokens.weight",
            "model.layers.2.input_layernorm.weight",
        ];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(
            names,
            [
                "model.embed_tokens.weight",
                "model.layers.2.input_layernorm.weight",
                "model.layers.2.self_attn.q_proj.weight",
                "model.layers.10.mlp.up_proj.weight",
                "lm_head.weight",
                "model.norm.weight",
            ]
        );
    }
}
