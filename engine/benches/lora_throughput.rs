//! Tokens/s and peak memory of one LoRA training configuration, here and in
//! mlx-lm (`mlx_lm.lora`'s trainer) on the same random SmolLM2-135M-shaped
//! model: batch 4 x 256 tokens, rank 8, top 16 layers.
//!
//! `cargo bench -p engine --bench lora_throughput` (needs scripts/setup-peer.sh).
//! `LORALAB_BENCH_ITERS` (default 6) sets the steps per side; the figures are
//! those of the last report window (half the steps), after warm-up.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::AtomicBool;

use common::*;
use engine::batch::Batch;
use engine::config::{ComputeDtype, LoraParameters, TrainConfig};
use engine::models::load_hf_folder;
use engine::protocol::Event;
use engine::train::{train, TrainData};

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
    let every = (iters / 2).max(1);
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    let t = Tiny {
        tied: true,
        dims: Dims::smollm2_135m(),
        ..Tiny::llama()
    };
    write_tiny(&model_dir, &t);

    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    let data = TrainData {
        train: random_batches(t.dims.vocab, 4),
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
        ..Default::default()
    };
    let mut last = None;
    train(
        &cfg,
        &mut model,
        &data,
        &dir.path().join("run"),
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
    }

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
    println!(
        "mlx-lm:  {:.1} tokens/s, {:.3} it/s, peak {:.2} GB, loss {:.3}",
        peer["tokens_per_second"].as_f64().unwrap_or(f64::NAN),
        peer["iterations_per_second"].as_f64().unwrap_or(f64::NAN),
        peer["peak_memory"].as_f64().unwrap_or(f64::NAN),
        peer["train_loss"].as_f64().unwrap_or(f64::NAN),
    );
}
