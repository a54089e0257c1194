//! Adam, AdamW and SGD with MLX's update rules (Adam without bias correction,
//! AdamW's decoupled decay applied before the Adam step), over a flat list
//! of parameters. The state is plain arrays so checkpoints can hold it.

use std::collections::HashMap;

use anyhow::{bail, Result};
use mlx_rs::Array;

use crate::config::{OptimizerKind, TrainConfig};

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f32,
    /// First and second moments, one per parameter (Adam/AdamW only).
    m: Vec<Array>,
    v: Vec<Array>,
    /// Updates applied so far; the schedule is read at this value.
    pub step: usize,
}

fn scalar(x: f32) -> Array {
    Array::from_f32(x)
}

impl Optimizer {
    pub fn new(cfg: &TrainConfig, params: &[Array]) -> Result<Self> {
        if cfg.optimizer == OptimizerKind::Adamw
            && (cfg.weight_decay.is_nan() || cfg.weight_decay < 0.0)
        {
            bail!(
                "weight_decay must be non-negative, got {}",
                cfg.weight_decay
            );
        }
        let zeros = |p: &Array| Array::zeros::<f32>(p.shape());
        let stateful = cfg.optimizer != OptimizerKind::Sgd;
        Ok(Self {
            kind: cfg.optimizer,
            weight_decay: cfg.weight_decay as f32,
            m: if stateful {
                params.iter().map(zeros).collect::<Result<_, _>>()?
            } else {
                Vec::new()
            },
            v: if stateful {
                params.iter().map(zeros).collect::<Result<_, _>>()?
            } else {
                Vec::new()
            },
            step: 0,
        })
    }

    /// Returns the updated parameters; the moments advance in place.
    pub fn update(&mut self, params: &[Array], grads: &[Array], lr: f64) -> Result<Vec<Array>> {
        let lr = scalar(lr as f32);
        let mut out = Vec::with_capacity(params.len());
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let updated = match self.kind {
                OptimizerKind::Sgd => p.subtract(lr.multiply(g)?)?,
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let p = if self.kind == OptimizerKind::Adamw {
                        p.multiply(scalar(1.0).subtract(lr.multiply(scalar(self.weight_decay))?)?)?
                    } else {
                        p.clone()
                    };
                    let m = scalar(BETA1)
                        .multiply(&self.m[i])?
                        .add(scalar(1.0 - BETA1).multiply(g)?)?;
                    let v = scalar(BETA2)
                        .multiply(&self.v[i])?
                        .add(scalar(1.0 - BETA2).multiply(g.square()?)?)?;
                    let step = lr.multiply(&m)?.divide(v.sqrt()?.add(scalar(EPS))?)?;
                    self.m[i] = m;
                    self.v[i] = v;
                    p.subtract(step)?
                }
            };
            out.push(updated);
        }
        self.step += 1;
        Ok(out)
    }

    /// Arrays to evaluate together with the parameters after an update.
    pub fn state_arrays(&self) -> impl Iterator<Item = &Array> {
        self.m.iter().chain(self.v.iter())
    }

    /// The state under `m.<name>` / `v.<name>`.
    pub fn export(&self, names: &[String]) -> Vec<(String, Array)> {
        let mut out = Vec::new();
        for (name, m) in names.iter().zip(&self.m) {
            out.push((format!("m.{name}"), m.clone()));
        }
        for (name, v) in names.iter().zip(&self.v) {
            out.push((format!("v.{name}"), v.clone()));
        }
        out
    }

    /// Restores what `export` wrote; every moment must be present and fit.
    pub fn import(&mut self, names: &[String], saved: &mut HashMap<String, Array>) -> Result<()> {
        for (moments, prefix) in [(&mut self.m, "m"), (&mut self.v, "v")] {
            for (name, slot) in names.iter().zip(moments.iter_mut()) {
                let key = format!("{prefix}.{name}");
                let Some(array) = saved.remove(&key) else {
                    bail!("optimizer state: missing `{key}`");
                };
                if array.shape() != slot.shape() {
                    bail!(
                        "optimizer state: `{key}` has shape {:?}, expected {:?}",
                        array.shape(),
                        slot.shape()
                    );
                }
                *slot = array;
            }
        }
        Ok(())
    }
}

/// Scales gradients so their global L2 norm is at most `max_norm`
/// (MLX's `clip_grad_norm`). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Array], max_norm: f64) -> Result<f64> {
    let mut total = scalar(0.0);
    for g in grads.iter() {
        total = total.add(g.square()?.sum(false)?)?;
    }
    let norm = f64::from(total.sqrt()?.try_item_exact::<f32>()?);
    if norm >= max_norm {
        let factor = scalar((max_norm / (norm + 1e-6)) as f32);
        for g in grads.iter_mut() {
            *g = g.multiply(&factor)?;
        }
    }
    Ok(norm)
}
