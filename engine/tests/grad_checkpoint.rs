//! `grad_checkpoint` (mlx-lm's option): each decoder layer's activations
//! are recomputed in the backward pass instead of kept. The loss and the
//! gradients must not change; the memory the step holds must shrink.

mod common;

use common::*;
use engine::config::{ComputeDtype, LoraParameters};
use engine::lora::{self, AdapterSettings};
use engine::models::{load_hf_folder, Model};
use engine::train::loss::{loss_inputs, LossInputs};
use engine::train::{compiled_loss_and_grads, loss_and_grads};
use mlx_rs::{random, transforms::eval, Array};

/// A tiny Llama of `layers` layers with adapters (DoRA ones with `dora`)
/// on all of them, random nonzero adapter values (a fresh B is zero, which
/// would leave A without a gradient), and a batch of `rows` x `width` tokens.
fn setup(layers: usize, rows: usize, width: usize, dora: bool) -> (Model, Vec<Array>, LossInputs) {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny {
        dims: Dims {
            layers,
            ..Dims::default()
        },
        ..Tiny::llama()
    };
    write_tiny(dir.path(), &tiny);
    let mut model = load_hf_folder(dir.path(), ComputeDtype::Auto).unwrap();
    let settings = AdapterSettings {
        dora,
        ..AdapterSettings::from_parameters(
            -1,
            &LoraParameters {
                rank: 8,
                scale: 10.0,
                dropout: 0.1,
                ..LoraParameters::default()
            },
        )
    };
    lora::attach(&mut model, &settings, 0).unwrap();
    let mut key = random::key(11).unwrap();
    let params: Vec<Array> = model
        .lora_params()
        .iter()
        .map(|current| {
            let (next, sub) = random::split(&key, 2).unwrap();
            key = next;
            random::normal::<f32>(current.shape(), None, Some(0.05), &sub).unwrap()
        })
        .collect();
    let tokens: Vec<Vec<u32>> = (0..rows)
        .map(|r| {
            (0..width - r)
                .map(|i| ((i * 7 + r * 13) % VOCAB) as u32)
                .collect()
        })
        .collect();
    let offsets: Vec<usize> = (0..rows).map(|r| r % 3).collect();
    let inputs = loss_inputs(&batch(&tokens, width, &offsets)).unwrap();
    (model, params, inputs)
}

fn values(array: &Array) -> Vec<f32> {
    array.as_slice::<f32>().to_vec()
}

fn assert_close(name: &str, plain: &Array, checkpointed: &Array) {
    let (a, b) = (values(plain), values(checkpointed));
    assert_eq!(a.len(), b.len(), "{name}");
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        worst <= 1e-5 * scale,
        "{name}: differs by {worst} (largest value {scale})"
    );
}

#[test]
fn checkpointed_layers_give_the_same_loss_and_gradients() {
    for dora in [false, true] {
        same_loss_and_gradients(dora);
    }
}

fn same_loss_and_gradients(dora: bool) {
    let (model, params, inputs) = setup(3, 3, 24, dora);
    let per_linear = if dora { 3 } else { 2 };
    // Eagerly, also with dropout: the recomputation draws the same masks.
    for dropout_seed in [None, Some(5)] {
        let (plain_loss, plain) =
            loss_and_grads(&model, &params, &inputs, dropout_seed, false).unwrap();
        let (loss, grads) = loss_and_grads(&model, &params, &inputs, dropout_seed, true).unwrap();
        assert_close("loss", &plain_loss, &loss);
        assert_eq!(plain.len(), grads.len());
        assert_eq!(
            plain.len(),
            3 * 7 * per_linear,
            "A, B (and DoRA's m) of 7 adapted linears a layer"
        );
        for (i, (p, g)) in plain.iter().zip(&grads).enumerate() {
            assert!(values(p).iter().any(|v| *v != 0.0), "gradient {i} is zero");
            assert_close(&format!("gradient {i} (dropout {dropout_seed:?})"), p, g);
        }
    }
    // Compiled, as training runs without dropout.
    let mut arguments = params.clone();
    arguments.extend(inputs.arrays());
    let plain = compiled_loss_and_grads(&model, false)(&arguments).unwrap();
    let checkpointed = compiled_loss_and_grads(&model, true)(&arguments).unwrap();
    assert_eq!(plain.len(), params.len() + 1);
    for (i, (p, c)) in plain.iter().zip(&checkpointed).enumerate() {
        assert_close(&format!("compiled output {i}"), p, c);
    }
}

/// Peak bytes MLX allocated while computing the loss and gradients.
fn peak_bytes(
    model: &Model,
    params: &[Array],
    inputs: &LossInputs,
    grad_checkpoint: bool,
) -> usize {
    mlx_rs::memory::clear_cache().unwrap();
    mlx_rs::memory::reset_peak_memory().unwrap();
    let (loss, grads) = loss_and_grads(model, params, inputs, None, grad_checkpoint).unwrap();
    eval(grads.iter().chain([&loss])).unwrap();
    mlx_rs::memory::peak_memory().unwrap()
}

#[test]
fn checkpointed_layers_keep_less_memory() {
    // Long rows make each layer's activations (attention scores above all)
    // outweigh the weights, as they do when a real model runs out of memory.
    let (model, params, inputs) = setup(6, 4, 384, false);
    eval(params.iter()).unwrap();
    let plain = peak_bytes(&model, &params, &inputs, false);
    let checkpointed = peak_bytes(&model, &params, &inputs, true);
    eprintln!("peak bytes: {plain} without grad_checkpoint, {checkpointed} with");
    assert!(
        (checkpointed as f64) < 0.6 * plain as f64,
        "peak with grad_checkpoint {checkpointed} bytes, without {plain}"
    );
}
