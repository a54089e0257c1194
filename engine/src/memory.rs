//! How much memory a fine-tune will need, before it starts: the base
//! weights as they will be computed with, the adapters with their gradients
//! and optimizer state, and the activations one step keeps for backward.
//!
//! Activations are counted only for the adapted (top `num_layers`) blocks:
//! the blocks below need no gradient, so MLX frees their intermediates as it
//! goes. The figures per token were checked against measured peaks (see
//! docs/ARCHITECTURE.md): SmolLM2-135M, batch 4 x 256, rank 8, 16 layers in
//! f32 on the CPU peaked at 2.13 GB; this estimates 2.2 GB.

use serde::{Deserialize, Serialize};

use crate::config::{FineTuneType, OptimizerKind, TrainConfig};
use crate::model_config::ModelConfig;

/// Linear layers of a decoder block: (name, inputs, outputs).
fn block_linears(config: &ModelConfig) -> [(&'static str, usize, usize); 7] {
    let hidden = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim();
    let kv = config.num_key_value_heads() * config.head_dim();
    let inter = config.intermediate_size;
    [
        ("self_attn.q_proj", hidden, q),
        ("self_attn.k_proj", hidden, kv),
        ("self_attn.v_proj", hidden, kv),
        ("self_attn.o_proj", q, hidden),
        ("mlp.gate_proj", hidden, inter),
        ("mlp.up_proj", hidden, inter),
        ("mlp.down_proj", inter, hidden),
    ]
}

/// Parameters of one decoder block: its linear layers, Qwen2's attention
/// biases, its norms (Qwen3's per-head Q/K norms included).
fn block_parameters(config: &ModelConfig) -> u64 {
    let linears: u64 = block_linears(config)
        .iter()
        .map(|&(_, inputs, outputs)| (inputs * outputs) as u64)
        .sum();
    let biases = if config.attention_bias {
        (config.num_attention_heads + 2 * config.num_key_value_heads()) as u64
            * config.head_dim() as u64
    } else {
        0
    };
    let qk_norms = if config.model_type == "qwen3" {
        2 * config.head_dim() as u64
    } else {
        0
    };
    linears + biases + qk_norms + 2 * config.hidden_size as u64
}

/// Parameters of the model the config describes (biases of Qwen2's
/// attention included), as a checkpoint of it holds them.
pub fn parameter_count(config: &ModelConfig) -> u64 {
    let hidden = config.hidden_size as u64;
    let embedding = config.vocab_size as u64 * hidden;
    let block = block_parameters(config);
    let head = if config.tie_word_embeddings {
        0
    } else {
        embedding
    };
    embedding + config.num_hidden_layers as u64 * block + hidden + head
}

/// The estimate, in bytes, with its parts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    pub weights: u64,
    /// LoRA weights, their gradients and the optimizer's state; for a full
    /// fine-tune the trained blocks' gradients and optimizer state (their
    /// weights are the model's, counted in `weights`).
    pub adapters: u64,
    /// What one step keeps for backward: adapted blocks and the logits.
    pub activations: u64,
    pub total: u64,
}

/// How the base weights are held while training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// 4-byte floats (the CPU: quantized and half weights are dequantized).
    F32,
    /// 2-byte floats (bf16/f16 on a GPU).
    Half,
    /// MLX affine quantization: packed bits plus a scale and bias per group.
    Quantized { bits: u8, group_size: usize },
}

impl WeightFormat {
    fn bytes(self, parameters: u64) -> u64 {
        match self {
            WeightFormat::F32 => parameters * 4,
            WeightFormat::Half => parameters * 2,
            WeightFormat::Quantized { bits, group_size } => {
                // Scales and biases are 2-byte floats, one pair per group.
                parameters * bits as u64 / 8 + parameters / group_size.max(1) as u64 * 4
            }
        }
    }

    /// Bytes of one value of a dense weight: a quantized matrix that is
    /// trained (full fine-tuning) is dequantized to its scales' half type.
    fn dense_bytes(self) -> u64 {
        self.activation_bytes()
    }

    /// Bytes of one activation value: compute follows the weights' float
    /// type, and quantized matmuls compute in half precision.
    fn activation_bytes(self) -> u64 {
        match self {
            WeightFormat::F32 => 4,
            WeightFormat::Half | WeightFormat::Quantized { .. } => 2,
        }
    }
}

/// Values one token keeps per adapted block, in units of `hidden` and of
/// `intermediate`: norms, projections and their LoRA intermediates, the
/// attention output, and the MLP's gate, up, product and activation.
const HIDDEN_VALUES_PER_TOKEN: u64 = 14;
const INTERMEDIATE_VALUES_PER_TOKEN: u64 = 4;
/// Logits, their softmax and its gradient.
const LOGIT_COPIES: u64 = 3;

fn adapted_layers(config: &ModelConfig, train: &TrainConfig) -> u64 {
    let layers = match train.num_layers {
        n if n < 0 => config.num_hidden_layers,
        n => (n as usize).min(config.num_hidden_layers),
    };
    layers as u64
}

/// Trained values (LoRA A and B, DoRA magnitudes; a full fine-tune's
/// whole blocks) over all adapted blocks.
fn trained_values(config: &ModelConfig, train: &TrainConfig) -> u64 {
    if train.fine_tune_type == FineTuneType::Full {
        return block_parameters(config) * adapted_layers(config, train);
    }
    let rank = train.lora_parameters.rank as u64;
    let adapted_per_block: u64 = block_linears(config)
        .iter()
        .filter(|(name, _, _)| match &train.lora_parameters.keys {
            None => true,
            Some(keys) => keys.iter().any(|key| key == name),
        })
        .map(|&(_, inputs, outputs)| {
            // DoRA also learns a magnitude per output row.
            let magnitude = if train.fine_tune_type == FineTuneType::Dora {
                outputs as u64
            } else {
                0
            };
            rank * (inputs + outputs) as u64 + magnitude
        })
        .sum();
    adapted_per_block * adapted_layers(config, train)
}

pub fn estimate(config: &ModelConfig, format: WeightFormat, train: &TrainConfig) -> MemoryEstimate {
    let layers = adapted_layers(config, train);
    // Adam's two moments, in f32 (SGD keeps none).
    let moments = match train.optimizer {
        OptimizerKind::Sgd => 0,
        OptimizerKind::Adam | OptimizerKind::Adamw => 2,
    };
    let trained = trained_values(config, train);
    let (weights, adapters) = if train.fine_tune_type == FineTuneType::Full {
        // The trained blocks are dense (dequantized if need be), and their
        // gradients come in the weights' type.
        let frozen = parameter_count(config) - trained;
        let dense = format.dense_bytes();
        (
            format.bytes(frozen) + trained * dense,
            trained * (dense + 4 * moments),
        )
    } else {
        // f32 weights and gradients, and the moments.
        (
            format.bytes(parameter_count(config)),
            trained * 4 * (2 + moments),
        )
    };

    let tokens = (train.batch_size * train.max_seq_length) as u64;
    let value = format.activation_bytes();
    let heads = config.num_attention_heads as u64;
    let per_block = tokens
        * (HIDDEN_VALUES_PER_TOKEN * config.hidden_size as u64
            + INTERMEDIATE_VALUES_PER_TOKEN * config.intermediate_size as u64)
        * value
        // Attention weights and their softmax, per head.
        + 2 * train.batch_size as u64 * heads * (train.max_seq_length as u64).pow(2) * value;
    let logits = tokens * config.vocab_size as u64 * 4 * LOGIT_COPIES;
    let blocks = if train.grad_checkpoint {
        // Each block keeps only its input; the backward pass rebuilds one
        // block's intermediates at a time.
        layers * tokens * config.hidden_size as u64 * value + per_block
    } else {
        per_block * layers
    };
    let activations = blocks + logits;

    MemoryEstimate {
        weights,
        adapters,
        activations,
        total: weights + adapters + activations,
    }
}

/// The disk a run's checkpoints take, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiskEstimate {
    /// One numbered checkpoint: the trained weights in f32.
    pub per_checkpoint: u64,
    /// Numbered checkpoints on disk at the end (at most).
    pub kept: u64,
    /// Those, plus the folder's latest weights and optimizer state (what
    /// a resume reads).
    pub total: u64,
}

/// What the checkpoints of a run of `total_steps` take: one every
/// `save_every` steps and at the last, with early stopping also one at
/// each evaluation that sets a new best (at most every evaluation), and
/// with `keep_checkpoints: K` no more than K + 1 of them.
pub fn checkpoint_disk(
    config: &ModelConfig,
    train: &TrainConfig,
    total_steps: usize,
) -> DiskEstimate {
    let per_checkpoint = trained_values(config, train) * 4;
    let mut saves = total_steps.div_ceil(train.save_every.max(1));
    if train.early_stopping.is_some() {
        saves += total_steps / train.steps_per_eval.max(1) + 1;
    }
    let kept = match train.keep_checkpoints {
        Some(keep) => saves.min(keep + 1),
        None => saves,
    } as u64;
    // Adam's two moments (SGD keeps none), and the gradients summed so
    // far when they are accumulated over steps.
    let moments = match train.optimizer {
        OptimizerKind::Sgd => 0,
        OptimizerKind::Adam | OptimizerKind::Adamw => 2,
    };
    let accumulated = u64::from(train.grad_accumulation_steps > 1);
    DiskEstimate {
        per_checkpoint,
        kept,
        total: per_checkpoint * (kept + 1 + moments + accumulated),
    }
}

/// Bytes an inference worker holds for a model: its weights, and a KV cache
/// of `context` tokens (prompt and reply) in the compute precision.
pub fn inference(config: &ModelConfig, format: WeightFormat, context: usize) -> u64 {
    let kv_per_token = kv_bytes_per_token(config, format.activation_bytes());
    format.bytes(parameter_count(config)) + kv_per_token * context as u64
}

/// What a batched generation's KV cache may hold (the rows decoded together
/// are as many as fit): the inference worker's estimate counts it.
pub const BATCH_KV_BYTES: u64 = 2 << 30;

/// Bytes of keys and values that one token leaves in a KV cache, with
/// activations of `value_bytes` bytes.
pub fn kv_bytes_per_token(config: &ModelConfig, value_bytes: u64) -> u64 {
    2 * config.num_hidden_layers as u64
        * config.num_key_value_heads() as u64
        * config.head_dim() as u64
        * value_bytes
}

/// Memory the system can give a new process now (Linux: `MemAvailable`),
/// or `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2_135m() -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "model_type": "llama",
            "hidden_size": 576,
            "num_hidden_layers": 30,
            "intermediate_size": 1536,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "vocab_size": 49152,
            "tie_word_embeddings": true
        }))
        .unwrap()
    }

    #[test]
    fn parameters_match_the_shipped_smollm2() {
        // The count of the GGUF's tensors (`loralab models` shows 135M).
        assert_eq!(parameter_count(&smollm2_135m()), 134_515_008);
    }

    #[test]
    fn the_bench_configuration_lands_near_its_measured_peak() {
        let train = TrainConfig {
            batch_size: 4,
            max_seq_length: 256,
            num_layers: 16,
            ..TrainConfig::default()
        };
        let estimate = estimate(&smollm2_135m(), WeightFormat::F32, &train);
        assert_eq!(estimate.weights, 134_515_008 * 4);
        // rank 8, all 7 linears, 16 blocks, f32 weights+grads+2 Adam moments.
        let per_block = 8 * (576 + 576 + 576 + 192 + 576 + 192 + 576 + 576 + 3 * (576 + 1536));
        assert_eq!(estimate.adapters, per_block as u64 * 16 * 4 * 4);
        let gb = estimate.total as f64 / 1e9;
        assert!(
            (1.8..2.6).contains(&gb),
            "measured 2.13 GB, estimated {gb:.2}"
        );
    }

    #[test]
    fn inference_holds_the_weights_and_a_kv_cache() {
        let config = smollm2_135m();
        // 30 layers, 3 KV heads of 64 values, keys and values, f32.
        let kv_per_token = 2 * 30 * 3 * 64 * 4;
        assert_eq!(
            inference(&config, WeightFormat::F32, 4096),
            134_515_008 * 4 + kv_per_token * 4096
        );
        assert!(
            inference(&config, WeightFormat::Half, 4096) * 2
                == inference(&config, WeightFormat::F32, 4096)
        );
    }

    #[test]
    fn quantized_weights_and_smaller_batches_need_less() {
        let config = smollm2_135m();
        let train = TrainConfig::default();
        let dense = estimate(&config, WeightFormat::F32, &train);
        let quantized = estimate(
            &config,
            WeightFormat::Quantized {
                bits: 4,
                group_size: 64,
            },
            &train,
        );
        assert!(quantized.weights * 6 < dense.weights);
        let smaller = estimate(
            &config,
            WeightFormat::F32,
            &TrainConfig {
                batch_size: 1,
                ..train.clone()
            },
        );
        assert!(smaller.activations * 3 < dense.activations);
        assert_eq!(smaller.weights, dense.weights);
    }

    #[test]
    fn grad_checkpoint_keeps_one_block_of_intermediates() {
        let config = smollm2_135m();
        let train = TrainConfig {
            batch_size: 4,
            max_seq_length: 256,
            num_layers: 16,
            ..TrainConfig::default()
        };
        let kept = estimate(&config, WeightFormat::F32, &train);
        let recomputed = estimate(
            &config,
            WeightFormat::F32,
            &TrainConfig {
                grad_checkpoint: true,
                ..train
            },
        );
        assert_eq!(recomputed.weights, kept.weights);
        assert_eq!(recomputed.adapters, kept.adapters);
        // 16 block inputs of 4 x 256 tokens x 576 f32 values, one block's
        // intermediates, and the logits.
        let inputs = 16 * 4 * 256 * 576 * 4;
        let logits = 4 * 256 * 49152 * 4 * 3;
        let one_block = (kept.activations - logits) / 16;
        assert_eq!(recomputed.activations, inputs + one_block + logits);
        let gb = recomputed.total as f64 / 1e9;
        assert!(
            (1.1..1.6).contains(&gb),
            "`scripts/bench-train.sh` with LORALAB_BENCH_GRAD_CHECKPOINT=1 measured 1.34 GB, estimated {gb:.2}"
        );
    }

    #[test]
    fn keep_checkpoints_bounds_the_disk() {
        let config = smollm2_135m();
        let train = TrainConfig {
            num_layers: 16,
            save_every: 100,
            ..TrainConfig::default()
        };
        let per_block = 8 * (576 + 576 + 576 + 192 + 576 + 192 + 576 + 576 + 3 * (576 + 1536));
        let per_checkpoint = per_block * 16 * 4;
        // 1000 steps: one every 100; the folder's own weights and Adam's
        // two moments beside them.
        let all = checkpoint_disk(&config, &train, 1000);
        assert_eq!((all.per_checkpoint, all.kept), (per_checkpoint, 10));
        assert_eq!(all.total, per_checkpoint * (10 + 3));
        // 1001 steps: one more at the last.
        assert_eq!(checkpoint_disk(&config, &train, 1001).kept, 11);
        let kept = TrainConfig {
            keep_checkpoints: Some(2),
            early_stopping: Some(crate::config::EarlyStopping {
                patience: 3,
                min_delta: 0.0,
            }),
            ..train
        };
        let bounded = checkpoint_disk(&config, &kept, 1000);
        assert_eq!(bounded.kept, 3);
        assert_eq!(bounded.total, per_checkpoint * (3 + 3));
    }

    #[test]
    fn dora_adds_a_magnitude_per_output_row() {
        let config = smollm2_135m();
        let lora = TrainConfig {
            num_layers: 16,
            ..TrainConfig::default()
        };
        let dora = TrainConfig {
            fine_tune_type: FineTuneType::Dora,
            ..lora.clone()
        };
        let outputs_per_block = 576 + 192 + 192 + 576 + 1536 + 1536 + 576;
        // f32 values, times weights, gradients and Adam's two moments.
        assert_eq!(
            estimate(&config, WeightFormat::F32, &dora).adapters
                - estimate(&config, WeightFormat::F32, &lora).adapters,
            outputs_per_block * 16 * 4 * 4
        );
    }

    #[test]
    fn full_fine_tuning_counts_gradients_and_moments_of_whole_blocks() {
        let config = smollm2_135m();
        let full = TrainConfig {
            fine_tune_type: FineTuneType::Full,
            num_layers: 16,
            ..TrainConfig::default()
        };
        // q and o 576 x 576, k and v 576 x 192, gate, up and down 576 x
        // 1536, two norms of 576.
        let block = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576;
        let trained = block * 16;
        let f32 = estimate(&config, WeightFormat::F32, &full);
        assert_eq!(f32.weights, 134_515_008 * 4);
        // f32 gradients and Adam's two f32 moments.
        assert_eq!(f32.adapters, trained * (4 + 2 * 4));
        let sgd = estimate(
            &config,
            WeightFormat::F32,
            &TrainConfig {
                optimizer: OptimizerKind::Sgd,
                ..full.clone()
            },
        );
        assert_eq!(sgd.adapters, trained * 4);
        // A quantized base: the trained blocks are dequantized to half.
        let format = WeightFormat::Quantized {
            bits: 4,
            group_size: 64,
        };
        let quantized = estimate(&config, format, &full);
        assert_eq!(
            quantized.weights,
            format.bytes(134_515_008 - trained) + trained * 2
        );
        assert_eq!(quantized.adapters, trained * (2 + 2 * 4));
        // Each checkpoint holds the trained blocks in f32.
        assert_eq!(
            checkpoint_disk(&config, &full, 1000).per_checkpoint,
            trained * 4
        );
    }
}
