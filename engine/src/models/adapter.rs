//! The adapters a model carries and their math, as mlx-lm builds them: for
//! each adapted linear layer `y = W x + scale * (dropout(x) @ lora_a) @ lora_b`,
//! with `lora_a` `[in, rank]` drawn from U(-1/sqrt(in), 1/sqrt(in)) and
//! `lora_b` `[rank, out]` zero, on the top `num_layers` blocks, base weights
//! frozen.
//!
//! DoRA (`fine_tune_type: dora`) adds a learned magnitude `m` `[out]` per
//! layer, initialised to the row norms of `W`, and rescales each output row:
//! `y = m / ||W + scale * (lora_a @ lora_b)^T||_row * (W x + scale * ...)`,
//! the norm taken as a constant for the gradient, as mlx-lm does.
//!
//! Reading and writing adapter files is `crate::lora`'s, on top of this.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail, Result};
use mlx_rs::{random, stop_gradient, Array, Dtype};

use super::{full, LinearWeight, Model, Pass};
use crate::config::{FineTuneType, LoraParameters, TrainConfig};

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
    /// Full fine-tuning (`full`): the first trained block; `params` are the
    /// blocks' own weights, not adapters.
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

impl Model {
    /// Attaches fresh adapters (`lora_b` = 0, so the model's output is
    /// unchanged) to the top `num_layers` blocks (-1: all). `seed` fixes
    /// `lora_a`.
    pub(crate) fn attach_adapters(&mut self, settings: &AdapterSettings, seed: u64) -> Result<()> {
        if self.lora.is_some() {
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
        let total = self.num_layers();
        let n = crate::config::adapted_layers(settings.num_layers, total)?;
        let mut key = random::key(seed)?;
        let mut names = Vec::new();
        let mut params = Vec::new();
        let mut matched: BTreeSet<String> = BTreeSet::new();
        let mut available: BTreeSet<&'static str> = BTreeSet::new();
        for layer_index in (total - n)..total {
            for (module_key, linear) in self.layers[layer_index].linears_mut() {
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
                let a = random::uniform::<f32, f32>(
                    -bound,
                    bound,
                    &[linear.in_dim as i32, rank],
                    &sub,
                )?;
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
        self.lora = Some(LoraState {
            names,
            params,
            settings: settings.clone(),
            full_from: None,
        });
        Ok(())
    }

    /// Removes attached adapters (or a full fine-tune's trained-parameter
    /// list), restoring the base model's forward pass.
    pub(crate) fn detach_adapters(&mut self) {
        self.lora = None;
        for layer in &mut self.layers {
            for (_, linear) in layer.linears_mut() {
                linear.lora = None;
            }
        }
    }

    /// The attached adapters (or a full fine-tune's trained weights), if any.
    pub fn adapters(&self) -> Option<&LoraState> {
        self.lora.as_ref()
    }

    /// Makes `params` (in parameter order) the trained values: the adapters,
    /// or with full fine-tuning the blocks' weights (cast to their dtype).
    /// Returns the values as the model now holds them.
    pub fn set_trained(&mut self, params: Vec<Array>) -> Result<Vec<Array>> {
        let lora = self
            .lora
            .as_mut()
            .ok_or_else(|| anyhow!("the model has no adapters attached"))?;
        if lora.full_from.is_none() {
            lora.params = params;
        } else {
            full::write_weights(self, &params, true)?;
        }
        Ok(self.lora_params())
    }
}
