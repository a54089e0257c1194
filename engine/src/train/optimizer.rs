//! Adam, AdamW and SGD with MLX's update rules (Adam without bias correction,
//! AdamW's decoupled decay applied before the Adam step), over a flat list
//! of parameters. The state is plain arrays so checkpoints can hold it.
//!
//! The update is one compiled function over every parameter: a LoRA has
//! hundreds of small matrices, and op by op that is thousands of tiny
//! kernels a step (on an H100, 44% of a SmolLM2 step went there).

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use mlx_rs::{error::Exception, transforms::compile::compile, Array};

use crate::config::{OptimizerKind, TrainConfig};

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

/// `[lr, params.., grads.., m.., v..]` -> `[params.., m.., v..]`.
type UpdateFn = Box<dyn FnMut(&[Array]) -> Result<Vec<Array>, Exception>>;

pub struct Optimizer {
    /// First and second moments, one per parameter (Adam/AdamW only).
    m: Vec<Array>,
    v: Vec<Array>,
    update: UpdateFn,
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
        let (kind, weight_decay, count) = (cfg.optimizer, cfg.weight_decay as f32, params.len());
        Ok(Self {
            update: Box::new(compile(
                move |args: &[Array]| update_all(kind, weight_decay, count, args),
                None,
            )),
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
        let count = params.len();
        if grads.len() != count {
            bail!("{count} parameters but {} gradients", grads.len());
        }
        let mut args = Vec::with_capacity(1 + 2 * count + self.m.len() + self.v.len());
        args.push(scalar(lr as f32));
        args.extend(params.iter().cloned());
        args.extend(grads.iter().cloned());
        args.extend(self.m.iter().cloned());
        args.extend(self.v.iter().cloned());
        let mut out = (self.update)(&args).map_err(|e| anyhow!("optimizer update: {e}"))?;
        if out.len() != count + self.m.len() + self.v.len() {
            bail!("the optimizer update returned {} arrays", out.len());
        }
        let v = out.split_off(count + self.m.len());
        let m = out.split_off(count);
        self.m = m;
        self.v = v;
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

/// The update rule over every parameter at once; see [`UpdateFn`] for the
/// arguments (the moments are absent for SGD).
fn update_all(
    kind: OptimizerKind,
    weight_decay: f32,
    count: usize,
    args: &[Array],
) -> Result<Vec<Array>, Exception> {
    let Some((lr, rest)) = args.split_first() else {
        return Err(Exception::custom(
            "the optimizer update takes a learning rate",
        ));
    };
    let (params, rest) = rest.split_at(count.min(rest.len()));
    let (grads, moments) = rest.split_at(count.min(rest.len()));
    if kind == OptimizerKind::Sgd {
        return params
            .iter()
            .zip(grads)
            .map(|(p, g)| p.subtract(lr.multiply(g)?))
            .collect();
    }
    let (m, v) = moments.split_at(count.min(moments.len()));
    let (mut new_params, mut new_m, mut new_v) = (Vec::new(), Vec::new(), Vec::new());
    for (((p, g), m), v) in params.iter().zip(grads).zip(m).zip(v) {
        let p = if kind == OptimizerKind::Adamw {
            p.multiply(scalar(1.0).subtract(lr.multiply(scalar(weight_decay))?)?)?
        } else {
            p.clone()
        };
        let m = scalar(BETA1)
            .multiply(m)?
            .add(scalar(1.0 - BETA1).multiply(g)?)?;
        let v = scalar(BETA2)
            .multiply(v)?
            .add(scalar(1.0 - BETA2).multiply(g.square()?)?)?;
        let step = lr.multiply(&m)?.divide(v.sqrt()?.add(scalar(EPS))?)?;
        new_params.push(p.subtract(step)?);
        new_m.push(m);
        new_v.push(v);
    }
    new_params.extend(new_m);
    new_params.extend(new_v);
    Ok(new_params)
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
