//! Full fine-tuning (`fine_tune_type: full`) as mlx-lm does it: every weight
//! of the top `num_layers` blocks trains (linear weights and biases, the
//! norms), everything else stays frozen.
//!
//! The trained weights ride where adapters do (`LoraState`: mlx-lm's names
//! and the values in parameter order), so the optimizer, checkpoints,
//! gradient averaging and resume treat both alike, and a checkpoint is what
//! mlx-lm saves for a full run: `tree_flatten(model.trainable_parameters())`
//! (`model.layers.N.self_attn.q_proj.weight`, `model.layers.N.input_layernorm.weight`,
//! ...) in `adapters.safetensors`. What differs is where the forward pass
//! reads them: from the blocks themselves, so the loss is taken on a copy of
//! the model whose trained blocks hold the traced values (`with_weights`).

use anyhow::{bail, Result};
use mlx_rs::Array;

use super::{AdapterSettings, LinearWeight, LoraState, Model};

/// Makes the weights of the top `num_layers` blocks (-1: all) the trained
/// parameters. Quantized matrices in those blocks are dequantized to the
/// compute dtype first: full fine-tuning trains dense weights.
pub fn attach(model: &mut Model, num_layers: i64) -> Result<()> {
    if model.lora.is_some() {
        bail!("the model already has trained parameters attached");
    }
    let total = model.num_layers();
    let first = total - crate::config::adapted_layers(num_layers, total)?;
    let dtype = model.compute_dtype;
    for layer in &mut model.layers[first..] {
        for (_, linear) in layer.linears_mut() {
            if linear.weight.is_quantized() {
                linear.weight = LinearWeight::Dense(linear.weight.dense()?.as_dtype(dtype)?);
            }
        }
    }
    let (names, params): (Vec<String>, Vec<Array>) =
        block_weights(model, first).into_iter().unzip();
    mlx_rs::transforms::eval(params.iter())?;
    model.lora = Some(LoraState {
        names,
        params,
        settings: AdapterSettings {
            num_layers,
            rank: 0,
            scale: 0.0,
            dropout: 0.0,
            keys: None,
            dora: false,
        },
        full_from: Some(first),
    });
    Ok(())
}

/// The first trained block when the model is fully fine-tuned.
pub(crate) fn first_trained_block(model: &Model) -> Option<usize> {
    model.lora.as_ref().and_then(|lora| lora.full_from)
}

/// (mlx-lm's name, value) of every weight of the blocks from `first` on.
fn block_weights(model: &mut Model, first: usize) -> Vec<(String, Array)> {
    let mut out = Vec::new();
    for_each_weight(model, first, |name, array| out.push((name, array.clone())));
    out
}

/// Calls `f` with each trained weight of the blocks from `first` on, in
/// `DecoderLayer::for_each_weight`'s order.
fn for_each_weight(model: &mut Model, first: usize, mut f: impl FnMut(String, &mut Array)) {
    for (index, layer) in model.layers.iter_mut().enumerate().skip(first) {
        layer.for_each_weight(|name, weight| f(format!("model.layers.{index}.{name}"), weight));
    }
}

/// Puts `params` (in `block_weights` order) into the trained blocks. With
/// `keep_dtype`, each value is cast to the dtype of the weight it replaces
/// (an optimizer update in f32 must not turn a bf16 model into f32).
pub(crate) fn write_weights(model: &mut Model, params: &[Array], keep_dtype: bool) -> Result<()> {
    let Some(first) = first_trained_block(model) else {
        bail!("the model is not fully fine-tuned");
    };
    let mut values = params.iter();
    let mut errors = Vec::new();
    for_each_weight(model, first, |name, weight| match values.next() {
        Some(value) if value.shape() != weight.shape() => errors.push(format!(
            "`{name}`: shape {:?}, the model expects {:?}",
            value.shape(),
            weight.shape()
        )),
        Some(value) if keep_dtype && value.dtype() != weight.dtype() => {
            match value.as_dtype(weight.dtype()) {
                Ok(cast) => *weight = cast,
                Err(e) => errors.push(format!("`{name}`: {e}")),
            }
        }
        Some(value) => *weight = value.clone(),
        None => errors.push(format!("`{name}`: no value")),
    });
    if values.next().is_some() {
        errors.push("more values than trained weights".into());
    }
    if !errors.is_empty() {
        bail!("full fine-tune weights: {}", errors.join("; "));
    }
    let current = block_weights(model, first);
    if let Some(lora) = model.lora.as_mut() {
        lora.params = current.into_iter().map(|(_, value)| value).collect();
    }
    Ok(())
}

/// A copy of `model` whose trained blocks hold `params` (arrays share their
/// buffers, so the copy is cheap): the loss taken on it has gradients with
/// respect to `params`.
pub(crate) fn with_weights(model: &Model, params: &[Array]) -> Result<Model> {
    let mut copy = model.clone();
    write_weights(&mut copy, params, false)?;
    Ok(copy)
}

/// Replaces the trained weights of `model` (a copy the compiled step keeps,
/// which reads them from its arguments instead) with unevaluated broadcasts
/// of the same shapes, so the copy does not keep the starting values alive
/// beside the trained ones all run long.
pub(crate) fn release_weights(model: &mut Model) -> Result<()> {
    let placeholders: Vec<Array> = model
        .lora_params()
        .iter()
        .map(|p| mlx_rs::ops::broadcast_to(Array::from_f32(0.0).as_dtype(p.dtype())?, p.shape()))
        .collect::<Result<_, _>>()?;
    write_weights(model, &placeholders, false)
}
