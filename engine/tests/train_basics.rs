//! The trainer's contract: it learns, follows mlx-lm's loss mask and
//! schedules, writes mlx-lm's files and its own checkpoint, reports events,
//! and rejects bad configurations with errors that name the field.

mod common;

use common::*;
use engine::config::{FineTuneType, LoraParameters, LrSchedule, QuantizeOnLoad, TrainConfig};
use engine::models::{load_hf_folder, Model};
use engine::protocol::Event;
use engine::train::loss::{evaluate, loss_mask};
use engine::train::order::epoch_order;
use engine::train::schedule::Schedule;
use engine::train::TrainData;

fn tiny_model(dir: &std::path::Path) -> Model {
    write_tiny(dir, &Tiny::llama());
    load_hf_folder(dir, engine::config::ComputeDtype::Auto).unwrap()
}

#[test]
fn loss_mask_follows_mlx_lm() {
    // Width 6 -> 5 targets per row; mlx-lm counts offset <= t <= length.
    let b = batch(&[vec![1, 2, 3, 4, 5], vec![6, 7, 8]], 6, &[0, 2]);
    assert_eq!(
        loss_mask(&b),
        vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    );
}

fn cycle(len: usize, start: usize) -> Vec<u32> {
    (0..len)
        .map(|i| [10, 20, 30, 40][(i + start) % 4])
        .collect()
}

#[test]
fn loss_decreases_on_a_repeated_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = tiny_model(&dir.path().join("model"));
    let data = TrainData {
        // A cycle of four tokens: few enough mappings for rank-8 adapters
        // on a random model to pick up within 30 steps.
        train: vec![batch(&[cycle(24, 0), cycle(22, 1)], 25, &[0, 0])],
        ..Default::default()
    };
    let cfg = TrainConfig {
        iters: 30,
        learning_rate: 1e-3,
        num_layers: -1,
        steps_per_report: 5,
        ..Default::default()
    };
    let events = train_run(&cfg, &mut model, &data, &dir.path().join("run")).unwrap();
    let losses: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Report { train_loss, .. } => Some(*train_loss),
            _ => None,
        })
        .collect();
    assert_eq!(losses.len(), 6);
    assert!(losses[0] > 2.5, "{losses:?}");
    // mlx-lm's own trainer on this batch goes from about 3.6 to 1.7 per
    // five-step window (Adam 1e-3); the first window here averages steps 1-5.
    assert!(losses[5] < 0.6 * losses[0], "{losses:?}");
    assert!(losses[5] < 2.5, "{losses:?}");
}

#[test]
fn schedules_match_mlx_lm_values() {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1e-12);
    let cosine = Schedule::from_lr_schedule(&LrSchedule {
        name: "cosine_decay".into(),
        arguments: vec![1e-3, 100.0, 0.0],
        warmup: 10,
        warmup_init: 0.0,
    })
    .unwrap();
    for (step, want) in [
        (0, 0.0),
        (5, 5e-4),
        (10, 1e-3),
        (11, 1e-3),
        (61, 5e-4),
        (111, 0.0),
        (500, 0.0),
    ] {
        let got = cosine.at(step);
        assert!(
            close(got, want) || (want == 0.0 && got.abs() < 1e-12),
            "cosine at {step}: {got} != {want}"
        );
    }
    let linear = Schedule::from_lr_schedule(&LrSchedule {
        name: "linear_schedule".into(),
        arguments: vec![1e-3, 1e-4, 10.0],
        warmup: 0,
        warmup_init: 0.0,
    })
    .unwrap();
    for (step, want) in [(0, 1e-3), (5, 5.5e-4), (10, 1e-4), (20, 1e-4)] {
        assert!(
            close(linear.at(step), want),
            "linear at {step}: {}",
            linear.at(step)
        );
    }
}

#[test]
fn epoch_order_is_a_seeded_permutation() {
    let a = epoch_order(0, 0, 10);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_eq!(a, epoch_order(0, 0, 10));
    assert_ne!(a, epoch_order(0, 1, 10));
    assert_ne!(a, epoch_order(1, 0, 10));
}

#[test]
fn run_writes_mlx_lm_files_checkpoints_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = tiny_model(&dir.path().join("model"));
    let data = TrainData {
        train: (0..3)
            .map(|i| batch(&pattern_rows(2, 20, i), 21, &[0, 0]))
            .collect(),
        valid: vec![batch(&pattern_rows(2, 16, 8), 17, &[0, 0])],
        test: vec![batch(&pattern_rows(2, 16, 9), 17, &[0, 0])],
    };
    let cfg = TrainConfig {
        epochs: Some(2),
        learning_rate: 1e-3,
        num_layers: -1,
        steps_per_report: 2,
        steps_per_eval: 2,
        save_every: 3,
        test: true,
        ..Default::default()
    };
    let run_dir = dir.path().join("run");
    let events = train_run(&cfg, &mut model, &data, &run_dir).unwrap();

    match &events[0] {
        Event::Started {
            total_steps,
            start_step,
            trainable_parameters,
            total_parameters,
            ..
        } => {
            assert_eq!((*total_steps, *start_step), (6, 0));
            // rank 8 x sum(in + out) of the 7 linears, 4 blocks.
            assert_eq!(*trainable_parameters, 8 * 1024 * 4);
            assert_eq!(*total_parameters, 180_800);
        }
        other => panic!("first event {other:?}"),
    }
    let evals: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::Eval { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    // Step 0 before any update, then after the update of every second step
    // and of the last one, so each loss belongs to the weights saved there.
    assert_eq!(evals, vec![0, 2, 4, 6]);
    let reports: Vec<(usize, f64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Report {
                step,
                epoch,
                trained_tokens,
                ..
            } => Some((*step, *epoch, *trained_tokens)),
            _ => None,
        })
        .collect();
    // Each batch: 2 rows of 20 and 19 tokens, width 21 -> 20 + 19 targets.
    assert_eq!(
        reports,
        vec![(2, 2.0 / 3.0, 78), (4, 4.0 / 3.0, 156), (6, 2.0, 234)]
    );
    let checkpoints: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::Checkpoint { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(checkpoints, vec![3, 6]);
    let Some(Event::Done {
        step,
        test_loss: Some(loss),
        test_perplexity: Some(ppl),
        ..
    }) = events.last()
    else {
        panic!("last event {:?}", events.last());
    };
    assert_eq!(*step, 6);
    assert_eq!(*loss, evaluate(&model, &data.test, -1).unwrap());
    assert!((ppl - loss.exp()).abs() < 1e-9);

    for file in [
        "adapters.safetensors",
        "0000003_adapters.safetensors",
        "0000006_adapters.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "adapter_config.json",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let text = std::fs::read_to_string(run_dir.join("adapter_config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["fine_tune_type"], "lora");
    assert_eq!(config["num_layers"], -1);
    assert_eq!(
        config["lora_parameters"],
        serde_json::json!({"rank": 8, "scale": 20.0, "dropout": 0.0})
    );
    let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(
        text.contains("\n    \"adapter_path\""),
        "mlx-lm indents by 4: {text}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("trainer_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], 6);
    assert_eq!(
        state["data_position"],
        serde_json::json!({"epoch": 2, "index": 0})
    );
}

#[test]
fn bad_configs_are_rejected_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(&dir.path().join("model"), &Tiny::llama());
    let data = TrainData {
        train: vec![batch(&pattern_rows(2, 10, 0), 11, &[0, 0])],
        ..Default::default()
    };
    let base = TrainConfig {
        iters: 2,
        num_layers: -1,
        ..Default::default()
    };
    let cases: Vec<(TrainConfig, TrainData, &str)> = vec![
        (TrainConfig { steps_per_report: 0, ..base.clone() }, data.clone(), "`steps_per_report` must be at least 1"),
        (TrainConfig { grad_accumulation_steps: 0, ..base.clone() }, data.clone(), "`grad_accumulation_steps` must be at least 1"),
        (TrainConfig { epochs: Some(0), ..base.clone() }, data.clone(), "`epochs` must be at least 1"),
        (TrainConfig { num_layers: 9, ..base.clone() }, data.clone(), "`num_layers` is 9 but the model only has 4 layers"),
        (
            TrainConfig { fine_tune_type: FineTuneType::Full, quantize: Some(QuantizeOnLoad { bits: 4, group_size: 64 }), ..base.clone() },
            data.clone(),
            "`quantize` is QLoRA's (a quantized base under adapters); `fine_tune_type: full` trains the weights themselves, which stay dense: leave `quantize` out",
        ),
        (
            TrainConfig {
                lr_schedule: Some(LrSchedule { name: "warp".into(), arguments: vec![1e-3], warmup: 0, warmup_init: 0.0 }),
                ..base.clone()
            },
            data.clone(),
            "`lr_schedule` is not usable: lr_schedule name `warp` is not supported (cosine_decay, linear_schedule, exponential_decay, step_decay)",
        ),
        (
            TrainConfig {
                lr_schedule: Some(LrSchedule { name: "cosine_decay".into(), arguments: vec![1e-3], warmup: 0, warmup_init: 0.0 }),
                ..base.clone()
            },
            data.clone(),
            "`lr_schedule` is not usable: lr_schedule `cosine_decay` needs arguments [init, decay_steps, end], got 1 value(s)",
        ),
        (
            TrainConfig {
                lora_parameters: LoraParameters { keys: Some(vec!["self_attn.x_proj".into()]), ..Default::default() },
                ..base.clone()
            },
            data.clone(),
            "lora_parameters.keys: `self_attn.x_proj` match no linear layer of a block (available: mlp.down_proj, mlp.gate_proj, mlp.up_proj, self_attn.k_proj, self_attn.o_proj, self_attn.q_proj, self_attn.v_proj)",
        ),
        (base.clone(), TrainData::default(), "no training batches"),
        (TrainConfig { test: true, ..base.clone() }, data.clone(), "`test` is set but there are no test batches"),
    ];
    for (cfg, data, want) in cases {
        let mut model = load_hf_folder(
            &dir.path().join("model"),
            engine::config::ComputeDtype::Auto,
        )
        .unwrap();
        let err = train_run(&cfg, &mut model, &data, &dir.path().join("run")).unwrap_err();
        assert_eq!(format!("{err:#}"), want);
    }
}
