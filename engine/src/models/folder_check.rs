//! A model folder checked before it is trusted: `config.json`'s numbers are
//! in range and agree with the weight files' headers, which are read with
//! bounds (a header's length is checked against its file before anything is
//! allocated), so a folder that lies is refused at registration with the
//! field named, not taken as usable and failed in a worker.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::{read_config, weight_files};
use crate::model_config::ModelConfig;

/// A safetensors header larger than this is not a model's: the largest
/// real ones (thousands of tensors) are a few MB.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Checks the HF folder `dir` and returns its config.
pub fn check_model_folder(dir: &Path) -> Result<ModelConfig> {
    let config = read_config(dir)?;
    check_numbers(&config).map_err(|error| anyhow!("config.json: {error}"))?;
    let mut shapes = BTreeMap::new();
    for file in weight_files(dir)? {
        shapes.extend(tensor_shapes(&file)?);
    }
    check_against_weights(&config, &shapes).map_err(|error| anyhow!("config.json: {error}"))?;
    Ok(config)
}

/// Limits no real model of the families Loralab trains comes near.
fn check_numbers(config: &ModelConfig) -> Result<()> {
    let within = |field: &str, value: usize, max: usize| {
        if value == 0 || value > max {
            bail!("{field} is {value}; it must be from 1 to {max}")
        }
        Ok(())
    };
    within("hidden_size", config.hidden_size, 1 << 17)?;
    within("num_hidden_layers", config.num_hidden_layers, 1024)?;
    within("intermediate_size", config.intermediate_size, 1 << 20)?;
    within("vocab_size", config.vocab_size, 1 << 23)?;
    within(
        "num_attention_heads",
        config.num_attention_heads,
        config.hidden_size,
    )?;
    let kv_heads = config.num_key_value_heads();
    within("num_key_value_heads", kv_heads, config.num_attention_heads)?;
    if !config.num_attention_heads.is_multiple_of(kv_heads) {
        bail!(
            "num_attention_heads ({}) is not a multiple of num_key_value_heads ({kv_heads})",
            config.num_attention_heads
        );
    }
    match config.head_dim {
        Some(head_dim) => within("head_dim", head_dim, 1 << 12)?,
        None if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads) =>
        {
            bail!(
                "hidden_size ({}) is not a multiple of num_attention_heads ({})",
                config.hidden_size,
                config.num_attention_heads
            )
        }
        None => {}
    }
    Ok(())
}

/// The config's sizes against the weights: layer count, vocabulary rows,
/// and width (the final norm's length, which quantization leaves alone).
fn check_against_weights(config: &ModelConfig, shapes: &BTreeMap<String, Vec<u64>>) -> Result<()> {
    let layers = shapes
        .keys()
        .filter_map(|name| {
            let rest = name.strip_prefix("model.layers.")?;
            rest.split('.').next()?.parse::<usize>().ok()
        })
        .max()
        .map_or(0, |last| last + 1);
    if layers != config.num_hidden_layers {
        bail!(
            "num_hidden_layers is {} but the weights have {layers} layers",
            config.num_hidden_layers
        );
    }
    let shape = |name: &str| {
        shapes
            .get(name)
            .ok_or_else(|| anyhow!("the weights have no {name}"))
    };
    let embed = shape("model.embed_tokens.weight")?;
    if embed.first() != Some(&(config.vocab_size as u64)) {
        bail!(
            "vocab_size is {} but model.embed_tokens.weight has shape {embed:?}",
            config.vocab_size
        );
    }
    let norm = shape("model.norm.weight")?;
    if norm.as_slice() != [config.hidden_size as u64] {
        bail!(
            "hidden_size is {} but model.norm.weight has shape {norm:?}",
            config.hidden_size
        );
    }
    Ok(())
}

/// Tensor names and shapes from a safetensors file's header.
fn tensor_shapes(path: &Path) -> Result<BTreeMap<String, Vec<u64>>> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file.metadata()?.len();
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|_| anyhow!("{name}: shorter than a safetensors header"))?;
    let header_len = u64::from_le_bytes(length);
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        bail!(
            "{name}: the header claims {header_len} bytes but the file has {file_len}; it is not a safetensors file"
        );
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .with_context(|| format!("cannot read {name}'s header"))?;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&header)
        .map_err(|error| anyhow!("{name}: the header is not valid JSON ({error})"))?;
    let data_len = file_len - 8 - header_len;
    let mut shapes = BTreeMap::new();
    for (tensor, info) in header {
        if tensor == "__metadata__" {
            continue;
        }
        let shape: Option<Vec<u64>> = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(Value::as_u64).collect());
        let offsets: Option<Vec<u64>> = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|ends| ends.iter().map(Value::as_u64).collect());
        let (Some(shape), Some(&[start, end])) = (shape, offsets.as_deref()) else {
            bail!("{name}: tensor {tensor} has no valid shape and data_offsets");
        };
        if start > end || end > data_len {
            bail!(
                "{name}: tensor {tensor}'s data ({start}..{end}) lies outside the file's {data_len} data bytes"
            );
        }
        shapes.insert(tensor, shape);
    }
    Ok(shapes)
}
