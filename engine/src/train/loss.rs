//! mlx-lm's `default_loss`: the model reads `tokens[:, :-1]`, predicts
//! `tokens[:, 1:]`, and the cross entropy is averaged over the targets whose
//! 1-based position `t` satisfies `offset <= t <= length`.

use anyhow::{bail, Result};
use mlx_rs::{error::Exception, transforms::compile::compile, Array, Dtype};

use crate::batch::Batch;
use crate::models::{logsumexp_last, Model, Pass};

/// A batch as the arrays the loss reads. Only the positions whose target
/// counts go through the output head: with the prompt masked, that skips
/// most of the lm_head's work (the largest matmul of a small model) and its
/// logits. Their number is rounded up to [`POSITION_BUCKET`] with weight-0
/// padding, so that a compiled step is traced for a few sizes, not for
/// every batch.
pub struct LossInputs {
    /// `[rows, width - 1]` tokens the model reads.
    pub inputs: Array,
    /// `[n]` flat indices (into `rows x (width - 1)`) of the positions whose
    /// targets count, then padding.
    pub positions: Array,
    /// `[n]` the targets at those positions.
    pub targets: Array,
    /// `[n]` 1 for a target that counts, 0 for padding.
    pub weights: Array,
    /// Number of targets that count (the weights' sum).
    pub tokens: usize,
}

/// Counted positions are padded to a multiple of this.
pub const POSITION_BUCKET: usize = 128;

impl LossInputs {
    /// The arrays a compiled loss takes, in [`Self::from_arrays`]'s order.
    pub fn arrays(&self) -> [Array; 4] {
        [
            self.inputs.clone(),
            self.positions.clone(),
            self.targets.clone(),
            self.weights.clone(),
        ]
    }

    /// The inputs inside a compiled function (`tokens` is not needed there).
    pub fn from_arrays(arrays: &[Array]) -> Result<Self, Exception> {
        let [inputs, positions, targets, weights] = arrays else {
            return Err(Exception::custom(format!(
                "the loss takes 4 batch arrays, got {}",
                arrays.len()
            )));
        };
        Ok(Self {
            inputs: inputs.clone(),
            positions: positions.clone(),
            targets: targets.clone(),
            weights: weights.clone(),
            tokens: 0,
        })
    }
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
    for row in batch.tokens.chunks(width) {
        inputs.extend_from_slice(&row[..steps]);
    }
    let mask = loss_mask(batch);
    let mut positions: Vec<i32> = Vec::new();
    let mut targets: Vec<u32> = Vec::new();
    for (flat, _) in mask.iter().enumerate().filter(|(_, &m)| m > 0.0) {
        let (row, step) = (flat / steps, flat % steps);
        positions.push(flat as i32);
        targets.push(batch.tokens[row * width + step + 1]);
    }
    let tokens = positions.len();
    let padded = tokens
        .div_ceil(POSITION_BUCKET)
        .max(1)
        .saturating_mul(POSITION_BUCKET)
        .min(rows * steps);
    let mut weights = vec![1.0f32; tokens];
    positions.resize(padded, 0);
    targets.resize(padded, 0);
    weights.resize(padded, 0.0);
    Ok(LossInputs {
        inputs: Array::from_slice(&inputs, &[rows as i32, steps as i32]),
        positions: Array::from_slice(&positions, &[padded as i32]),
        targets: Array::from_slice(&targets, &[padded as i32]),
        weights: Array::from_slice(&weights, &[padded as i32]),
        tokens,
    })
}

/// Mean masked cross entropy (a scalar f32 array) of one batch.
pub fn batch_loss(model: &Model, pass: &Pass, batch: &LossInputs) -> Result<Array> {
    let h = model.hidden(&batch.inputs, pass, None)?;
    let hidden = *h.shape().last().unwrap_or(&0);
    let h = h.reshape(&[-1, hidden])?.take_axis(&batch.positions, 0)?;
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
    let ce = lse.subtract(&picked)?.multiply(&batch.weights)?;
    // An all-masked batch gives 0/0 in mlx-lm too; keep its NaN visible.
    Ok(ce.sum(false)?.divide(batch.weights.sum(false)?)?)
}

/// Loss of `batches` as mlx-lm's `evaluate` computes it: the token-weighted
/// mean over at most `limit` batches (-1: all), no dropout. In a
/// distributed group each rank computes its rows of every batch
/// (`data_parallel::rows_of`) and the sums are added over the ranks.
pub fn evaluate(model: &Model, batches: &[Batch], limit: i64) -> Result<f64> {
    let count = if limit < 0 {
        batches.len()
    } else {
        batches.len().min(limit as usize)
    };
    if count == 0 {
        bail!("no batches to evaluate");
    }
    // A full fine-tune's weights are the model's own, held by the copy
    // below: passing them as arguments too would make them uncaptured inputs.
    let params = if crate::models::full::first_trained_block(model).is_some() {
        Vec::new()
    } else {
        model.lora_params()
    };
    let n = params.len();
    // Compiled, like the training step, so that the exps fuse (see
    // `models::fused`); traced once per batch shape. The closure holds a
    // shallow copy of the model (MLX arrays share their buffers).
    let copy = model.clone();
    let mut loss_of = compile(
        move |args: &[Array]| -> Result<Vec<Array>, Exception> {
            let (lora, batch) = args.split_at(n);
            let batch = LossInputs::from_arrays(batch)?;
            let pass = Pass {
                lora,
                dropout_seed: None,
                grad_checkpoint: false,
            };
            batch_loss(&copy, &pass, &batch)
                .map(|loss| vec![loss])
                .map_err(|e| Exception::custom(format!("{e:#}")))
        },
        None,
    );
    let world = crate::distributed::world();
    let (mut total, mut tokens) = (0.0f64, 0usize);
    for batch in &batches[..count] {
        let mine = super::data_parallel::rows_of(batch, world.rank(), world.size());
        if world.size() > 1 && super::data_parallel::counted_targets(&mine) == 0 {
            continue;
        }
        let inputs = loss_inputs(&mine)?;
        let mut args = params.clone();
        args.extend(inputs.arrays());
        let loss = loss_of(&args)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("the compiled loss returned nothing"))?;
        total += f64::from(loss.try_item_exact::<f32>()?) * inputs.tokens as f64;
        tokens += inputs.tokens;
    }
    let summed = world.sum_values(&[total, tokens as f64])?;
    Ok(summed[0] / summed[1])
}
