//! LoRA adapters as mlx-lm builds them: for each adapted linear layer
//! `y = W x + scale * (dropout(x) @ lora_a) @ lora_b`, with `lora_a`
//! `[in, rank]` drawn from U(-1/sqrt(in), 1/sqrt(in)) and `lora_b` `[rank, out]`
//! zero, on the top `num_layers` blocks, base weights frozen.
//!
//! DoRA (`fine_tune_type: dora`) adds a learned magnitude `m` `[out]` per
//! layer, initialised to the row norms of `W`, and rescales each output row:
//! `y = m / ||W + scale * (lora_a @ lora_b)^T||_row * (W x + scale * ...)`,
//! the norm taken as a constant for the gradient, as mlx-lm does.
//!
//! Adapters are stored exactly as mlx-lm stores them (`adapters.safetensors`
//! with keys like `model.layers.3.self_attn.q_proj.lora_a`, and
//! `adapter_config.json`), so `mlx_lm.generate --adapter-path` loads ours and
//! `load_adapters` loads theirs.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use mlx_rs::{random, stop_gradient, Array, Dtype};
use serde::Deserialize;

use crate::config::{FineTuneType, LoraParameters, TrainConfig};
use crate::models::{LinearWeight, Model, Pass};

pub const ADAPTER_WEIGHTS_FILE: &str = "adapters.safetensors";
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// Where one linear layer finds its adapter: `lora_a` is `params[index]`,
/// `lora_b` is `params[index + 1]`, and with DoRA the magnitude `m` is
/// `params[index + 2]`.
#[derive(Debug, Clone)]
pub(crate) struct LoraSlot {
    pub(crate) index: usize,
    pub(crate) scale: f32,
    pub(crate) dropout: f32,
    pub(crate) dora: bool,
}

impl LoraSlot {
    pub(crate) fn delta(&self, x: &Array, pass: &Pass) -> Result<Array> {
        let (a, b) = (&pass.lora[self.index], &pass.lora[self.index + 1]);
        let x_in = match pass.dropout_seed {
            Some(seed) if self.dropout > 0.0 => dropout(x, self.dropout, seed, self.index)?,
            _ => x.clone(),
        };
        let z = x_in.matmul(a)?.matmul(b)?;
        let z = z.multiply(Array::from_f32(self.scale))?;
        Ok(z.as_dtype(x.dtype())?)
    }

    /// The indices of this slot's parameters in `Pass::lora`.
    pub(crate) fn param_indices(&self) -> std::ops::Range<usize> {
        self.index..self.index + if self.dora { 3 } else { 2 }
    }

    /// DoRA's per-row factor `m / ||W + scale * (A B)^T||`, `[out]`. The
    /// norm is a constant for the gradient (mlx-lm's `stop_gradient`), so
    /// the adapted weight it is taken of is not kept for the backward pass.
    pub(crate) fn magnitude_scale(&self, weight: &LinearWeight, pass: &Pass) -> Result<Array> {
        let (a, b, m) = (
            &pass.lora[self.index],
            &pass.lora[self.index + 1],
            &pass.lora[self.index + 2],
        );
        let update = b.t().matmul(a.t())?.multiply(Array::from_f32(self.scale))?;
        let adapted = weight.dense()?.add(update)?;
        let norm = stop_gradient(&row_norms(&adapted)?)?;
        Ok(m.divide(norm)?)
    }
}

/// The L2 norm of each row of `w` `[out, in]`, in f32.
fn row_norms(w: &Array) -> Result<Array> {
    let w = w.as_dtype(Dtype::Float32)?;
    Ok(w.square()?.sum_axis(1, None)?.sqrt()?)
}

/// Inverted dropout; the mask depends only on (seed, slot), so a resumed run
/// draws the same masks as an uninterrupted one.
fn dropout(x: &Array, p: f32, seed: u64, slot: usize) -> Result<Array> {
    let key = random::key(seed ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))?;
    let keep = Array::from_f32(1.0 - p);
    let mask = random::bernoulli(&keep, x.shape(), &key)?;
    Ok(x.multiply(mask.as_dtype(x.dtype())?)?
        .multiply(Array::from_f32(1.0 / (1.0 - p)).as_dtype(x.dtype())?)?)
}

/// The adapter parameters attached to a model and what built them.
#[derive(Clone)]
pub struct LoraState {
    /// mlx-lm's flattened parameter names, one per entry of `params`.
    pub names: Vec<String>,
    pub params: Vec<Array>,
    pub settings: AdapterSettings,
    /// Full fine-tuning (`crate::train::full`): the first trained block;
    /// `params` are the blocks' own weights, not adapters.
    pub(crate) full_from: Option<usize>,
}

/// What `adapter_config.json` must say for an adapter to be rebuilt.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSettings {
    pub num_layers: i64,
    pub rank: usize,
    pub scale: f32,
    pub dropout: f32,
    pub keys: Option<Vec<String>>,
    /// DoRA: each adapted layer also learns a magnitude per output row.
    pub dora: bool,
}

impl AdapterSettings {
    pub fn from_train_config(cfg: &TrainConfig) -> Self {
        Self {
            dora: cfg.fine_tune_type == FineTuneType::Dora,
            ..Self::from_parameters(cfg.num_layers, &cfg.lora_parameters)
        }
    }

    pub fn from_parameters(num_layers: i64, p: &LoraParameters) -> Self {
        Self {
            num_layers,
            rank: p.rank,
            scale: p.effective_scale(),
            dropout: p.dropout,
            keys: p.keys.clone(),
            dora: false,
        }
    }
}

/// Attaches fresh adapters (`lora_b` = 0, so the model's output is unchanged)
/// to the top `num_layers` blocks (-1: all). `seed` fixes `lora_a`.
pub fn attach(model: &mut Model, settings: &AdapterSettings, seed: u64) -> Result<()> {
    if model.lora.is_some() {
        bail!("the model already has adapters attached");
    }
    if settings.rank == 0 {
        bail!("lora_parameters.rank must be at least 1");
    }
    if !(0.0..1.0).contains(&settings.dropout) {
        bail!(
            "lora_parameters.dropout must be in [0, 1), got {}",
            settings.dropout
        );
    }
    let total = model.num_layers();
    let n = crate::config::adapted_layers(settings.num_layers, total)?;
    let mut key = random::key(seed)?;
    let mut names = Vec::new();
    let mut params = Vec::new();
    let mut matched: BTreeSet<String> = BTreeSet::new();
    let mut available: BTreeSet<&'static str> = BTreeSet::new();
    for layer_index in (total - n)..total {
        for (module_key, linear) in model.layers[layer_index].linears_mut() {
            available.insert(module_key);
            let wanted = match &settings.keys {
                None => true,
                Some(keys) => keys.iter().any(|k| k == module_key),
            };
            if !wanted {
                continue;
            }
            matched.insert(module_key.to_string());
            let (next, sub) = random::split(&key, 2)?;
            key = next;
            let bound = 1.0 / (linear.in_dim as f32).sqrt();
            let rank = settings.rank as i32;
            let a =
                random::uniform::<f32, f32>(-bound, bound, &[linear.in_dim as i32, rank], &sub)?;
            let b = Array::zeros::<f32>(&[rank, linear.out_dim as i32])?;
            linear.lora = Some(LoraSlot {
                index: params.len(),
                scale: settings.scale,
                dropout: settings.dropout,
                dora: settings.dora,
            });
            let prefix = format!("model.layers.{layer_index}.{module_key}");
            names.push(format!("{prefix}.lora_a"));
            names.push(format!("{prefix}.lora_b"));
            params.push(a);
            params.push(b);
            if settings.dora {
                // With lora_b zero, m / ||W|| is 1: the output is unchanged.
                names.push(format!("{prefix}.m"));
                params.push(row_norms(&linear.weight.dense()?)?);
            }
        }
    }
    if let Some(keys) = &settings.keys {
        let unknown: Vec<&String> = keys.iter().filter(|k| !matched.contains(*k)).collect();
        if !unknown.is_empty() && n > 0 {
            bail!(
                "lora_parameters.keys: {} match no linear layer of a block (available: {})",
                unknown
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                available.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
    mlx_rs::transforms::eval(params.iter())?;
    model.lora = Some(LoraState {
        names,
        params,
        settings: settings.clone(),
        full_from: None,
    });
    Ok(())
}

/// mlx-lm's names of the attached adapter parameters, in parameter order.
pub fn adapter_names(model: &Model) -> Vec<String> {
    model
        .lora
        .as_ref()
        .map(|l| l.names.clone())
        .unwrap_or_default()
}

/// Number of trainable values in the attached adapters.
pub fn trainable_parameters(model: &Model) -> u64 {
    model
        .lora
        .as_ref()
        .map_or(0, |l| l.params.iter().map(|p| p.size() as u64).sum())
}

fn state(model: &Model) -> Result<&LoraState> {
    model
        .lora
        .as_ref()
        .ok_or_else(|| anyhow!("the model has no adapters attached"))
}

/// Writes the adapter weights (mlx-lm's key names) to `path`.
pub fn save_weights(model: &Model, path: &Path) -> Result<()> {
    let lora = state(model)?;
    Array::save_safetensors(lora.names.iter().zip(&lora.params), None, path)
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

/// Replaces the attached adapter weights with those in `path`, which must
/// hold exactly the attached names with the attached shapes.
pub fn load_weights(model: &mut Model, path: &Path) -> Result<()> {
    let loaded = Array::load_safetensors(path)
        .map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
    let lora = model
        .lora
        .as_mut()
        .ok_or_else(|| anyhow!("the model has no adapters attached"))?;
    set_params(lora, loaded, path)?;
    if lora.full_from.is_some() {
        let params = lora.params.clone();
        crate::train::full::write_weights(model, &params, true)?;
    }
    Ok(())
}

/// Makes `params` (in parameter order) the trained values: the adapters,
/// or with full fine-tuning the blocks' weights (cast to their dtype).
/// Returns the values as the model now holds them.
pub fn set_trained(model: &mut Model, params: Vec<Array>) -> Result<Vec<Array>> {
    let lora = model
        .lora
        .as_mut()
        .ok_or_else(|| anyhow!("the model has no adapters attached"))?;
    if lora.full_from.is_some() {
        crate::train::full::write_weights(model, &params, true)?;
    } else {
        lora.params = params;
    }
    Ok(model.lora_params())
}

fn set_params(lora: &mut LoraState, mut loaded: HashMap<String, Array>, path: &Path) -> Result<()> {
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
    lora.params = new_params;
    Ok(())
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
    model.lora = None;
    for layer in &mut model.layers {
        for (_, linear) in layer.linears_mut() {
            linear.lora = None;
        }
    }
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
