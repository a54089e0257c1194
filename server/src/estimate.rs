//! The memory estimate shown before a run starts: the model's architecture
//! read from its files (a GGUF header or `config.json`, no weights loaded),
//! the weight format this device computes with, and the engine's estimate
//! against the memory free now.

use std::path::Path;

use anyhow::Context;
use app::dto::MemoryEstimate;
use engine::config::TrainConfig;
use engine::device::DeviceInfo;
use engine::memory::WeightFormat;
use engine::model_config::ModelConfig;

use crate::datasets::TokenizerCache;
use crate::inspections::Inspections;
use crate::store::ModelSummary;

/// The estimate for a run of `model` (of `architecture`, read once when
/// the run was validated) on the dataset at `config.data`. Batches are
/// padded to their longest example, not to `max_seq_length`, so the
/// dataset's longest example (with the model's tokenizer) bounds the
/// sequence length counted (its figures from `inspections`, with the
/// model's tokenizer from `tokenizers`).
pub fn estimate_run(
    device: &DeviceInfo,
    inspections: &Inspections,
    tokenizers: &TokenizerCache,
    model: &ModelSummary,
    architecture: &ModelConfig,
    config: &TrainConfig,
) -> MemoryEstimate {
    let (format, compute) = weight_format(&device.kind, architecture, config);
    let examples = train_examples(inspections, tokenizers, model, config);
    let longest = examples.map_or(config.max_seq_length, |examples| examples.longest);
    // One rank's share of the batch; with `gpus: N` each GPU holds one
    // rank, and the CPU's memory holds all N (weights included).
    let ranks = config.gpus.max(1);
    let padded = TrainConfig {
        max_seq_length: engine::data::batching::padded_width(
            longest.min(config.max_seq_length),
            config.max_seq_length,
        ),
        batch_size: (config.batch_size / ranks).max(1),
        ..config.clone()
    };
    let estimate = engine::memory::estimate(architecture, format, &padded);
    let copies = if device.kind == "gpu" {
        1
    } else {
        ranks as u64
    };
    let available = device.memory_now();
    // With `epochs`, the steps follow from the examples (else `iters`).
    let batches = examples.map_or(1, |examples| examples.count.div_ceil(config.batch_size));
    let steps = engine::train::total_steps(config, batches);
    let disk = engine::memory::checkpoint_disk(architecture, config, steps);
    let estimate = engine::memory::MemoryEstimate {
        weights: estimate.weights * copies,
        adapters: estimate.adapters * copies,
        activations: estimate.activations * copies,
        total: estimate.total * copies,
    };
    MemoryEstimate {
        weights: estimate.weights,
        adapters: estimate.adapters,
        activations: estimate.activations,
        total: estimate.total,
        available,
        fits: available.map(|available| estimate.total <= available),
        compute,
        checkpoint_bytes: disk.per_checkpoint,
        checkpoints_kept: disk.kept,
        disk: disk.total,
    }
}

/// Tokens of prompt and reply an inference worker's KV cache is counted for.
const INFERENCE_CONTEXT: usize = 4096;

/// What the inference worker holds with the base model at `path` loaded on
/// `device` ("cpu" or "gpu"): weights in the compute format and a KV cache,
/// of one long generation or of a batch (`engine::memory::BATCH_KV_BYTES`,
/// which a comparison's batches are sized to), whichever is larger.
pub fn estimate_inference(device: &str, path: &Path) -> anyhow::Result<u64> {
    let architecture = model_architecture(path)
        .with_context(|| format!("cannot read the architecture of {}", path.display()))?;
    let (format, _) = weight_format(device, &architecture, &TrainConfig::default());
    let one = engine::memory::inference(&architecture, format, INFERENCE_CONTEXT);
    let batch =
        engine::memory::inference(&architecture, format, 0) + engine::memory::BATCH_KV_BYTES;
    Ok(one.max(batch))
}

/// A dataset's training examples, as the model's tokenizer reads them.
#[derive(Debug, Clone, Copy)]
struct TrainExamples {
    count: usize,
    /// The longest, in tokens.
    longest: usize,
}

/// `None` when the dataset cannot be tokenized (its problems are reported
/// elsewhere).
fn train_examples(
    inspections: &Inspections,
    tokenizers: &TokenizerCache,
    model: &ModelSummary,
    config: &TrainConfig,
) -> Option<TrainExamples> {
    let inspection = inspections
        .inspect(tokenizers, model, Path::new(&config.data), config, 0)
        .inspect_err(|error| tracing::warn!(%error, "cannot inspect the run's dataset"))
        .ok()?;
    let tokens = inspection
        .report
        .split(engine::data::Split::Train)
        .tokens
        .as_ref()?;
    (tokens.examples > 0).then_some(TrainExamples {
        count: tokens.examples,
        longest: tokens.max_length,
    })
}

pub(crate) fn model_architecture(path: &Path) -> anyhow::Result<ModelConfig> {
    if path.is_dir() {
        return engine::models::read_config(path);
    }
    Ok(engine::gguf::inspect_gguf(path)?.0)
}

/// On the CPU everything computes in f32 (MLX's quantized and half matmuls
/// are 30-60x slower there); on a GPU a quantized base stays quantized.
fn weight_format(
    device: &str,
    architecture: &ModelConfig,
    config: &TrainConfig,
) -> (WeightFormat, String) {
    if device == "cpu" {
        let note = if config.quantize.is_some() || architecture.quantization.is_some() {
            "f32 on the CPU (quantized weights are dequantized: MLX's quantized matmuls are slow there)"
        } else {
            "f32 on the CPU"
        };
        return (WeightFormat::F32, note.to_string());
    }
    let quantized = config
        .quantize
        .map(|q| (q.bits, q.group_size))
        .or(architecture.quantization.map(|q| (q.bits, q.group_size)));
    match quantized {
        Some((bits, group_size)) => (
            WeightFormat::Quantized { bits, group_size },
            format!("{bits}-bit quantized base (QLoRA) on the GPU"),
        ),
        None => (WeightFormat::Half, "bf16 on the GPU".to_string()),
    }
}
