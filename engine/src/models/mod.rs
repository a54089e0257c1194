//! Decoder-only language models in Hugging Face's weight naming: one shared
//! decoder (`decoder`, `layers`) and one small file per family describing how
//! it differs. Weights come from an HF folder (`load_hf_folder`) or from any
//! other source that produces HF names (`build_model`, used by the GGUF reader).

mod adapter;
mod batch_cache;
mod decoder;
mod folder_check;
pub(crate) mod full;
mod fused;
mod grad_checkpoint;
mod layers;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;
mod stacked;
mod weights;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, Dtype};

pub use adapter::{AdapterSettings, LoraState};
pub use batch_cache::BatchKvCache;
pub use decoder::{BlockLayout, KvCache};
pub use folder_check::check_model_folder;
pub(crate) use fused::logsumexp_last;
pub(crate) use layers::LinearWeight;
pub use layers::{Linear, Pass};
pub use stacked::RowAdapters;

use crate::config::{ComputeDtype, QuantizeOnLoad};
use crate::model_config::ModelConfig;
use decoder::{Attend, DecoderLayer};
use layers::{Embedding, RmsNorm};
use weights::{Placement, WeightMap};

/// The model families this engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
}

pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "phi3"];

impl Family {
    pub fn from_model_type(model_type: &str) -> Result<Self> {
        Ok(match model_type {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "phi3" => Family::Phi3,
            other => bail!(
                "unsupported model_type `{other}` (supported: {})",
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
        })
    }

    fn layout(self, config: &ModelConfig) -> Result<BlockLayout> {
        Ok(match self {
            Family::Llama => llama::layout(config),
            Family::Qwen2 => qwen2::layout(),
            Family::Qwen3 => qwen3::layout(),
            Family::Phi3 => phi3::layout(config)?,
        })
    }
}

#[derive(Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub family: Family,
    embed_tokens: Embedding,
    pub(crate) layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `None` when the output head shares the embedding matrix.
    lm_head: Option<Linear>,
    /// LoRA parameters, when adapters are attached (see `adapter`).
    pub(crate) lora: Option<LoraState>,
    /// Dtype of the activations (f32 on the CPU).
    pub compute_dtype: Dtype,
    placement: Placement,
    /// Whether the base weights are (or were, before dequantizing for the
    /// CPU) affine-quantized.
    pub quantized: bool,
    /// The scale of each adapter stacked for per-row use (empty without a
    /// stack; see `stacked`).
    stacked_scales: Vec<f32>,
}

/// Reads an HF model folder: `config.json` plus `model.safetensors`, or the
/// shards listed in `model.safetensors.index.json` (else every
/// `model*.safetensors`).
pub fn load_hf_folder(dir: &Path, compute: ComputeDtype) -> Result<Model> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| anyhow!("cannot read {}: {e}", config_path.display()))?;
    let config: ModelConfig =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
    let mut tensors = HashMap::new();
    for file in weight_files(dir)? {
        let loaded = Array::load_safetensors(&file)
            .map_err(|e| anyhow!("cannot load {}: {e}", file.display()))?;
        tensors.extend(loaded);
    }
    build_model(&config, tensors, compute).map_err(|e| anyhow!("{}: {e:#}", dir.display()))
}

pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index_path = dir.join("model.safetensors.index.json");
    if index_path.exists() {
        let text = std::fs::read_to_string(&index_path)
            .map_err(|e| anyhow!("cannot read {}: {e}", index_path.display()))?;
        let index: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", index_path.display()))?;
        let map = index
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| anyhow!("{}: no `weight_map` object", index_path.display()))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .map(|v| {
                // A plain name: an index must not point outside its folder.
                v.as_str()
                    .filter(|name| Path::new(name).file_name() == Some(std::ffi::OsStr::new(name)))
                    .map(|name| dir.join(name))
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: `weight_map` values must be file names in the folder, got {v}",
                            index_path.display()
                        )
                    })
            })
            .collect::<Result<_>>()?;
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("cannot read folder {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("model") && name.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no model*.safetensors files", dir.display());
    }
    Ok(files)
}

/// Where weights live while computing: f32 on the CPU for `Auto` (quantized
/// and half matmuls are far slower there), as stored on a GPU.
fn placement(compute: ComputeDtype) -> Placement {
    match compute {
        ComputeDtype::Auto => {
            if crate::device::is_gpu() {
                Placement::Keep
            } else {
                Placement::Dense(Dtype::Float32)
            }
        }
        ComputeDtype::Float32 => Placement::Dense(Dtype::Float32),
        ComputeDtype::Bfloat16 => Placement::Dense(Dtype::Bfloat16),
        ComputeDtype::Float16 => Placement::Dense(Dtype::Float16),
    }
}

/// Builds a model from tensors in HF naming (`model.layers.N.self_attn.q_proj.weight`,
/// ...; quantized matrices as `weight`/`scales`/`biases` triples).
pub fn build_model(
    config: &ModelConfig,
    weights: HashMap<String, Array>,
    compute: ComputeDtype,
) -> Result<Model> {
    build_with_placement(config, weights, placement(compute))
}

/// Like `build_model`, but keeps every tensor as stored (quantized stays
/// quantized) whatever the device: what `Auto` does on a GPU. On the CPU it
/// is slow; it exists so the quantized compute path can be checked anywhere.
pub fn build_model_as_stored(
    config: &ModelConfig,
    weights: HashMap<String, Array>,
) -> Result<Model> {
    build_with_placement(config, weights, Placement::Keep)
}

fn build_with_placement(
    config: &ModelConfig,
    weights: HashMap<String, Array>,
    placement: Placement,
) -> Result<Model> {
    let family = Family::from_model_type(&config.model_type)?;
    validate(config)?;
    let layout = family.layout(config)?;
    let quantized = weights.keys().any(|k| k.ends_with(".scales"));
    let mut w = WeightMap::new(weights, placement);

    let embed_tokens = w.embedding("model.embed_tokens", config.vocab_size, config.hidden_size)?;
    let layers = decoder::load_layers(&mut w, config, layout)?;
    let norm = w.rms_norm("model.norm", config.hidden_size, config.rms_norm_eps)?;
    // mlx-lm ties when the config says so and also, for several families,
    // by default; a checkpoint without `lm_head` can only mean tied.
    let tied = config.tie_word_embeddings || !w.contains("lm_head.weight");
    let lm_head = if tied {
        w.discard("lm_head.weight");
        None
    } else {
        Some(w.linear("lm_head", config.hidden_size, config.vocab_size, false)?)
    };
    w.finish()?;

    let compute_dtype = match placement {
        Placement::Dense(dtype) => dtype,
        Placement::Keep => match &embed_tokens.weight {
            layers::LinearWeight::Dense(e) => e.dtype(),
            layers::LinearWeight::Quantized { scales, .. } => scales.dtype(),
        },
    };
    let model = Model {
        config: config.clone(),
        family,
        embed_tokens,
        layers,
        norm,
        lm_head,
        lora: None,
        compute_dtype,
        placement,
        quantized,
        stacked_scales: Vec::new(),
    };
    model.eval_weights()?;
    Ok(model)
}

fn validate(c: &ModelConfig) -> Result<()> {
    let positive = [
        ("hidden_size", c.hidden_size),
        ("num_hidden_layers", c.num_hidden_layers),
        ("intermediate_size", c.intermediate_size),
        ("num_attention_heads", c.num_attention_heads),
        ("num_key_value_heads", c.num_key_value_heads()),
        ("head_dim", c.head_dim()),
        ("vocab_size", c.vocab_size),
    ];
    for (field, value) in positive {
        if value == 0 {
            bail!("config field `{field}` must be positive");
        }
    }
    if !c
        .num_attention_heads
        .is_multiple_of(c.num_key_value_heads())
    {
        bail!(
            "config: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
            c.num_attention_heads,
            c.num_key_value_heads()
        );
    }
    if c.head_dim.is_none() && !c.hidden_size.is_multiple_of(c.num_attention_heads) {
        bail!(
            "config: hidden_size ({}) is not divisible by num_attention_heads ({}) and no head_dim is given",
            c.hidden_size,
            c.num_attention_heads
        );
    }
    Ok(())
}

impl Model {
    /// Logits `[batch, length, vocab]` for `tokens` `[batch, length]`, with
    /// attached adapters applied (no dropout).
    pub fn forward(&self, tokens: &Array) -> Result<Array> {
        let params = self.lora_params();
        self.forward_with(
            tokens,
            &Pass {
                lora: &params,
                dropout_seed: None,
                grad_checkpoint: false,
            },
            None,
        )
    }

    /// One decoding step (or a prompt) against `cache`; returns the logits of
    /// every new position and advances the cache.
    pub fn forward_cached(&self, tokens: &Array, cache: &mut KvCache) -> Result<Array> {
        let params = self.lora_params();
        let pass = Pass {
            lora: &params,
            dropout_seed: None,
            grad_checkpoint: false,
        };
        let logits = self.forward_with(tokens, &pass, Some(cache))?;
        cache.advance(tokens.dim(1) as usize);
        Ok(logits)
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// A cache for a batch whose row `i` starts with `pads[i]` padding
    /// positions (prompts left-padded to one length).
    pub fn new_batch_cache(&self, pads: Vec<usize>) -> BatchKvCache {
        BatchKvCache::new(self.layers.len(), pads)
    }

    /// One step of a batch (`tokens` `[rows, length]`, each row with its
    /// adapter from the stack, see [`Self::with_stacked_adapters`]) against
    /// `cache`: returns the logits of each row's last new position,
    /// `[rows, vocab]`, and advances the cache.
    pub fn forward_rows(
        &self,
        tokens: &Array,
        cache: &mut BatchKvCache,
        rows: &RowAdapters,
    ) -> Result<Array> {
        if tokens.ndim() != 2 || tokens.dim(0) as usize != cache.rows() {
            bail!(
                "tokens must be [rows, length] for a cache of {} rows, got shape {:?}",
                cache.rows(),
                tokens.shape()
            );
        }
        if rows.len() != cache.rows() {
            bail!(
                "{} row adapters for a cache of {} rows",
                rows.len(),
                cache.rows()
            );
        }
        let new = tokens.dim(1) as usize;
        let positions = cache.positions();
        let mask = cache.mask(new)?;
        let mut h = self.embed_tokens.lookup(tokens)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let (slot, start) = cache.slot(i);
            let attend = Attend::Rows {
                slot,
                start,
                positions: &positions,
                mask: &mask,
            };
            h = layer.forward_rows(&h, rows, attend)?;
        }
        cache.advance(new);
        // Only the last position's logits are wanted: the output head (the
        // widest matmul) skips the others.
        let last = h.index((.., -1.., ..));
        let h = self.norm.forward(&last)?;
        let logits = self.head(
            &h,
            &Pass {
                lora: &[],
                dropout_seed: None,
                grad_checkpoint: false,
            },
        )?;
        Ok(logits.squeeze_axes(&[1])?)
    }

    /// The forward pass with explicit LoRA parameters, so gradients can be
    /// taken with respect to them.
    pub fn forward_with(
        &self,
        tokens: &Array,
        pass: &Pass,
        cache: Option<&mut KvCache>,
    ) -> Result<Array> {
        let h = self.hidden(tokens, pass, cache)?;
        self.head(&h, pass)
    }

    /// The final hidden states (after the last norm), `[batch, length, hidden]`.
    pub fn hidden(
        &self,
        tokens: &Array,
        pass: &Pass,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Array> {
        if tokens.ndim() != 2 {
            bail!(
                "tokens must be [batch, length], got shape {:?}",
                tokens.shape()
            );
        }
        let mut h = self.embed_tokens.lookup(tokens)?;
        // A full fine-tune's blocks from here on train their own weights.
        let first_trained = self.lora.as_ref().and_then(|lora| lora.full_from);
        for (i, layer) in self.layers.iter().enumerate() {
            h = match cache.as_mut() {
                Some(cache) => layer.forward(&h, pass, Some(cache.slot(i)))?,
                None if pass.grad_checkpoint => {
                    let trained = first_trained.is_some_and(|first| i >= first);
                    layer.forward_checkpointed(&h, pass, trained)?
                }
                None => layer.forward(&h, pass, None)?,
            };
        }
        self.norm.forward(&h)
    }

    /// Logits `[batch, length, vocab]` of the final hidden states `h`.
    pub fn head(&self, h: &Array, pass: &Pass) -> Result<Array> {
        match &self.lm_head {
            Some(head) => head.forward(h, pass),
            None => self.embed_tokens.as_linear(h),
        }
    }

    /// The output head's rows for `tokens` (same shape plus the hidden
    /// axis), such that `logit[t] = h . rows[t]` (plus the head's bias, when
    /// it has one). The loss picks its target logits that way instead of
    /// indexing the logits, whose gradient would scatter into a tensor the
    /// size of the logits.
    pub(crate) fn head_rows(&self, tokens: &Array) -> Result<Option<Array>> {
        match &self.lm_head {
            None => Ok(Some(self.embed_tokens.lookup(tokens)?)),
            Some(head) if head.bias.is_none() && !head.has_lora() => {
                Ok(Some(head.weight.rows(tokens)?))
            }
            Some(_) => Ok(None),
        }
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Parameter count of the base model, quantized matrices counted at
    /// their logical size (as mlx-lm reports it).
    pub fn total_parameters(&self) -> u64 {
        let c = &self.config;
        let mut total = (c.vocab_size * c.hidden_size) as u64;
        if self.lm_head.is_some() {
            total += (c.vocab_size * c.hidden_size) as u64;
        }
        total += c.hidden_size as u64;
        for layer in &self.layers {
            total += layer.parameter_count();
        }
        total
    }

    /// Current LoRA parameters (empty without adapters).
    pub fn lora_params(&self) -> Vec<Array> {
        self.lora
            .as_ref()
            .map(|l| l.params.clone())
            .unwrap_or_default()
    }

    /// QLoRA's quantize-on-load: every dense matrix whose input width is a
    /// multiple of `group_size` (mlx-lm's rule) becomes MLX affine-quantized.
    /// On a GPU the quantized form is kept; on the CPU (`Auto`) the matrices
    /// are dequantized back to f32, so training sees the quantized values at
    /// f32 speed. Must run before adapters are attached.
    pub fn quantize(&mut self, q: QuantizeOnLoad) -> Result<()> {
        if self.lora.is_some() {
            bail!("quantize the base model before attaching adapters");
        }
        if self.quantized {
            bail!("`quantize` is set but the model is already quantized");
        }
        if ![2, 3, 4, 5, 6, 8].contains(&q.bits) {
            bail!(
                "quantize.bits must be one of 2, 3, 4, 5, 6, 8, got {}",
                q.bits
            );
        }
        if ![32, 64, 128].contains(&q.group_size) {
            bail!(
                "quantize.group_size must be 32, 64 or 128, got {}",
                q.group_size
            );
        }
        let placement = self.placement;
        let convert = |weight: &mut layers::LinearWeight, in_dim: usize| -> Result<()> {
            let layers::LinearWeight::Dense(dense) = weight else {
                return Ok(());
            };
            if !in_dim.is_multiple_of(q.group_size) {
                return Ok(());
            }
            let (gs, bits) = (q.group_size as i32, i32::from(q.bits));
            let (w, scales, biases) = mlx_rs::ops::quantize(&*dense, gs, bits)?;
            *weight = match placement {
                Placement::Keep => layers::LinearWeight::Quantized {
                    weight: w,
                    scales,
                    biases,
                    group_size: gs,
                    bits,
                },
                Placement::Dense(dtype) => layers::LinearWeight::Dense(
                    mlx_rs::ops::dequantize(&w, &scales, &biases, gs, bits)?.as_dtype(dtype)?,
                ),
            };
            Ok(())
        };
        convert(&mut self.embed_tokens.weight, self.config.hidden_size)?;
        if let Some(head) = &mut self.lm_head {
            convert(&mut head.weight, head.in_dim)?;
        }
        for layer in &mut self.layers {
            for (_, linear) in layer.linears_mut() {
                convert(&mut linear.weight, linear.in_dim)?;
            }
        }
        self.quantized = true;
        self.eval_weights()
    }

    fn eval_weights(&self) -> Result<()> {
        // Dequantize/cast now, once, rather than on every forward pass.
        let mut arrays: Vec<&Array> = vec![&self.norm.weight];
        self.embed_tokens.weight.arrays(&mut arrays);
        if let Some(head) = &self.lm_head {
            head.weight.arrays(&mut arrays);
        }
        mlx_rs::transforms::eval(arrays)?;
        for layer in &self.layers {
            layer.eval_weights()?;
        }
        Ok(())
    }
}

/// Reads `config.json` of an HF folder (for callers that need the
/// architecture before loading weights).
pub fn read_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}
