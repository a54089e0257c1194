//! Early stopping and `keep_checkpoints` on a run whose validation loss
//! rises: a train split of two rows memorised at a high learning rate
//! (validation loss falls for 8 steps, then climbs).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use engine::config::{ComputeDtype, EarlyStopping, LoraParameters, TrainConfig};
use engine::models::load_hf_folder;
use engine::protocol::Event;
use engine::train::{train, TrainData};
use mlx_rs::Array;

const PATIENCE: usize = 3;

fn config() -> TrainConfig {
    TrainConfig {
        iters: 40,
        learning_rate: 1e-3,
        steps_per_report: 1,
        steps_per_eval: 2,
        val_batches: -1,
        test: true,
        test_batches: -1,
        save_every: 4,
        num_layers: -1,
        lora_parameters: LoraParameters {
            rank: 4,
            ..Default::default()
        },
        early_stopping: Some(EarlyStopping {
            patience: PATIENCE,
            min_delta: 0.0,
        }),
        keep_checkpoints: Some(2),
        ..Default::default()
    }
}

/// The test split is the valid split, so the test loss is the validation
/// loss of whatever weights the run ends with.
fn data() -> TrainData {
    let valid = batch(&pattern_rows(2, 20, 5), 20, &[0, 0]);
    TrainData {
        train: vec![batch(&pattern_rows(2, 20, 0), 20, &[0, 0])],
        valid: vec![valid.clone()],
        test: vec![valid],
    }
}

fn run(model_dir: &Path, run_dir: &Path, resume: bool, stop_after: Option<usize>) -> Vec<Event> {
    let mut model = load_hf_folder(model_dir, ComputeDtype::Auto).unwrap();
    let stop = AtomicBool::new(false);
    let mut events = Vec::new();
    train(
        &config(),
        &mut model,
        &data(),
        run_dir,
        resume,
        &stop,
        &mut |event| {
            if let (Event::Report { step, .. }, Some(at)) = (&event, stop_after) {
                if *step == at {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            events.push(event);
        },
    )
    .unwrap();
    events
}

fn evals(events: &[Event]) -> Vec<(usize, f64)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Eval { step, val_loss, .. } => Some((*step, *val_loss)),
            _ => None,
        })
        .collect()
}

/// The numbered checkpoints the events leave listed: saved minus removed.
fn listed(events: &[Event]) -> BTreeSet<usize> {
    let mut steps = BTreeSet::new();
    for event in events {
        match event {
            Event::Checkpoint { step, .. } => {
                steps.insert(*step);
            }
            Event::CheckpointRemoved { step, .. } => {
                steps.remove(step);
            }
            _ => {}
        }
    }
    steps
}

fn files(run_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(run_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn numbered(step: usize) -> String {
    format!("{step:07}_adapters.safetensors")
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut loaded: Vec<(String, Array)> =
        Array::load_safetensors(path).unwrap().into_iter().collect();
    loaded.sort_by(|a, b| a.0.cmp(&b.0));
    loaded
        .into_iter()
        .map(|(name, array)| (name, array.as_slice::<f32>().to_vec()))
        .collect()
}

fn done(events: &[Event]) -> (usize, f64, String) {
    match events.last() {
        Some(Event::Done {
            step,
            test_loss: Some(test_loss),
            reason: Some(reason),
            ..
        }) => (*step, *test_loss, reason.clone()),
        other => panic!("last event {other:?}"),
    }
}

#[test]
fn a_rising_validation_loss_stops_the_run_on_its_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let run_dir = dir.path().join("run");
    let events = run(&model_dir, &run_dir, false, None);

    // Where the rule says it stops: the first evaluation that is the
    // PATIENCE-th in a row not below the lowest before it.
    let evals = evals(&events);
    let (mut lowest, mut without, mut expected_stop) = (f64::INFINITY, 0, None);
    for &(step, loss) in &evals {
        if loss < lowest {
            (lowest, without) = (loss, 0);
        } else {
            without += 1;
        }
        if without == PATIENCE {
            expected_stop = Some(step);
            break;
        }
    }
    let stop = expected_stop.expect("validation loss never stopped improving");
    let (step, test_loss, reason) = done(&events);
    assert_eq!(step, stop);
    assert!(stop < 40, "stopped at {stop}");
    assert_eq!(
        reason,
        format!("stopped early at step {stop}: no improvement in {PATIENCE} evaluations")
    );
    assert_eq!(
        evals.last().unwrap().0,
        stop,
        "no evaluation after the stop"
    );
    let (best_step, best_loss) = evals
        .iter()
        .copied()
        .fold((0, f64::INFINITY), |best, eval| {
            if eval.1 < best.1 {
                eval
            } else {
                best
            }
        });
    assert!(
        best_step > 0 && best_step < stop,
        "best at {best_step}, stop at {stop}"
    );

    // The adapter is the best checkpoint's weights, tensor for tensor, and
    // the test split (= the valid split) measured them.
    let adapter = tensors(&run_dir.join("adapters.safetensors"));
    assert_eq!(adapter, tensors(&run_dir.join(numbered(best_step))));
    let stopped = tensors(&run_dir.join(numbered(stop)));
    assert_ne!(
        adapter, stopped,
        "the weights at the stop are not the best's"
    );
    assert!(
        (test_loss - best_loss).abs() < 1e-6,
        "test {test_loss} vs best {best_loss}"
    );

    // keep_checkpoints 2: the two lowest validation losses among the saved
    // checkpoints plus the latest (the stop), everything else removed.
    let saved: Vec<usize> = events
        .iter()
        .filter_map(|event| match event {
            Event::Checkpoint { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert!(saved.contains(&best_step) && saved.len() > 3, "{saved:?}");
    let mut ranked: Vec<(f64, usize)> = saved
        .iter()
        .filter_map(|step| evals.iter().find(|e| e.0 == *step).map(|e| (e.1, *step)))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut kept: BTreeSet<usize> = ranked.iter().take(2).map(|r| r.1).collect();
    kept.insert(stop);
    assert!(kept.contains(&best_step));
    assert_eq!(listed(&events), kept);
    let mut expected_files: BTreeSet<String> = kept.iter().map(|s| numbered(*s)).collect();
    for file in [
        "adapters.safetensors",
        "adapter_config.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        expected_files.insert(file.to_string());
    }
    assert_eq!(files(&run_dir), expected_files);
}

#[test]
fn a_stopped_and_resumed_run_stops_early_where_a_straight_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let straight_dir = dir.path().join("straight");
    let straight = run(&model_dir, &straight_dir, false, None);

    // Stopped after step 9 (no evaluation there), then a checkpoint from a
    // worker killed after writing it but before the trainer state: the
    // resume deletes it and says so.
    let split_dir = dir.path().join("split");
    let first = run(&model_dir, &split_dir, false, Some(9));
    assert!(
        matches!(first.last(), Some(Event::Stopped { step: 9 })),
        "{:?}",
        first.last()
    );
    std::fs::copy(split_dir.join(numbered(9)), split_dir.join(numbered(11))).unwrap();
    let second = run(&model_dir, &split_dir, true, None);
    assert!(second
        .iter()
        .any(|event| matches!(event, Event::CheckpointRemoved { step: 11, .. })));

    assert_eq!(done(&second), done(&straight));
    assert_eq!(
        tensors(&split_dir.join("adapters.safetensors")),
        tensors(&straight_dir.join("adapters.safetensors"))
    );
    let mut all = first.clone();
    all.extend(second);
    assert_eq!(listed(&all), listed(&straight));
    assert_eq!(files(&split_dir), files(&straight_dir));
}

#[test]
fn early_stopping_without_a_validation_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    let data = TrainData {
        valid: vec![],
        test: vec![],
        ..data()
    };
    let cfg = TrainConfig {
        test: false,
        ..config()
    };
    let error = train_run(&cfg, &mut model, &data, &dir.path().join("run")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`early_stopping` is set but there are no validation batches to judge by"
    );
}
