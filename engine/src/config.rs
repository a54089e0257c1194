//! The training configuration: mlx-lm's `lora` config keys (so an mlx-lm
//! user's YAML runs as is) plus Loralab's extras beside them.

use serde::{Deserialize, Serialize};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FineTuneType {
    #[default]
    Lora,
    Dora,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adam,
    Adamw,
    Sgd,
}

/// `lora_parameters` in mlx-lm's config. mlx-lm multiplies the LoRA product by
/// `scale`; Loralab also accepts the PEFT convention `alpha` (scale = alpha / rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraParameters {
    /// Module keys to adapt inside each trained block (e.g. `self_attn.q_proj`);
    /// `None` means all linear layers of the block, as mlx-lm does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    #[serde(default = "defaults::rank")]
    pub rank: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f32>,
    #[serde(default = "defaults::scale")]
    pub scale: f32,
    #[serde(default)]
    pub dropout: f32,
}

impl Default for LoraParameters {
    fn default() -> Self {
        Self {
            keys: None,
            rank: defaults::rank(),
            alpha: None,
            scale: defaults::scale(),
            dropout: 0.0,
        }
    }
}

impl LoraParameters {
    /// The factor applied to the low-rank product.
    pub fn effective_scale(&self) -> f32 {
        match self.alpha {
            Some(alpha) => alpha / self.rank as f32,
            None => self.scale,
        }
    }
}

/// mlx-lm's `lr_schedule`: `{name, arguments, warmup, warmup_init}` where
/// `name` is `cosine_decay` (arguments: [init, decay_steps, end]) or
/// `linear_schedule` (arguments: [init, end, steps]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrSchedule {
    pub name: String,
    #[serde(default)]
    pub arguments: Vec<f64>,
    #[serde(default)]
    pub warmup: usize,
    #[serde(default)]
    pub warmup_init: f64,
}

/// Quantize a dense model on load (QLoRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeOnLoad {
    pub bits: u8,
    #[serde(default = "defaults::group_size")]
    pub group_size: usize,
}

/// How the base weights are held for compute. `Auto` picks f32 on the CPU
/// (MLX's quantized and half matmuls are 30-60x slower there) and keeps the
/// checkpoint's own precision or quantization on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDtype {
    #[default]
    Auto,
    Float32,
    Bfloat16,
    Float16,
}

/// A training run's configuration. Field names and defaults follow mlx-lm's
/// `mlx_lm.lora`; the extras are marked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// A local folder, a GGUF file, a Hub repo id, or a registered model name.
    pub model: String,
    /// A folder with train/valid/test JSONL files, or a registered dataset name.
    pub data: String,
    pub train: bool,
    pub test: bool,
    pub fine_tune_type: FineTuneType,
    pub optimizer: OptimizerKind,
    pub seed: u64,
    /// Number of transformer blocks to adapt, counted from the top; -1 for all.
    pub num_layers: i64,
    pub batch_size: usize,
    pub iters: usize,
    /// Extra: train for this many epochs instead of `iters` when set.
    pub epochs: Option<usize>,
    pub val_batches: i64,
    pub learning_rate: f64,
    pub steps_per_report: usize,
    pub steps_per_eval: usize,
    pub resume_adapter_file: Option<String>,
    pub adapter_path: String,
    pub save_every: usize,
    pub test_batches: i64,
    pub max_seq_length: usize,
    pub grad_checkpoint: bool,
    pub grad_accumulation_steps: usize,
    pub lr_schedule: Option<LrSchedule>,
    pub lora_parameters: LoraParameters,
    pub mask_prompt: bool,
    /// Extra: weight decay for AdamW (mlx-lm takes it from `optimizer_config`).
    pub weight_decay: f64,
    /// Extra: clip the global gradient norm to this value.
    pub grad_clip: Option<f64>,
    /// Extra: quantize a dense base on load (QLoRA).
    pub quantize: Option<QuantizeOnLoad>,
    /// Extra: how base weights are held for compute.
    pub compute_dtype: ComputeDtype,
    /// Extra: fraction of a single data file held out for validation and test
    /// when the dataset has no valid/test files.
    pub split_fraction: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: String::new(),
            data: "data".into(),
            train: true,
            test: false,
            fine_tune_type: FineTuneType::Lora,
            optimizer: OptimizerKind::Adam,
            seed: 0,
            num_layers: 16,
            batch_size: 4,
            iters: 1000,
            epochs: None,
            val_batches: 25,
            learning_rate: 1e-5,
            steps_per_report: 10,
            steps_per_eval: 200,
            resume_adapter_file: None,
            adapter_path: "adapters".into(),
            save_every: 100,
            test_batches: 500,
            max_seq_length: 2048,
            grad_checkpoint: false,
            grad_accumulation_steps: 1,
            lr_schedule: None,
            lora_parameters: LoraParameters::default(),
            mask_prompt: false,
            weight_decay: 0.01,
            grad_clip: None,
            quantize: None,
            compute_dtype: ComputeDtype::Auto,
            split_fraction: 0.1,
        }
    }
}

mod defaults {
    pub fn rank() -> usize {
        8
    }
    pub fn scale() -> f32 {
        20.0
    }
    pub fn group_size() -> usize {
        64
    }
}
