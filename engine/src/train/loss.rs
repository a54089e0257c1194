//! mlx-lm's `default_loss`: the model reads `tokens[:, :-1]`, predicts
//! `tokens[:, 1:]`, and the cross entropy is averaged over the targets whose
//! 1-based position `t` satisfies `offset <= t <= length`.

use anyhow::{bail, Result};
use mlx_rs::{error::Exception, transforms::compile::compile, Array, Dtype};

use crate::batch::Batch;
use crate::models::{logsumexp_last, Model, Pass};

/// A batch as the arrays the loss reads.
pub struct LossInputs {
    pub inputs: Array,
    pub targets: Array,
    pub mask: Array,
    /// Number of targets that count (the mask's sum).
    pub tokens: usize,
}

/// mlx-lm's mask, computed on the host. Note: with `t` up to `length`, each
/// row shorter than the batch width also counts its first padding target,
/// exactly as mlx-lm does, so that losses compare one to one.
pub fn loss_mask(batch: &Batch) -> Vec<f32> {
    let steps = batch.width.saturating_sub(1);
    let mut mask = vec![0.0f32; batch.rows * steps];
    for r in 0..batch.rows {
        for t in 1..=steps {
            if batch.offsets[r] <= t && t <= batch.lengths[r] {
                mask[r * steps + t - 1] = 1.0;
            }
        }
    }
    mask
}

pub fn loss_inputs(batch: &Batch) -> Result<LossInputs> {
    let (rows, width) = (batch.rows, batch.width);
    if width < 2 {
        bail!("batch width must be at least 2 tokens, got {width}");
    }
    if batch.tokens.len() != rows * width {
        bail!(
            "batch has {} tokens, expected rows x width = {rows} x {width}",
            batch.tokens.len()
        );
    }
    if batch.offsets.len() != rows || batch.lengths.len() != rows {
        bail!(
            "batch has {} offsets and {} lengths for {rows} rows",
            batch.offsets.len(),
            batch.lengths.len()
        );
    }
    if let Some(r) = (0..rows).find(|&r| batch.lengths[r] > width) {
        bail!(
            "batch row {r}: length {} exceeds the width {width}",
            batch.lengths[r]
        );
    }
    let steps = width - 1;
    let mut inputs = Vec::with_capacity(rows * steps);
    let mut targets = Vec::with_capacity(rows * steps);
    for row in batch.tokens.chunks(width) {
        inputs.extend_from_slice(&row[..steps]);
        targets.extend_from_slice(&row[1..]);
    }
    let mask = loss_mask(batch);
    let tokens = mask.iter().filter(|&&m| m > 0.0).count();
    let shape = [rows as i32, steps as i32];
    Ok(LossInputs {
        inputs: Array::from_slice(&inputs, &shape),
        targets: Array::from_slice(&targets, &shape),
        mask: Array::from_slice(&mask, &shape),
        tokens,
    })
}

/// Mean masked cross entropy (a scalar f32 array) of one batch.
pub fn batch_loss(model: &Model, pass: &Pass, batch: &LossInputs) -> Result<Array> {
    let h = model.hidden(&batch.inputs, pass, None)?;
    let logits = model.head(&h, pass)?.as_dtype(Dtype::Float32)?;
    let lse = logsumexp_last(&logits)?;
    // The target's logit as a dot product with its output row: its gradient
    // stays hidden-sized, where indexing the logits would scatter it into a
    // zero tensor as large as the logits (200 MB for 4 x 256 x 49k).
    let picked = match model.head_rows(&batch.targets)? {
        Some(rows) => h
            .multiply(&rows)?
            .sum_axis(-1, false)?
            .as_dtype(Dtype::Float32)?,
        None => logits
            .take_along_axis(&batch.targets.expand_dims(-1)?, -1)?
            .squeeze_axes(&[-1])?,
    };
    let ce = lse.subtract(&picked)?.multiply(&batch.mask)?;
    // An all-masked batch gives 0/0 in mlx-lm too; keep its NaN visible.
    Ok(ce.sum(false)?.divide(batch.mask.sum(false)?)?)
}

/// Loss of `batches` as mlx-lm's `evaluate` computes it: the token-weighted
/// mean over at most `limit` batches (-1: all), no dropout.
pub fn evaluate(model: &Model, batches: &[Batch], limit: i64) -> Result<f64> {
    let count = if limit < 0 {
        batches.len()
    } else {
        batches.len().min(limit as usize)
    };
    if count == 0 {
        bail!("no batches to evaluate");
    }
    let params = model.lora_params();
    let n = params.len();
    // Compiled, like the training step, so that the exps fuse (see
    // `models::fused`); traced once per batch shape. The closure holds a
    // shallow copy of the model (MLX arrays share their buffers).
    let copy = model.clone();
    let mut loss_of = compile(
        move |args: &[Array]| -> Result<Vec<Array>, Exception> {
            let (lora, batch) = args.split_at(n);
            let [inputs, targets, mask] = batch else {
                return Err(Exception::custom("the loss takes 3 batch arrays"));
            };
            let pass = Pass {
                lora,
                dropout_seed: None,
            };
            let batch = LossInputs {
                inputs: inputs.clone(),
                targets: targets.clone(),
                mask: mask.clone(),
                tokens: 0,
            };
            batch_loss(&copy, &pass, &batch)
                .map(|loss| vec![loss])
                .map_err(|e| Exception::custom(format!("{e:#}")))
        },
        None,
    );
    let (mut total, mut tokens) = (0.0f64, 0usize);
    for batch in &batches[..count] {
        let inputs = loss_inputs(batch)?;
        let mut args = params.clone();
        args.extend([
            inputs.inputs.clone(),
            inputs.targets.clone(),
            inputs.mask.clone(),
        ]);
        let loss = loss_of(&args)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("the compiled loss returned nothing"))?;
        total += f64::from(loss.try_item_exact::<f32>()?) * inputs.tokens as f64;
        tokens += inputs.tokens;
    }
    Ok(total / tokens as f64)
}
