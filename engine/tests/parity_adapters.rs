//! Adapters cross between Loralab and mlx-lm in both directions: each side
//! loads the other's `adapters.safetensors` + `adapter_config.json` and
//! computes the same logits (needs the peer: scripts/setup-peer.sh).

mod common;

use std::sync::atomic::AtomicBool;

use common::*;
use engine::config::{ComputeDtype, LoraParameters, TrainConfig};
use engine::lora;
use engine::models::load_hf_folder;
use engine::protocol::Event;
use engine::train::{loss::loss_inputs, train, TrainData};
use mlx_rs::Array;

fn peer_logits(model_dir: &std::path::Path, b: &engine::batch::Batch, adapter: Option<&std::path::Path>) -> Array {
    let dir = tempfile::tempdir().unwrap();
    let batch_path = dir.path().join("batch.json");
    std::fs::write(&batch_path, batch_json(b).to_string()).unwrap();
    let out = dir.path().join("logits.safetensors");
    let mut args = vec![
        model_dir.to_str().unwrap().to_string(),
        batch_path.to_str().unwrap().to_string(),
        out.to_str().unwrap().to_string(),
    ];
    if let Some(a) = adapter {
        args.push(a.to_str().unwrap().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_peer("peer_logits.py", &args);
    Array::load_safetensors(&out).unwrap().remove("logits").unwrap()
}

#[test]
fn adapter_trained_here_loads_in_mlx_lm_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    let data = TrainData {
        train: (0..3).map(|i| batch(&pattern_rows(2, 24, i), 33, &[0, 0])).collect(),
        ..Default::default()
    };
    let cfg = TrainConfig {
        iters: 6,
        learning_rate: 1e-2,
        num_layers: 2,
        steps_per_report: 3,
        lora_parameters: LoraParameters {
            rank: 4,
            scale: 10.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let run_dir = dir.path().join("run");
    let mut events = Vec::new();
    train(&cfg, &mut model, &data, &run_dir, false, &AtomicBool::new(false), &mut |e| events.push(e)).unwrap();
    assert!(matches!(events.last(), Some(Event::Done { step: 6, .. })), "{events:?}");
    // Only the top two blocks carry adapters, 7 linear layers each.
    let names = &model_names(&model);
    assert_eq!(names.len(), 2 * 7 * 2);
    assert!(names.contains(&"model.layers.3.mlp.down_proj.lora_b".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("model.layers.1.")));

    let probe = batch(&pattern_rows(2, 18, 9), 20, &[0, 0]);
    let inputs = loss_inputs(&probe).unwrap();
    let ours = model.forward(&inputs.inputs).unwrap();
    let base = peer_logits(&model_dir, &probe, None);
    let theirs = peer_logits(&model_dir, &probe, Some(&run_dir));
    let effect = max_abs_diff(&theirs, &base);
    assert!(effect > 0.05, "training changed the logits by only {effect}");
    let diff = max_abs_diff(&ours, &theirs);
    assert!(diff < 1e-3, "mlx-lm with our adapter differs by {diff}");
}

fn model_names(model: &engine::models::Model) -> Vec<String> {
    lora::adapter_names(model)
}

#[test]
fn adapter_trained_by_mlx_lm_loads_here_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let rows_path = dir.path().join("rows.json");
    let rows = pattern_rows(4, 24, 3);
    std::fs::write(&rows_path, serde_json::json!({ "rows": rows }).to_string()).unwrap();
    let adapter_dir = dir.path().join("peer-adapter");
    run_peer(
        "peer_train.py",
        &[
            model_dir.to_str().unwrap(),
            rows_path.to_str().unwrap(),
            adapter_dir.to_str().unwrap(),
            "5",
            "0.01",
        ],
    );
    let probe = batch(&pattern_rows(2, 18, 9), 20, &[0, 0]);
    let theirs = peer_logits(&model_dir, &probe, Some(&adapter_dir));
    let base = peer_logits(&model_dir, &probe, None);
    let effect = max_abs_diff(&theirs, &base);
    assert!(effect > 0.05, "mlx-lm's training changed the logits by only {effect}");

    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    lora::load_adapters(&mut model, &adapter_dir).unwrap();
    // mlx-lm was asked for all layers, rank 4.
    assert_eq!(lora::adapter_names(&model).len(), LAYERS * 7 * 2);
    let ours = model.forward(&loss_inputs(&probe).unwrap().inputs).unwrap();
    let diff = max_abs_diff(&ours, &theirs);
    assert!(diff < 1e-3, "our logits with mlx-lm's adapter differ by {diff}");
}
