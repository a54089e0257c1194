//! `tensorboard: true` writes the run's scalars as TensorBoard event files,
//! which TensorBoard's own reader (in the peer venv) reads back equal to the
//! run's events.

mod common;

use std::collections::BTreeMap;

use common::*;
use engine::config::{ComputeDtype, TrainConfig};
use engine::models::load_hf_folder;
use engine::protocol::Event;
use engine::train::TrainData;

/// tag -> (step, value) as TensorBoard reads them.
type Scalars = BTreeMap<String, Vec<(u64, f64)>>;

fn read_back(dir: &std::path::Path) -> Scalars {
    let out = run_peer("tensorboard_read.py", &[dir.to_str().unwrap()]);
    let parsed: BTreeMap<String, Vec<(u64, f64)>> =
        serde_json::from_str(out.lines().last().unwrap()).unwrap();
    // The files hold f32s; Python prints them widened to f64, and
    // serde_json's float parsing can be an f64 ulp off (it is not exact
    // without `float_roundtrip`), which rounding back to f32 undoes.
    parsed
        .into_iter()
        .map(|(tag, points)| {
            let points = points
                .into_iter()
                .map(|(step, value)| (step, f64::from(value as f32)))
                .collect();
            (tag, points)
        })
        .collect()
}

/// What the events say, each value rounded to f32 as the files store it.
fn expected(events: &[Event]) -> Scalars {
    let mut out = Scalars::new();
    let mut put = |tag: &str, step: usize, value: f64| {
        out.entry(tag.to_string())
            .or_default()
            .push((step as u64, f64::from(value as f32)));
    };
    for event in events {
        match event {
            Event::Report {
                step,
                train_loss,
                learning_rate,
                tokens_per_sec,
                peak_memory_gb,
                ..
            } => {
                put("train/loss", *step, *train_loss);
                put("train/learning_rate", *step, *learning_rate);
                put("train/tokens_per_sec", *step, *tokens_per_sec);
                put("train/peak_memory_gb", *step, *peak_memory_gb);
            }
            Event::Eval { step, val_loss, .. } => put("val/loss", *step, *val_loss),
            Event::Done {
                step,
                test_loss: Some(loss),
                ..
            } => put("test/loss", *step, *loss),
            _ => {}
        }
    }
    out
}

#[test]
fn tensorboard_reads_back_the_runs_scalars() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let cfg = TrainConfig {
        iters: 6,
        num_layers: 2,
        learning_rate: 1e-3,
        steps_per_report: 2,
        steps_per_eval: 3,
        val_batches: 1,
        test: true,
        tensorboard: true,
        ..Default::default()
    };
    let data = TrainData {
        train: (0..2)
            .map(|i| batch(&pattern_rows(2, 20, i), 21, &[0, 0]))
            .collect(),
        valid: vec![batch(&pattern_rows(2, 16, 7), 17, &[0, 0])],
        test: vec![batch(&pattern_rows(2, 16, 8), 17, &[0, 0])],
    };
    let run_dir = dir.path().join("run");
    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    let events = train_run(&cfg, &mut model, &data, &run_dir).unwrap();

    let board = run_dir.join("tensorboard");
    let files: Vec<String> = std::fs::read_dir(&board)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("events.out.tfevents."), "{files:?}");

    let want = expected(&events);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        [
            "test/loss",
            "train/learning_rate",
            "train/loss",
            "train/peak_memory_gb",
            "train/tokens_per_sec",
            "val/loss"
        ]
    );
    assert_eq!(
        want["train/loss"].iter().map(|p| p.0).collect::<Vec<_>>(),
        [2, 4, 6]
    );
    assert_eq!(
        want["val/loss"].iter().map(|p| p.0).collect::<Vec<_>>(),
        [0, 3, 6]
    );
    assert_eq!(read_back(&board), want);

    // Off (the default), no folder is made.
    let quiet_dir = dir.path().join("quiet");
    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    train_run(
        &TrainConfig {
            tensorboard: false,
            ..cfg
        },
        &mut model,
        &data,
        &quiet_dir,
    )
    .unwrap();
    assert!(quiet_dir.join("adapters.safetensors").exists());
    assert!(!quiet_dir.join("tensorboard").exists());
}
