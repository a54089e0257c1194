//! Stopping and resuming gives the same run as training straight through:
//! same per-step losses and the same adapter weights.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use engine::config::{ComputeDtype, LoraParameters, LrSchedule, OptimizerKind, TrainConfig};
use engine::models::load_hf_folder;
use engine::protocol::Event;
use engine::train::{train, TrainData};
use mlx_rs::Array;

fn config(accumulation: usize) -> TrainConfig {
    TrainConfig {
        iters: 20,
        learning_rate: 1e-3,
        optimizer: OptimizerKind::Adamw,
        steps_per_report: 1,
        steps_per_eval: 5,
        val_batches: 1,
        save_every: 100,
        seed: 3,
        num_layers: -1,
        grad_accumulation_steps: accumulation,
        grad_clip: Some(1.0),
        lr_schedule: Some(LrSchedule {
            name: "cosine_decay".into(),
            arguments: vec![1e-2, 20.0, 1e-4],
            warmup: 3,
            warmup_init: 0.0,
        }),
        lora_parameters: LoraParameters {
            rank: 4,
            dropout: 0.1,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn data() -> TrainData {
    TrainData {
        train: (0..3)
            .map(|i| batch(&pattern_rows(2, 20, i), 25, &[0, 3]))
            .collect(),
        valid: vec![batch(&pattern_rows(2, 16, 7), 17, &[0, 0])],
        test: vec![],
    }
}

struct Run {
    losses: Vec<(usize, f64)>,
    events: Vec<Event>,
}

fn run(
    model_dir: &Path,
    cfg: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    stop_at: Option<usize>,
) -> Run {
    let mut model = load_hf_folder(model_dir, ComputeDtype::Auto).unwrap();
    let stop = AtomicBool::new(false);
    let mut events = Vec::new();
    train(cfg, &mut model, &data(), run_dir, resume, &stop, &mut |e| {
        if let (Event::Report { step, .. }, Some(at)) = (&e, stop_at) {
            if *step == at {
                stop.store(true, Ordering::SeqCst);
            }
        }
        events.push(e);
    })
    .unwrap();
    let losses = events
        .iter()
        .filter_map(|e| match e {
            Event::Report {
                step, train_loss, ..
            } => Some((*step, *train_loss)),
            _ => None,
        })
        .collect();
    Run { losses, events }
}

fn adapters(run_dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut loaded: Vec<(String, Array)> =
        Array::load_safetensors(run_dir.join("adapters.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    loaded.sort_by(|a, b| a.0.cmp(&b.0));
    loaded
        .into_iter()
        .map(|(k, v)| (k, v.as_slice::<f32>().to_vec()))
        .collect()
}

fn check_resume(accumulation: usize, stop_at: usize) {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let cfg = config(accumulation);

    let straight_dir = dir.path().join("straight");
    let straight = run(&model_dir, &cfg, &straight_dir, false, None);
    assert_eq!(straight.losses.len(), 20);

    let split_dir = dir.path().join("split");
    let first = run(&model_dir, &cfg, &split_dir, false, Some(stop_at));
    let tail: Vec<&Event> = first.events.iter().rev().take(2).collect();
    assert!(
        matches!(tail[0], Event::Stopped { step } if *step == stop_at),
        "{tail:?}"
    );
    assert!(
        matches!(tail[1], Event::Checkpoint { step, .. } if *step == stop_at),
        "{tail:?}"
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(split_dir.join("trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"], stop_at);
    assert_eq!(state["optimizer_step"], stop_at / accumulation);
    assert_eq!(state["data_position"]["epoch"], stop_at / 3);
    assert_eq!(state["data_position"]["index"], stop_at % 3);

    let second = run(&model_dir, &cfg, &split_dir, true, None);
    match &second.events[0] {
        Event::Started {
            start_step,
            total_steps,
            ..
        } => {
            assert_eq!((*start_step, *total_steps), (stop_at, 20));
        }
        other => panic!("first event {other:?}"),
    }
    let mut resumed = first.losses.clone();
    resumed.extend(second.losses.iter().copied());
    assert_eq!(resumed.len(), 20);
    for ((s1, l1), (s2, l2)) in straight.losses.iter().zip(&resumed) {
        assert_eq!(s1, s2);
        assert!(
            (l1 - l2).abs() <= 1e-6 * l1.abs(),
            "step {s1}: straight {l1} vs resumed {l2}"
        );
    }
    let a = adapters(&straight_dir);
    // lora_b starts at zero: nonzero values show the run trained.
    let moved = a
        .iter()
        .filter(|(n, _)| n.ends_with("lora_b"))
        .flat_map(|(_, v)| v.iter())
        .fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(moved > 1e-3, "lora_b barely moved: {moved}");
    let b = adapters(&split_dir);
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-6,
            "{name}: straight and resumed adapters differ by {worst}"
        );
    }
}

#[test]
fn stop_after_10_and_resume_matches_20_straight() {
    check_resume(1, 10);
}

#[test]
fn resume_mid_accumulation_matches_straight() {
    check_resume(2, 7);
}

/// Each evaluation measures the weights after its step's update (step 0:
/// before any), so a checkpoint's stored loss is its own weights' loss: a
/// fresh evaluation of each numbered checkpoint gives the number the run
/// reported for its step.
#[test]
fn a_checkpoint_is_evaluated_on_its_own_weights() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let cfg = TrainConfig {
        save_every: 5,
        lora_parameters: LoraParameters {
            rank: 4,
            ..Default::default()
        },
        ..config(1)
    };
    let run_dir = dir.path().join("run");
    let events = run(&model_dir, &cfg, &run_dir, false, None).events;
    let evaluated: Vec<(usize, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Eval { step, val_loss, .. } => Some((*step, *val_loss)),
            _ => None,
        })
        .collect();
    let steps: Vec<usize> = evaluated.iter().map(|(step, _)| *step).collect();
    assert_eq!(steps, [0, 5, 10, 15, 20]);
    for (step, reported) in &evaluated[1..] {
        let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
        engine::lora::attach(
            &mut model,
            &engine::lora::AdapterSettings::from_train_config(&cfg),
            cfg.seed,
        )
        .unwrap();
        engine::lora::load_weights(
            &mut model,
            &run_dir.join(format!("{step:07}_adapters.safetensors")),
        )
        .unwrap();
        let fresh = engine::train::loss::evaluate(&model, &data().valid, cfg.val_batches).unwrap();
        assert!(
            (fresh - reported).abs() <= 1e-6 * reported.abs(),
            "step {step}: reported {reported}, its checkpoint evaluates to {fresh}"
        );
    }
}
