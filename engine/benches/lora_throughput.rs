//! Tokens/s and peak memory of one LoRA training configuration, here and in
//! mlx-lm (`mlx_lm.lora`'s trainer) on the same random SmolLM2-135M-shaped
//! model: batch 4 x 256 tokens, rank 8, top 16 layers.
//!
//! `cargo bench -p engine --bench lora_throughput` (needs scripts/setup-peer.sh).
//! `LORALAB_BENCH_ITERS` (default 6) sets the steps per side; the figures are
//! those of the last report window (half the steps), after warm-up.
//! `LORALAB_BENCH_SIDE` (`ours`, `peer`, `both`: default) picks who runs, and
//! `LORALAB_BENCH_MODEL` names a folder to keep the random model in between
//! runs (scripts/bench-train.sh alternates sides that way).
//! `LORALAB_BENCH_PROFILE=1` adds a breakdown of one step of ours: forward,
//! backward, optimizer, the lm_head + loss share, and the time the step's
//! matmuls alone take at the BLAS's rate.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::AtomicBool;

use std::path::Path;
use std::time::Instant;

use common::*;
use engine::batch::Batch;
use engine::config::{ComputeDtype, LoraParameters, TrainConfig};
use engine::models::load_hf_folder;
use engine::protocol::Event;
use engine::train::loss::{batch_loss, loss_inputs};
use engine::train::{loss_and_grads, train, TrainData};
use mlx_rs::{random, transforms::eval, Array};

const BATCH: usize = 4;
const SEQ: usize = 256;
const RANK: usize = 8;
const LAYERS_TRAINED: i64 = 16;

fn random_batches(vocab: usize, count: usize) -> Vec<Batch> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        1 + (state % (vocab as u64 - 1)) as u32
    };
    (0..count)
        .map(|_| {
            let rows: Vec<Vec<u32>> = (0..BATCH)
                .map(|_| (0..SEQ).map(|_| next()).collect())
                .collect();
            // mlx-lm pads to 1 + a multiple of 32.
            batch(&rows, SEQ + 1, &[0; BATCH])
        })
        .collect()
}

fn main() {
    let iters: usize = std::env::var("LORALAB_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let side = std::env::var("LORALAB_BENCH_SIDE").unwrap_or_else(|_| "both".into());
    let profile = std::env::var("LORALAB_BENCH_PROFILE").is_ok_and(|v| v == "1");
    // Both sides recompute each layer's activations in the backward pass.
    let grad_checkpoint = std::env::var("LORALAB_BENCH_GRAD_CHECKPOINT").is_ok_and(|v| v == "1");
    let every = (iters / 2).max(1);
    let dir = tempfile::tempdir().unwrap();
    let model_dir = match std::env::var("LORALAB_BENCH_MODEL") {
        Ok(d) => Path::new(&d).to_path_buf(),
        Err(_) => dir.path().join("model"),
    };
    let t = Tiny {
        tied: true,
        dims: Dims::smollm2_135m(),
        ..Tiny::llama()
    };
    if !model_dir.join("model.safetensors").exists() {
        write_tiny(&model_dir, &t);
    }
    if side == "ours" || side == "both" {
        run_ours(
            &model_dir,
            dir.path(),
            t.dims.vocab,
            iters,
            every,
            profile,
            grad_checkpoint,
        );
    }
    if side == "peer" || side == "both" {
        run_mlx_lm(&model_dir, iters, every, grad_checkpoint);
    }
}

fn run_ours(
    model_dir: &Path,
    scratch: &Path,
    vocab: usize,
    iters: usize,
    every: usize,
    profile: bool,
    grad_checkpoint: bool,
) {
    let mut model = load_hf_folder(model_dir, ComputeDtype::Auto).unwrap();
    let data = TrainData {
        train: random_batches(vocab, 4),
        ..Default::default()
    };
    let cfg = TrainConfig {
        iters,
        steps_per_report: every,
        num_layers: LAYERS_TRAINED,
        lora_parameters: LoraParameters {
            rank: RANK,
            ..Default::default()
        },
        grad_checkpoint,
        ..Default::default()
    };
    let mut last = None;
    train(
        &cfg,
        &mut model,
        &data,
        &scratch.join("run"),
        false,
        &AtomicBool::new(false),
        &mut |e| {
            if let Event::Report { .. } = e {
                last = Some(e);
            }
        },
    )
    .unwrap();
    if let Some(Event::Report {
        it_per_sec,
        tokens_per_sec,
        peak_memory_gb,
        train_loss,
        ..
    }) = last
    {
        println!(
            "loralab: {tokens_per_sec:.1} tokens/s, {it_per_sec:.3} it/s, peak {peak_memory_gb:.2} GB, loss {train_loss:.3}"
        );
        println!(
            "RESULT side=ours tokens_per_sec={tokens_per_sec:.3} peak_gb={peak_memory_gb:.3} loss={train_loss:.4}"
        );
    }
    if profile {
        profile_step(&model, &data.train[0], &step_gemms(vocab));
    }
}

/// Multiply-adds of one step's matmuls, as (m, k, n) triples: the forward of
/// every block and of the tied lm_head, and the input gradients of the
/// lm_head and of the adapted blocks (frozen weights need no weight gradient).
fn step_gemms(vocab: usize) -> Vec<(usize, usize, usize)> {
    let d = Dims::smollm2_135m();
    let tokens = BATCH * SEQ;
    let head_dim = d.hidden / d.heads;
    let block = [
        (tokens, d.hidden, d.hidden),
        (tokens, d.hidden, d.kv_heads * head_dim),
        (tokens, d.hidden, d.kv_heads * head_dim),
        (tokens, d.hidden, d.hidden),
        (tokens, d.hidden, d.inter),
        (tokens, d.hidden, d.inter),
        (tokens, d.inter, d.hidden),
    ];
    let mut out = Vec::new();
    for _ in 0..d.layers {
        out.extend(block);
    }
    for _ in 0..LAYERS_TRAINED {
        // dx = dy @ W: the same multiply-adds as the forward.
        out.extend(block);
    }
    out.push((tokens, d.hidden, vocab));
    out.push((tokens, vocab, d.hidden));
    out
}

fn seconds<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let tic = Instant::now();
            let out = f();
            drop(out);
            tic.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[reps / 2]
}

/// Median seconds of each part of one training step (after warm-up).
fn profile_step(model: &engine::models::Model, batch: &Batch, gemms: &[(usize, usize, usize)]) {
    let reps = 3;
    let inputs = loss_inputs(batch).unwrap();
    let params = model.lora_params();
    let pass = engine::models::Pass {
        lora: &params,
        dropout_seed: None,
        grad_checkpoint: false,
    };
    let forward = seconds(reps, || {
        let loss = batch_loss(model, &pass, &inputs).unwrap();
        eval([&loss]).unwrap();
    });
    let forward_backward = seconds(reps, || {
        let (loss, grads) = loss_and_grads(model, &params, &inputs, None, false).unwrap();
        let mut all = vec![&loss];
        all.extend(grads.iter());
        eval(all).unwrap();
    });
    let mut compiled = engine::train::compiled_loss_and_grads(model, false);
    let mut args = params.clone();
    args.extend(inputs.arrays());
    let tic = Instant::now();
    eval(compiled(&args).unwrap().iter()).unwrap();
    let first_compiled = tic.elapsed().as_secs_f64();
    let compiled_both = seconds(reps, || {
        let out = compiled(&args).unwrap();
        eval(out.iter()).unwrap();
    });
    println!("PROFILE   compiled fwd+bwd {compiled_both:.3} s (first call, with tracing: {first_compiled:.3} s)");
    // Adam on the adapters alone.
    let cfg = TrainConfig::default();
    let mut opt = engine::train::optimizer::Optimizer::new(&cfg, &params).unwrap();
    let grads: Vec<Array> = params
        .iter()
        .map(|p| mlx_rs::ops::ones_like(p).unwrap())
        .collect();
    let optimizer = seconds(reps, || {
        let new = opt.update(&params, &grads, 1e-5).unwrap();
        let mut all: Vec<&Array> = new.iter().collect();
        all.extend(opt.state_arrays());
        eval(all).unwrap();
    });
    // The lm_head and loss on their own: h [tokens, hidden] -> loss, with the
    // gradient back to h, using the model's shapes.
    let d = Dims::smollm2_135m();
    let key = random::key(1).unwrap();
    let tokens = (BATCH * SEQ) as i32;
    let h = random::normal::<f32>(&[tokens, d.hidden as i32], None, None, &key).unwrap();
    let e = random::normal::<f32>(&[d.vocab as i32, d.hidden as i32], None, None, &key)
        .unwrap()
        .multiply(Array::from_f32(0.05))
        .unwrap();
    let targets = inputs.targets.reshape(&[-1]).unwrap();
    eval([&h, &e, &targets]).unwrap();
    let head_loss = |x: &[Array]| -> Result<Vec<Array>, mlx_rs::error::Exception> {
        let logits = x[0].matmul(e.t())?;
        let lse = logits.logsumexp_axis(-1, false)?;
        let picked = logits
            .take_along_axis(&targets.expand_dims(-1)?, -1)?
            .squeeze_axes(&[-1])?;
        Ok(vec![lse.subtract(&picked)?.mean(false)?])
    };
    let head_forward = seconds(reps, || {
        let out = head_loss(std::slice::from_ref(&h)).unwrap();
        eval(out.iter()).unwrap();
    });
    let head_both = seconds(reps, || {
        let mut vg = mlx_rs::transforms::value_and_grad(head_loss);
        let (v, g) = vg(std::slice::from_ref(&h)).unwrap();
        eval(v.iter().chain(g.iter())).unwrap();
    });
    // The BLAS's rate on this machine now, from the largest block matmul.
    let a = random::normal::<f32>(&[tokens, d.hidden as i32], None, None, &key).unwrap();
    let w = random::normal::<f32>(&[d.inter as i32, d.hidden as i32], None, None, &key).unwrap();
    eval([&a, &w]).unwrap();
    let gemm = seconds(5, || {
        let y = a.matmul(w.t()).unwrap();
        eval([&y]).unwrap();
    });
    let rate = 2.0 * (BATCH * SEQ * d.hidden * d.inter) as f64 / gemm;
    let flops: f64 = gemms
        .iter()
        .map(|&(m, k, n)| 2.0 * (m * k * n) as f64)
        .sum();
    let step = forward_backward + optimizer;
    println!("PROFILE step (fwd+bwd+opt)     {step:7.3} s");
    println!("PROFILE   forward (loss only)  {forward:7.3} s");
    println!(
        "PROFILE   backward (fwd+bwd - fwd) {:7.3} s",
        forward_backward - forward
    );
    println!("PROFILE   optimizer (Adam)     {optimizer:7.3} s");
    println!(
        "PROFILE   lm_head+loss fwd {head_forward:.3} s, fwd+bwd {head_both:.3} s ({:.0}% of the step)",
        100.0 * head_both / step
    );
    println!(
        "PROFILE   matmuls: {:.0} GFLOP per step; at the BLAS's {:.0} GFLOP/s now: {:.3} s ({:.0}% of the step)",
        flops / 1e9,
        rate / 1e9,
        flops / rate,
        100.0 * flops / rate / step
    );
}

fn run_mlx_lm(model_dir: &Path, iters: usize, every: usize, grad_checkpoint: bool) {
    let report = run_peer(
        "peer_bench.py",
        &[
            model_dir.to_str().unwrap(),
            &iters.to_string(),
            &every.to_string(),
            &BATCH.to_string(),
            &SEQ.to_string(),
            &RANK.to_string(),
            &LAYERS_TRAINED.to_string(),
            if grad_checkpoint { "1" } else { "0" },
        ],
    );
    // mlx-lm's progress UI shares stdout; the JSON is the last line.
    let last_line = report
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let peer: serde_json::Value = serde_json::from_str(last_line)
        .unwrap_or_else(|e| panic!("peer output is not JSON ({e}): {report}"));
    let get = |k: &str| peer[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "mlx-lm:  {:.1} tokens/s, {:.3} it/s, peak {:.2} GB, loss {:.3}",
        get("tokens_per_second"),
        get("iterations_per_second"),
        get("peak_memory"),
        get("train_loss"),
    );
    println!(
        "RESULT side=peer tokens_per_sec={:.3} peak_gb={:.3} loss={:.4}",
        get("tokens_per_second"),
        get("peak_memory"),
        get("train_loss"),
    );
}
