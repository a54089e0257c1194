//! Adapters cross between Loralab and mlx-lm in both directions: each side
//! loads the other's `adapters.safetensors` + `adapter_config.json` and
//! computes the same logits (needs the peer: scripts/setup-peer.sh).

mod common;

use common::*;
use engine::config::{ComputeDtype, FineTuneType, LoraParameters, TrainConfig};
use engine::lora;
use engine::models::load_hf_folder;
use engine::protocol::Event;
use engine::train::{loss::loss_inputs, TrainData};
use mlx_rs::Array;

fn peer_logits(
    model_dir: &std::path::Path,
    b: &engine::batch::Batch,
    adapter: Option<&std::path::Path>,
) -> Array {
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
    Array::load_safetensors(&out)
        .unwrap()
        .remove("logits")
        .unwrap()
}

#[test]
fn adapter_trained_here_loads_in_mlx_lm_with_the_same_logits() {
    trained_here_gives_mlx_lm_our_logits(FineTuneType::Lora);
}

#[test]
fn dora_adapter_trained_here_loads_in_mlx_lm_with_the_same_logits() {
    trained_here_gives_mlx_lm_our_logits(FineTuneType::Dora);
}

/// Parameters per adapted linear layer: lora_a and lora_b, and DoRA's m.
fn params_per_layer(kind: FineTuneType) -> usize {
    if kind == FineTuneType::Dora {
        3
    } else {
        2
    }
}

fn trained_here_gives_mlx_lm_our_logits(kind: FineTuneType) {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    let data = TrainData {
        train: (0..3)
            .map(|i| batch(&pattern_rows(2, 24, i), 33, &[0, 0]))
            .collect(),
        ..Default::default()
    };
    let cfg = TrainConfig {
        iters: 6,
        learning_rate: 1e-2,
        num_layers: 2,
        steps_per_report: 3,
        fine_tune_type: kind,
        lora_parameters: LoraParameters {
            rank: 4,
            scale: 10.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let run_dir = dir.path().join("run");
    let events = train_run(&cfg, &mut model, &data, &run_dir).unwrap();
    assert!(
        matches!(events.last(), Some(Event::Done { step: 6, .. })),
        "{events:?}"
    );
    // Only the top two blocks carry adapters, 7 linear layers each.
    let names = &lora::adapter_names(&model);
    assert_eq!(names.len(), 2 * 7 * params_per_layer(kind));
    assert!(names.contains(&"model.layers.3.mlp.down_proj.lora_b".to_string()));
    assert_eq!(
        names.contains(&"model.layers.3.mlp.down_proj.m".to_string()),
        kind == FineTuneType::Dora
    );
    assert!(!names.iter().any(|n| n.starts_with("model.layers.1.")));

    let probe = batch(&pattern_rows(2, 18, 9), 20, &[0, 0]);
    let inputs = loss_inputs(&probe).unwrap();
    let ours = model.forward(&inputs.inputs).unwrap();
    let base = peer_logits(&model_dir, &probe, None);
    let theirs = peer_logits(&model_dir, &probe, Some(&run_dir));
    let effect = max_abs_diff(&theirs, &base);
    assert!(
        effect > 0.05,
        "training changed the logits by only {effect}"
    );
    let diff = max_abs_diff(&ours, &theirs);
    assert!(diff < 1e-3, "mlx-lm with our adapter differs by {diff}");
}

#[test]
fn adapter_trained_by_mlx_lm_loads_here_with_the_same_logits() {
    trained_by_mlx_lm_gives_us_its_logits(FineTuneType::Lora, "lora");
}

#[test]
fn dora_adapter_trained_by_mlx_lm_loads_here_with_the_same_logits() {
    trained_by_mlx_lm_gives_us_its_logits(FineTuneType::Dora, "dora");
}

fn trained_by_mlx_lm_gives_us_its_logits(kind: FineTuneType, name: &str) {
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
            name,
        ],
    );
    let probe = batch(&pattern_rows(2, 18, 9), 20, &[0, 0]);
    let theirs = peer_logits(&model_dir, &probe, Some(&adapter_dir));
    let base = peer_logits(&model_dir, &probe, None);
    let effect = max_abs_diff(&theirs, &base);
    assert!(
        effect > 0.05,
        "mlx-lm's training changed the logits by only {effect}"
    );

    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    lora::load_adapters(&mut model, &adapter_dir).unwrap();
    // mlx-lm was asked for all layers, rank 4.
    assert_eq!(
        lora::adapter_names(&model).len(),
        LAYERS * 7 * params_per_layer(kind)
    );
    let ours = model.forward(&loss_inputs(&probe).unwrap().inputs).unwrap();
    let diff = max_abs_diff(&ours, &theirs);
    assert!(
        diff < 1e-3,
        "our logits with mlx-lm's adapter differ by {diff}"
    );
}

#[test]
fn training_steps_match_mlx_lm_from_the_same_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &Tiny::llama());
    let b = batch(&pattern_rows(2, 24, 4), 25, &[0, 6]);
    let cfg = TrainConfig {
        iters: 4,
        learning_rate: 1e-3,
        num_layers: 3,
        steps_per_report: 1,
        seed: 11,
        ..Default::default()
    };
    // The starting adapter: what `train` attaches for this seed, written out
    // with a nonzero lora_b so every parameter gets a gradient from step 1.
    let start_dir = dir.path().join("start");
    std::fs::create_dir_all(&start_dir).unwrap();
    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    lora::attach(
        &mut model,
        &lora::AdapterSettings::from_train_config(&cfg),
        cfg.seed,
    )
    .unwrap();
    let names = lora::adapter_names(&model);
    let start: Vec<(String, Array)> = names
        .iter()
        .zip(model.lora_params())
        .enumerate()
        .map(|(i, (n, p))| {
            let p = if n.ends_with("lora_b") {
                let noise = mlx_rs::random::normal::<f32>(
                    p.shape(),
                    None,
                    None,
                    &mlx_rs::random::key(i as u64).unwrap(),
                )
                .unwrap();
                noise.multiply(Array::from_f32(0.01)).unwrap()
            } else {
                p
            };
            (n.clone(), p)
        })
        .collect();
    Array::save_safetensors(
        start.iter().map(|(k, v)| (k.as_str(), v)),
        None,
        start_dir.join("adapters.safetensors"),
    )
    .unwrap();
    lora::write_adapter_config(&start_dir, &cfg).unwrap();

    let batch_path = dir.path().join("batch.json");
    std::fs::write(&batch_path, batch_json(&b).to_string()).unwrap();
    let peer_out = dir.path().join("peer.safetensors");
    let peer_losses: Vec<f64> = serde_json::from_str(
        run_peer(
            "peer_steps.py",
            &[
                model_dir.to_str().unwrap(),
                start_dir.to_str().unwrap(),
                batch_path.to_str().unwrap(),
                "4",
                "0.001",
                peer_out.to_str().unwrap(),
            ],
        )
        .trim(),
    )
    .unwrap();

    let mut model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    let cfg = TrainConfig {
        resume_adapter_file: Some(start_dir.join("adapters.safetensors").display().to_string()),
        ..cfg
    };
    let data = TrainData {
        train: vec![b],
        ..Default::default()
    };
    let run_dir = dir.path().join("run");
    let losses: Vec<f64> = train_run(&cfg, &mut model, &data, &run_dir)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Event::Report { train_loss, .. } => Some(train_loss),
            _ => None,
        })
        .collect();
    assert_eq!(losses.len(), 4);
    for (step, (ours, theirs)) in losses.iter().zip(&peer_losses).enumerate() {
        assert!(
            ((ours - theirs) / theirs).abs() < 1e-4,
            "step {}: loss {ours} vs mlx-lm {theirs}",
            step + 1
        );
    }
    let peer = Array::load_safetensors(&peer_out).unwrap();
    let ours = Array::load_safetensors(run_dir.join("adapters.safetensors")).unwrap();
    assert_eq!(peer.len(), ours.len());
    // Four Adam steps at lr 1e-3 move a weight by up to 4e-3. The step here
    // rounds differently from mlx-lm's (fused exps, the target logit as a dot
    // product), and Adam's normalized update turns rounding in near-zero
    // gradient entries into differences of ~1e-5; a wrong gradient would
    // show at the scale of the movement itself.
    for (name, theirs) in &peer {
        let diff = max_abs_diff(&ours[name], theirs);
        assert!(diff < 5e-5, "{name}: differs from mlx-lm's by {diff}");
    }
}

#[test]
fn adapter_over_a_quantized_base_kept_quantized_matches_mlx_lm() {
    // The GPU path: the base stays 4-bit (quantized matmuls, quantized tied
    // embedding), adapters in f32 on top, as mlx-lm's QLoRA runs.
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    let t = Tiny {
        quantize: true,
        tied: true,
        ..Tiny::llama()
    };
    write_tiny(&model_dir, &t);
    let config = serde_json::from_value(config_json(&t)).unwrap();
    let weights = tiny_weights(&t).into_iter().collect();
    let mut model = engine::models::build_model_as_stored(&config, weights).unwrap();
    assert!(model.quantized);
    let data = TrainData {
        train: (0..2)
            .map(|i| batch(&pattern_rows(2, 24, i), 25, &[0, 0]))
            .collect(),
        ..Default::default()
    };
    let cfg = TrainConfig {
        iters: 4,
        learning_rate: 1e-2,
        num_layers: -1,
        steps_per_report: 4,
        ..Default::default()
    };
    let run_dir = dir.path().join("run");
    train_run(&cfg, &mut model, &data, &run_dir).unwrap();
    let probe = batch(&pattern_rows(2, 18, 9), 20, &[0, 0]);
    let ours = model.forward(&loss_inputs(&probe).unwrap().inputs).unwrap();
    let theirs = peer_logits(&model_dir, &probe, Some(&run_dir));
    let base = peer_logits(&model_dir, &probe, None);
    assert!(
        max_abs_diff(&theirs, &base) > 0.05,
        "training changed nothing"
    );
    let diff = max_abs_diff(&ours, &theirs);
    assert!(
        diff < 1e-3,
        "quantized base + adapter differs from mlx-lm by {diff}"
    );
}
