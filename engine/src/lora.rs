//! LoRA and DoRA adapters as a service on a model: attach, load, save, swap,
//! and mlx-lm's `adapter_config.json`. The adapters' math and where a model
//! keeps them are `crate::models`' (`models/adapter.rs`); this module only
//! calls into it.
//!
//! Adapters are stored exactly as mlx-lm stores them (`adapters.safetensors`
//! with keys like `model.layers.3.self_attn.q_proj.lora_a`, and
//! `adapter_config.json`), so `mlx_lm.generate --adapter-path` loads ours and
//! `load_adapters` loads theirs.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use mlx_rs::{Array, Dtype};
use serde::Deserialize;

use crate::config::{FineTuneType, TrainConfig};
pub use crate::models::AdapterSettings;
use crate::models::{LoraState, Model};

pub const ADAPTER_WEIGHTS_FILE: &str = "adapters.safetensors";
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// Attaches fresh adapters (`lora_b` = 0, so the model's output is unchanged)
/// to the top `num_layers` blocks (-1: all). `seed` fixes `lora_a`.
pub fn attach(model: &mut Model, settings: &AdapterSettings, seed: u64) -> Result<()> {
    model.attach_adapters(settings, seed)
}

/// mlx-lm's names of the attached adapter parameters, in parameter order.
pub fn adapter_names(model: &Model) -> Vec<String> {
    model
        .adapters()
        .map(|l| l.names.clone())
        .unwrap_or_default()
}

/// Number of trainable values in the attached adapters.
pub fn trainable_parameters(model: &Model) -> u64 {
    model
        .adapters()
        .map_or(0, |l| l.params.iter().map(|p| p.size() as u64).sum())
}

fn state(model: &Model) -> Result<&LoraState> {
    model
        .adapters()
        .ok_or_else(|| anyhow!("the model has no adapters attached"))
}

/// Writes the adapter weights (mlx-lm's key names) to `path`.
pub fn save_weights(model: &Model, path: &Path) -> Result<()> {
    let lora = state(model)?;
    Array::save_safetensors(lora.names.iter().zip(&lora.params), None, path)
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

/// Replaces the attached adapter weights (with full fine-tuning, the trained
/// blocks' weights) with those in `path`, which must hold exactly the
/// attached names with the attached shapes.
pub fn load_weights(model: &mut Model, path: &Path) -> Result<()> {
    let loaded = Array::load_safetensors(path)
        .map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
    let params = matching_params(state(model)?, loaded, path)?;
    model.set_trained(params)?;
    Ok(())
}

/// The values of `loaded` in the attached parameters' order, in f32, once
/// every name and shape matches.
fn matching_params(
    lora: &LoraState,
    mut loaded: HashMap<String, Array>,
    path: &Path,
) -> Result<Vec<Array>> {
    let mut errors = Vec::new();
    let mut new_params = Vec::with_capacity(lora.params.len());
    for (name, current) in lora.names.iter().zip(&lora.params) {
        match loaded.remove(name) {
            None => errors.push(format!("`{name}`: missing")),
            Some(w) if w.shape() != current.shape() => errors.push(format!(
                "`{name}`: shape {:?}, the model expects {:?}",
                w.shape(),
                current.shape()
            )),
            Some(w) => new_params.push(w.as_dtype(Dtype::Float32)?),
        }
    }
    let mut extra: Vec<&String> = loaded.keys().collect();
    extra.sort();
    for name in extra {
        errors.push(format!("`{name}`: not an adapter parameter of this model"));
    }
    if !errors.is_empty() {
        bail!(
            "{}: incompatible adapter tensors: {}",
            path.display(),
            errors.join("; ")
        );
    }
    mlx_rs::transforms::eval(new_params.iter())?;
    Ok(new_params)
}

/// `adapter_config.json` as mlx-lm writes it: every training argument,
/// keys sorted, `lora_parameters` with mlx-lm's `scale`.
pub fn adapter_config_json(cfg: &TrainConfig) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(cfg)?;
    let map = value
        .as_object_mut()
        .expect("a struct serializes to an object");
    let mut lora = serde_json::Map::new();
    lora.insert("rank".into(), cfg.lora_parameters.rank.into());
    lora.insert(
        "scale".into(),
        f64::from(cfg.lora_parameters.effective_scale()).into(),
    );
    lora.insert(
        "dropout".into(),
        f64::from(cfg.lora_parameters.dropout).into(),
    );
    if let Some(keys) = &cfg.lora_parameters.keys {
        lora.insert("keys".into(), serde_json::to_value(keys)?);
    }
    // mlx-lm drops `lora_parameters` for a full fine-tune.
    let lora = if cfg.fine_tune_type == FineTuneType::Full {
        serde_json::Value::Null
    } else {
        lora.into()
    };
    map.insert("lora_parameters".into(), lora);
    // mlx-lm's own arguments that Loralab has no field for.
    for (key, default) in [
        ("config", serde_json::Value::Null),
        ("clear_cache_threshold", 0.into()),
        ("report_to", serde_json::Value::Null),
        ("project_name", serde_json::Value::Null),
        ("trust_remote_code", false.into()),
        (
            "optimizer_config",
            serde_json::json!({"adam": {}, "adamw": {"weight_decay": cfg.weight_decay}, "sgd": {}}),
        ),
    ] {
        map.entry(key).or_insert(default);
    }
    // serde_json's map is ordered by key, as mlx-lm sorts its config.
    Ok(value)
}

pub fn write_adapter_config(dir: &Path, cfg: &TrainConfig) -> Result<()> {
    let value = adapter_config_json(cfg)?;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(&value, &mut ser)?;
    let path = dir.join(ADAPTER_CONFIG_FILE);
    std::fs::write(&path, out).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

#[derive(Deserialize)]
struct AdapterConfigFile {
    #[serde(default)]
    fine_tune_type: Option<String>,
    num_layers: i64,
    /// `null` in a full fine-tune's config.
    lora_parameters: Option<LoraParametersFile>,
}

#[derive(Deserialize)]
struct LoraParametersFile {
    rank: usize,
    scale: f32,
    #[serde(default)]
    dropout: f32,
    #[serde(default)]
    keys: Option<Vec<String>>,
}

/// Whether an adapter folder holds a full fine-tune (`fine_tune_type:
/// full`): trained blocks' own weights rather than adapters.
pub fn is_full_fine_tune(dir: &Path) -> Result<bool> {
    let path = dir.join(ADAPTER_CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let file: AdapterConfigFile =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(file.fine_tune_type.as_deref() == Some("full"))
}

/// Reads what an adapter folder's `adapter_config.json` says about the adapters.
pub fn read_adapter_settings(dir: &Path) -> Result<AdapterSettings> {
    let path = dir.join(ADAPTER_CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let file: AdapterConfigFile =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let dora = match file.fine_tune_type.as_deref().unwrap_or("lora") {
        "lora" => false,
        "dora" => true,
        "full" => bail!(
            "{}: a full fine-tune: its adapters.safetensors holds the trained blocks' own \
             weights, not LoRA adapters, and loading it here is not supported yet \
             (mlx_lm.generate --adapter-path loads it)",
            path.display()
        ),
        other => bail!(
            "{}: fine_tune_type `{other}` is not supported (only `lora` and `dora`)",
            path.display()
        ),
    };
    let Some(lora) = file.lora_parameters else {
        bail!("{}: `lora_parameters` is missing", path.display());
    };
    Ok(AdapterSettings {
        num_layers: file.num_layers,
        rank: lora.rank,
        scale: lora.scale,
        dropout: lora.dropout,
        keys: lora.keys,
        dora,
    })
}

/// Attaches the adapters of an mlx-lm style folder (`adapter_config.json`
/// + `adapters.safetensors`) to `model`.
pub fn load_adapters(model: &mut Model, dir: &Path) -> Result<()> {
    let settings = read_adapter_settings(dir)?;
    attach(model, &settings, 0)?;
    let result = load_weights(model, &dir.join(ADAPTER_WEIGHTS_FILE));
    if result.is_err() {
        detach(model);
    }
    result
}

/// Removes attached adapters, restoring the base model.
pub fn detach(model: &mut Model) {
    model.detach_adapters();
}

/// Replaces whatever adapters `model` carries with those of the mlx-lm
/// folder `dir`, or with none. The base weights are shared arrays that stay
/// where they are: only the small A/B matrices are read, which is what lets
/// one loaded base serve many adapters. On an error the model is left
/// without adapters, never half-swapped.
pub fn swap_adapters(model: &mut Model, dir: Option<&Path>) -> Result<()> {
    detach(model);
    match dir {
        Some(dir) => load_adapters(model, dir),
        None => Ok(()),
    }
}
