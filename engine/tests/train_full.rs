//! Full fine-tuning (`fine_tune_type: full`): the same loss and weights as
//! mlx-lm's own full fine-tune after a step, checkpoints mlx-lm loads, and a
//! stopped and resumed run that equals an uninterrupted one (the parity
//! tests need the peer: scripts/setup-peer.sh).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use engine::config::{ComputeDtype, FineTuneType, LrSchedule, OptimizerKind, TrainConfig};
use engine::models::load_hf_folder;
use engine::protocol::Event;
use engine::train::{loss::loss_inputs, train, TrainData};
use mlx_rs::Array;

fn train_losses(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Report { train_loss, .. } => Some(*train_loss),
            _ => None,
        })
        .collect()
}

fn weights(path: &Path) -> HashMap<String, Array> {
    Array::load_safetensors(path).unwrap()
}

/// mlx-lm's names of every weight of block `index` of the tiny `t`.
fn block_names(t: &Tiny, index: usize) -> Vec<String> {
    let mut keys = vec![
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
    ];
    if t.model_type == "qwen2" {
        keys.extend([
            "self_attn.q_proj.bias",
            "self_attn.k_proj.bias",
            "self_attn.v_proj.bias",
        ]);
    }
    let mut names: Vec<String> = keys
        .iter()
        .map(|key| format!("model.layers.{index}.{key}"))
        .collect();
    names.sort();
    names
}

fn matches_mlx_lm_after_one_step(t: Tiny) {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &t);
    let rows = pattern_rows(2, 24, 5);
    let rows_path = dir.path().join("rows.json");
    std::fs::write(&rows_path, serde_json::json!({ "rows": rows }).to_string()).unwrap();
    let peer_dir = dir.path().join("peer");
    let peer_losses: Vec<f64> = serde_json::from_str(
        run_peer(
            "peer_full_train.py",
            &[
                model_dir.to_str().unwrap(),
                rows_path.to_str().unwrap(),
                peer_dir.to_str().unwrap(),
                "2",
                "1",
                "0.001",
            ],
        )
        .lines()
        .last()
        .unwrap(),
    )
    .unwrap();

    let cfg = TrainConfig {
        fine_tune_type: FineTuneType::Full,
        num_layers: 2,
        iters: 1,
        batch_size: 2,
        learning_rate: 1e-3,
        steps_per_report: 1,
        ..Default::default()
    };
    let data = TrainData {
        train: vec![batch(&rows, 25, &[0, 0])],
        ..Default::default()
    };
    let run_dir = dir.path().join("run");
    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    let events = train_run(&cfg, &mut model, &data, &run_dir).unwrap();
    let ours = train_losses(&events);
    assert_eq!((ours.len(), peer_losses.len()), (1, 1));
    assert!(
        ((ours[0] - peer_losses[0]) / peer_losses[0]).abs() < 1e-5,
        "loss {} vs mlx-lm {}",
        ours[0],
        peer_losses[0]
    );
    match &events[0] {
        Event::Started {
            trainable_parameters,
            ..
        } => {
            let per_block: usize = [64 * 64, 32 * 64, 32 * 64, 64 * 64, 3 * 128 * 64, 2 * 64]
                .iter()
                .sum::<usize>()
                + if t.model_type == "qwen2" {
                    64 + 32 + 32
                } else {
                    0
                };
            assert_eq!(*trainable_parameters, 2 * per_block as u64);
        }
        other => panic!("first event {other:?}"),
    }

    // The same file layout: exactly the top two blocks' weights, by
    // mlx-lm's names, and the same values after the step.
    let theirs = weights(&peer_dir.join("adapters.safetensors"));
    let mine = weights(&run_dir.join("adapters.safetensors"));
    let mut expected = block_names(&t, 2);
    expected.extend(block_names(&t, 3));
    expected.sort();
    let mut names: Vec<String> = mine.keys().cloned().collect();
    names.sort();
    assert_eq!(names, expected);
    let mut peer_names: Vec<String> = theirs.keys().cloned().collect();
    peer_names.sort();
    assert_eq!(peer_names, expected);
    let base: HashMap<String, Array> = tiny_weights(&t).into_iter().collect();
    for name in &expected {
        let diff = max_abs_diff(&mine[name], &theirs[name]);
        assert!(diff < 1e-4, "{name}: differs from mlx-lm's by {diff}");
        // One Adam step at 1e-3 moves every weight by about 3e-3.
        let moved = max_abs_diff(&mine[name], &base[name]);
        assert!(moved > 1e-3, "{name}: moved only {moved}");
    }

    // mlx-lm loads our checkpoint folder onto the base and computes our logits.
    let probe = batch(&pattern_rows(2, 18, 9), 20, &[0, 0]);
    let probe_path = dir.path().join("probe.json");
    std::fs::write(&probe_path, batch_json(&probe).to_string()).unwrap();
    let logits_path = dir.path().join("logits.safetensors");
    run_peer(
        "peer_logits.py",
        &[
            model_dir.to_str().unwrap(),
            probe_path.to_str().unwrap(),
            logits_path.to_str().unwrap(),
            run_dir.to_str().unwrap(),
        ],
    );
    let theirs = weights(&logits_path).remove("logits").unwrap();
    let ours = model.forward(&loss_inputs(&probe).unwrap().inputs).unwrap();
    let diff = max_abs_diff(&ours, &theirs);
    assert!(
        diff < 1e-3,
        "mlx-lm's logits with our checkpoint differ by {diff}"
    );
}

#[test]
fn full_fine_tune_matches_mlx_lm_after_one_step() {
    matches_mlx_lm_after_one_step(Tiny::llama());
}

#[test]
fn full_fine_tune_with_biases_matches_mlx_lm_after_one_step() {
    matches_mlx_lm_after_one_step(Tiny::family("qwen2"));
}

fn resume_config() -> TrainConfig {
    TrainConfig {
        fine_tune_type: FineTuneType::Full,
        num_layers: 2,
        iters: 12,
        batch_size: 2,
        optimizer: OptimizerKind::Adamw,
        learning_rate: 1e-3,
        steps_per_report: 1,
        steps_per_eval: 4,
        val_batches: 1,
        save_every: 100,
        seed: 5,
        grad_accumulation_steps: 2,
        grad_clip: Some(1.0),
        lr_schedule: Some(LrSchedule {
            name: "cosine_decay".into(),
            arguments: vec![1e-3, 12.0, 1e-5],
            warmup: 2,
            warmup_init: 0.0,
        }),
        ..Default::default()
    }
}

fn resume_data() -> TrainData {
    TrainData {
        train: (0..3)
            .map(|i| batch(&pattern_rows(2, 20, i), 21, &[0, 3]))
            .collect(),
        valid: vec![batch(&pattern_rows(2, 16, 7), 17, &[0, 0])],
        test: vec![],
    }
}

/// Trains in `run_dir`, setting the stop flag once step `stop_at` reported.
fn run(model_dir: &Path, run_dir: &Path, resume: bool, stop_at: Option<usize>) -> Vec<Event> {
    let mut model = load_hf_folder(model_dir, ComputeDtype::Auto).unwrap();
    let stop = AtomicBool::new(false);
    let mut events = Vec::new();
    train(
        &resume_config(),
        &mut model,
        &resume_data(),
        run_dir,
        resume,
        &stop,
        &mut |e| {
            if let (Event::Report { step, .. }, Some(at)) = (&e, stop_at) {
                if *step == at {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            events.push(e);
        },
    )
    .unwrap();
    events
}

#[test]
fn a_stopped_and_resumed_full_run_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());

    let straight_dir = dir.path().join("straight");
    let straight = run(&model_dir, &straight_dir, false, None);
    let split_dir = dir.path().join("split");
    // Step 7 is mid-accumulation: the checkpoint holds a step's gradients.
    let first = run(&model_dir, &split_dir, false, Some(7));
    assert!(
        matches!(first.last(), Some(Event::Stopped { step: 7 })),
        "{:?}",
        first.last()
    );
    let optimizer = weights(&split_dir.join("optimizer.safetensors"));
    assert!(optimizer.contains_key("accum.model.layers.3.mlp.down_proj.weight"));
    assert!(optimizer.contains_key("m.model.layers.2.input_layernorm.weight"));
    let second = run(&model_dir, &split_dir, true, None);

    let mut resumed = train_losses(&first);
    resumed.extend(train_losses(&second));
    let straight_losses = train_losses(&straight);
    assert_eq!((straight_losses.len(), resumed.len()), (12, 12));
    for (step, (a, b)) in straight_losses.iter().zip(&resumed).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs(),
            "step {}: straight {a} vs resumed {b}",
            step + 1
        );
    }
    let evals = |events: &[Event]| -> Vec<(usize, f64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Eval { step, val_loss, .. } => Some((*step, *val_loss)),
                _ => None,
            })
            .collect()
    };
    let mut resumed_evals = evals(&first);
    resumed_evals.extend(evals(&second));
    assert_eq!(evals(&straight), resumed_evals);

    let a = weights(&straight_dir.join("adapters.safetensors"));
    let b = weights(&split_dir.join("adapters.safetensors"));
    assert_eq!(a.len(), 18);
    let base: HashMap<String, Array> = tiny_weights(&Tiny::llama()).into_iter().collect();
    for (name, x) in &a {
        assert_eq!(
            max_abs_diff(x, &b[name]),
            0.0,
            "{name}: straight vs resumed"
        );
        assert!(max_abs_diff(x, &base[name]) > 1e-4, "{name}: did not train");
    }
}

/// With `grad_checkpoint`, a block's own weights are inputs of its
/// recomputation: without that their gradients would be lost and the
/// weights would not move.
#[test]
fn grad_checkpoint_trains_a_full_fine_tune_as_without() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::family("qwen3"));
    let cfg = TrainConfig {
        iters: 4,
        grad_accumulation_steps: 1,
        ..resume_config()
    };
    let mut runs = Vec::new();
    for grad_checkpoint in [false, true] {
        let run_dir = dir.path().join(format!("run-{grad_checkpoint}"));
        let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
        let cfg = TrainConfig {
            grad_checkpoint,
            ..cfg.clone()
        };
        let events = train_run(&cfg, &mut model, &resume_data(), &run_dir).unwrap();
        runs.push((
            train_losses(&events),
            weights(&run_dir.join("adapters.safetensors")),
        ));
    }
    let ((plain_losses, plain), (recomputed_losses, recomputed)) = (&runs[0], &runs[1]);
    assert_eq!(plain_losses.len(), 4);
    for (a, b) in plain_losses.iter().zip(recomputed_losses) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");
    }
    // Qwen3's blocks also train their per-head Q/K norms.
    assert!(plain.contains_key("model.layers.3.self_attn.q_norm.weight"));
    assert_eq!(plain.len(), recomputed.len());
    for (name, x) in plain {
        let diff = max_abs_diff(x, &recomputed[name]);
        assert!(diff < 1e-5, "{name}: {diff} apart with grad_checkpoint");
    }
}
