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

impl QuantizeOnLoad {
    /// `bits` at mlx-lm's default group size.
    pub fn with_bits(bits: u8) -> Self {
        Self {
            bits,
            group_size: defaults::group_size(),
        }
    }
}

/// Extra: end the run when validation loss stops improving. An evaluation
/// improves when its loss is below the best so far by more than
/// `min_delta`; after `patience` evaluations in a row that do not, the run
/// ends and its best checkpoint becomes the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    pub patience: usize,
    #[serde(default)]
    pub min_delta: f64,
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
    /// Extra: when the server pauses the run for heat or memory.
    pub thermal_guard: crate::guard_config::GuardConfig,
    /// Extra: stop when validation loss stops improving.
    pub early_stopping: Option<EarlyStopping>,
    /// Extra: keep only this many numbered checkpoints (the best by
    /// validation loss) plus the latest; `None` keeps every one.
    pub keep_checkpoints: Option<usize>,
    /// Extra: data-parallel ranks on this machine (one GPU each on CUDA,
    /// processes sharing the cores on the CPU); `batch_size` is the global
    /// batch, divided among them.
    pub gpus: usize,
    /// Extra, the server's: train on a machine set of its Machines page
    /// (one rank per host, over ssh) instead of this machine.
    pub machine_set: Option<String>,
    /// Extra: write TensorBoard event files into `tensorboard/` of the run
    /// folder (`adapter_path` for `loralab train`).
    pub tensorboard: bool,
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
            thermal_guard: Default::default(),
            early_stopping: None,
            keep_checkpoints: None,
            gpus: 1,
            machine_set: None,
            tensorboard: false,
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

/// Keys Loralab sets per run from the registered model and dataset and
/// the run's folder: a request may not set them, and they say nothing about
/// how two runs differ.
pub const MANAGED_KEYS: &[&str] = &["data", "adapter_path", "resume_adapter_file"];

/// A setting a run cannot start with: the field (dotted for nested keys)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

impl TrainConfig {
    /// Every check that needs neither the model nor the data. The server
    /// runs it before a run is stored and the trainer before it starts, so
    /// a config is refused at the door, not in the worker.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("batch_size", self.batch_size),
            ("steps_per_report", self.steps_per_report),
            ("steps_per_eval", self.steps_per_eval),
            ("save_every", self.save_every),
            ("grad_accumulation_steps", self.grad_accumulation_steps),
            ("max_seq_length", self.max_seq_length),
            ("gpus", self.gpus),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if !self.batch_size.is_multiple_of(self.gpus) {
            return Err(invalid(
                "batch_size",
                format!(
                    "{} does not divide among {} gpus: each takes an equal share of every batch",
                    self.batch_size, self.gpus
                ),
            ));
        }
        if self.machine_set.is_some() && self.gpus > 1 {
            return Err(invalid(
                "machine_set",
                "a machine set has one rank per host: leave gpus at 1",
            ));
        }
        if self.epochs == Some(0) {
            return Err(invalid("epochs", "must be at least 1"));
        }
        if self.epochs.is_none() && self.iters == 0 {
            return Err(invalid("iters", "must be at least 1"));
        }
        if self.num_layers == 0 || self.num_layers < -1 {
            return Err(invalid(
                "num_layers",
                format!("must be -1 (all) or positive, got {}", self.num_layers),
            ));
        }
        for (field, value) in [
            ("val_batches", self.val_batches),
            ("test_batches", self.test_batches),
        ] {
            if value == 0 || value < -1 {
                return Err(invalid(
                    field,
                    format!("must be -1 (all) or positive, got {value}"),
                ));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(invalid(
                "learning_rate",
                format!("must be a positive number, got {}", self.learning_rate),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid(
                "weight_decay",
                format!("must be zero or positive, got {}", self.weight_decay),
            ));
        }
        if let Some(clip) = self.grad_clip {
            if !(clip.is_finite() && clip > 0.0) {
                return Err(invalid(
                    "grad_clip",
                    format!("must be positive, got {clip}"),
                ));
            }
        }
        if !(0.0..=0.5).contains(&self.split_fraction) {
            return Err(invalid(
                "split_fraction",
                format!("must be from 0 to 0.5, got {}", self.split_fraction),
            ));
        }
        if let Some(early) = &self.early_stopping {
            if early.patience == 0 {
                return Err(invalid("early_stopping.patience", "must be at least 1"));
            }
            if !(early.min_delta.is_finite() && early.min_delta >= 0.0) {
                return Err(invalid(
                    "early_stopping.min_delta",
                    format!("must be zero or positive, got {}", early.min_delta),
                ));
            }
        }
        if self.keep_checkpoints == Some(0) {
            return Err(invalid(
                "keep_checkpoints",
                "must be at least 1 (or left out to keep every checkpoint)",
            ));
        }
        if self.fine_tune_type == FineTuneType::Full && self.quantize.is_some() {
            return Err(invalid(
                "quantize",
                "is QLoRA's (a quantized base under adapters); `fine_tune_type: full` \
                 trains the weights themselves, which stay dense: leave `quantize` out",
            ));
        }
        let lora = &self.lora_parameters;
        if lora.rank == 0 {
            return Err(invalid("lora_parameters.rank", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&lora.dropout) {
            return Err(invalid(
                "lora_parameters.dropout",
                format!("must be at least 0 and below 1, got {}", lora.dropout),
            ));
        }
        if !lora.scale.is_finite() || lora.alpha.is_some_and(|alpha| !alpha.is_finite()) {
            return Err(invalid("lora_parameters.scale", "must be a finite number"));
        }
        if lora.keys.as_ref().is_some_and(|keys| keys.is_empty()) {
            return Err(invalid(
                "lora_parameters.keys",
                "must name at least one module (or be left out for all)",
            ));
        }
        if let Some(quantize) = &self.quantize {
            if ![2, 3, 4, 5, 6, 8].contains(&quantize.bits) {
                return Err(invalid(
                    "quantize.bits",
                    format!("must be one of 2, 3, 4, 5, 6, 8, got {}", quantize.bits),
                ));
            }
            if ![32, 64, 128].contains(&quantize.group_size) {
                return Err(invalid(
                    "quantize.group_size",
                    format!("must be 32, 64 or 128, got {}", quantize.group_size),
                ));
            }
        }
        if let Some(schedule) = &self.lr_schedule {
            crate::schedule::Schedule::from_lr_schedule(schedule)
                .map_err(|error| invalid("lr_schedule", format!("is not usable: {error}")))?;
        }
        self.thermal_guard.validate()?;
        Ok(())
    }
}

/// How many blocks `num_layers` (-1: all) adapts on a model of `total`.
pub fn adapted_layers(num_layers: i64, total: usize) -> Result<usize, ConfigError> {
    match num_layers {
        -1 => Ok(total),
        n if n > 0 && n as usize <= total => Ok(n as usize),
        n if n > 0 => Err(invalid(
            "num_layers",
            format!("is {n} but the model only has {total} layers"),
        )),
        n => Err(invalid(
            "num_layers",
            format!("must be -1 (all) or positive, got {n}"),
        )),
    }
}
