//! Exports: a base with an adapter fused in, written as an HF folder or an
//! MLX-quantized one, gives the logits of base + adapter in Loralab; mlx-lm
//! (the pinned peer) loads both folders and generates our greedy tokens;
//! PEFT exports hold PEFT's names and orientation; bad requests are refused
//! before anything is written and a cancelled export leaves nothing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use common::{
    batch, max_abs, max_abs_diff, pattern_rows, run_peer, smollm2_path, write_tiny, Tiny,
};
use engine::config::{ComputeDtype, FineTuneType, LoraParameters, TrainConfig};
use engine::export::{
    export, plan, ExportDtype, ExportFormat, ExportOptions, ExportRequest, ModelCard,
};
use engine::generate::{GenerateParams, Generator};
use engine::lora::{self, AdapterSettings};
use engine::models::{build_model, load_hf_folder, Model};
use engine::train::loss::loss_inputs;
use mlx_rs::Array;
use serde_json::{json, Value};

/// An adapter on the top `layers` blocks with random (nonzero) B and, for
/// DoRA, magnitudes away from the base's row norms, written as mlx-lm does.
fn random_adapter(model: &mut Model, kind: FineTuneType, layers: i64, dir: &Path) {
    let cfg = TrainConfig {
        num_layers: layers,
        fine_tune_type: kind,
        lora_parameters: LoraParameters {
            rank: 4,
            scale: 8.0,
            ..Default::default()
        },
        ..Default::default()
    };
    lora::attach(model, &AdapterSettings::from_train_config(&cfg), 3).unwrap();
    let names = lora::adapter_names(model);
    let params: Vec<(String, Array)> = names
        .iter()
        .zip(model.lora_params())
        .enumerate()
        .map(|(i, (name, p))| {
            let key = mlx_rs::random::key(100 + i as u64).unwrap();
            let noise = mlx_rs::random::normal::<f32>(p.shape(), None, None, &key).unwrap();
            let p = if name.ends_with("lora_b") {
                noise.multiply(Array::from_f32(0.02)).unwrap()
            } else if name.ends_with(".m") {
                p.multiply(
                    noise
                        .multiply(Array::from_f32(0.1))
                        .unwrap()
                        .add(Array::from_f32(1.0))
                        .unwrap(),
                )
                .unwrap()
            } else {
                p
            };
            (name.clone(), p)
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    Array::save_safetensors(
        params.iter().map(|(k, v)| (k.as_str(), v)),
        None,
        dir.join(lora::ADAPTER_WEIGHTS_FILE),
    )
    .unwrap();
    lora::write_adapter_config(dir, &cfg).unwrap();
    lora::detach(model);
}

fn request(base: &Path, adapter: &Path, out: &Path, options: ExportOptions) -> ExportRequest {
    ExportRequest {
        base: base.to_path_buf(),
        adapter_dir: Some(adapter.to_path_buf()),
        adapter_weights: None,
        options,
        out: out.to_path_buf(),
        staging: engine::export::staging_for(out),
        card: ModelCard {
            title: "test export".into(),
            base_name: "tiny".into(),
            ..Default::default()
        },
    }
}

fn f32_options(format: ExportFormat) -> ExportOptions {
    ExportOptions {
        dtype: ExportDtype::F32,
        ..ExportOptions::new(format)
    }
}

fn run_export(req: &ExportRequest) -> engine::export::ExportReport {
    export(req, &mut |_| {}, &AtomicBool::new(false)).unwrap()
}

fn probe() -> Array {
    let probe = batch(&pattern_rows(2, 18, 9), 20, &[0, 0]);
    loss_inputs(&probe).unwrap().inputs
}

/// max |a - b| relative to max |b|.
fn relative(a: &Array, b: &Array) -> f32 {
    max_abs_diff(a, b) / max_abs(b)
}

fn fused_tiny_matches(tiny: Tiny, kind: FineTuneType) {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    write_tiny(&base_dir, &tiny);
    let mut model = load_hf_folder(&base_dir, ComputeDtype::Float32).unwrap();
    let adapter = dir.path().join("adapter");
    random_adapter(&mut model, kind, 2, &adapter);
    let base_logits = model.forward(&probe()).unwrap();
    lora::load_adapters(&mut model, &adapter).unwrap();
    let adapted = model.forward(&probe()).unwrap();
    assert!(
        max_abs_diff(&adapted, &base_logits) > 1e-2,
        "the adapter must change the logits for the test to mean anything"
    );

    let out = dir.path().join("fused");
    let report = run_export(&request(
        &base_dir,
        &adapter,
        &out,
        f32_options(ExportFormat::Hf),
    ));
    assert_eq!(report.fused, 2 * 7, "two blocks of seven adapted linears");
    assert!(!engine::export::staging_for(&out).exists());
    let fused = load_hf_folder(&out, ComputeDtype::Float32).unwrap();
    let diff = relative(&fused.forward(&probe()).unwrap(), &adapted);
    assert!(
        diff < 1e-4,
        "fused logits differ from base + adapter by {diff} (relative)"
    );

    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "float32");
    assert!(config.get("quantization").is_none());
    assert_eq!(config["model_type"], tiny.model_type);
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        index["weight_map"]["model.layers.3.mlp.down_proj.weight"],
        "model-00001-of-00001.safetensors"
    );
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("AutoModelForCausalLM.from_pretrained"),
        "{card}"
    );
}

/// A full fine-tune's folder exports as the base with its trained blocks'
/// weights in place (nothing to fuse); there is no adapter to write alone.
#[test]
fn a_full_fine_tune_exports_as_its_trained_weights() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    write_tiny(&base_dir, &Tiny::llama());
    let mut model = load_hf_folder(&base_dir, ComputeDtype::Float32).unwrap();
    let base_logits = model.forward(&probe()).unwrap();
    let cfg = TrainConfig {
        fine_tune_type: FineTuneType::Full,
        num_layers: 2,
        iters: 3,
        batch_size: 2,
        learning_rate: 1e-2,
        ..Default::default()
    };
    let data = engine::train::TrainData {
        train: vec![batch(&pattern_rows(2, 20, 1), 21, &[0, 0])],
        ..Default::default()
    };
    let run_dir = dir.path().join("run");
    common::train_run(&cfg, &mut model, &data, &run_dir).unwrap();
    let trained = model.forward(&probe()).unwrap();
    assert!(
        max_abs_diff(&trained, &base_logits) > 1e-2,
        "training must change the logits for the test to mean anything"
    );

    let out = dir.path().join("exported");
    let report = run_export(&request(
        &base_dir,
        &run_dir,
        &out,
        f32_options(ExportFormat::Hf),
    ));
    assert_eq!(
        report.fused,
        2 * 9,
        "two blocks of seven matrices and two norms"
    );
    let exported = load_hf_folder(&out, ComputeDtype::Float32).unwrap();
    let diff = max_abs_diff(&exported.forward(&probe()).unwrap(), &trained);
    assert!(
        diff < 1e-5,
        "the export's logits differ from the run's by {diff}"
    );

    let refused = plan(&request(
        &base_dir,
        &run_dir,
        &dir.path().join("peft"),
        f32_options(ExportFormat::Peft),
    ))
    .err()
    .expect("a PEFT export of a full fine-tune is refused")
    .to_string();
    assert_eq!(
        refused,
        "a full fine-tune has no adapter to write alone (`peft`): export `hf`, `mlx` or `gguf`, whose weights are the trained ones"
    );
}

#[test]
fn lora_fused_into_an_hf_base_gives_the_adapted_logits() {
    fused_tiny_matches(Tiny::llama(), FineTuneType::Lora);
}

#[test]
fn dora_fused_into_an_hf_base_gives_the_adapted_logits() {
    fused_tiny_matches(Tiny::llama(), FineTuneType::Dora);
}

#[test]
fn lora_fused_into_a_quantized_base_gives_the_adapted_logits() {
    // The base's 4-bit matrices are dequantized to fuse; the reference
    // computes with the same dequantized values.
    fused_tiny_matches(
        Tiny {
            quantize: true,
            ..Tiny::llama()
        },
        FineTuneType::Lora,
    );
}

#[test]
fn qwen3_fused_keeps_its_family_config() {
    fused_tiny_matches(Tiny::family("qwen3"), FineTuneType::Dora);
}

/// The shipped SmolLM2 GGUF dequantized to f32, as Loralab trains on it.
fn smollm2_f32() -> Model {
    let mut gguf = engine::gguf::load_gguf_model(&smollm2_path()).unwrap();
    gguf.dequantize_weights().unwrap();
    build_model(&gguf.config, gguf.weights, ComputeDtype::Float32).unwrap()
}

fn greedy(model: &Model, prompt: &[u32], stop: &[u32]) -> Vec<u32> {
    let params = GenerateParams {
        max_tokens: 16,
        ..Default::default()
    };
    Generator::new(model, prompt, stop, &params)
        .unwrap()
        .collect::<anyhow::Result<Vec<u32>>>()
        .unwrap()
}

fn mlx_lm_greedy(model_dir: &Path, prompt: &[u32], stop: &[u32]) -> Vec<u32> {
    let request = model_dir.with_extension("request.json");
    std::fs::write(
        &request,
        json!({"prompt": prompt, "max_tokens": 16, "stop": stop}).to_string(),
    )
    .unwrap();
    let out: Value = serde_json::from_str(&run_peer(
        "generate_greedy.py",
        &[model_dir.to_str().unwrap(), request.to_str().unwrap()],
    ))
    .unwrap();
    serde_json::from_value(out["tokens"].clone()).unwrap()
}

/// From the GGUF base: the fused folder's logits equal base + adapter, its
/// tokenizer files encode as the GGUF's tokenizer does, and mlx-lm loads
/// the fused folder and the MLX 4-bit folder and generates the tokens
/// Loralab generates from each.
#[test]
fn smollm2_gguf_fused_and_quantized_exports_load_in_mlx_lm() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = smollm2_f32();
    let adapter = dir.path().join("adapter");
    random_adapter(&mut model, FineTuneType::Lora, 4, &adapter);
    lora::load_adapters(&mut model, &adapter).unwrap();
    let bundle = engine::tokenizer::TokenizerBundle::from_gguf_path(&smollm2_path()).unwrap();
    let prompt: Vec<u32> = bundle
        .tokenizer
        .encode("The capital of France is", false)
        .unwrap()
        .get_ids()
        .to_vec();
    let stop = bundle.eos_token_ids.clone();

    let fused_dir = dir.path().join("fused");
    let report = run_export(&request(
        &smollm2_path(),
        &adapter,
        &fused_dir,
        f32_options(ExportFormat::Hf),
    ));
    assert_eq!(report.fused, 4 * 7);
    let fused = load_hf_folder(&fused_dir, ComputeDtype::Float32).unwrap();
    let tokens = probe();
    let diff = relative(
        &fused.forward(&tokens).unwrap(),
        &model.forward(&tokens).unwrap(),
    );
    assert!(diff < 1e-4, "fused logits differ by {diff} (relative)");
    let exported = engine::tokenizer::TokenizerBundle::from_hf_folder(&fused_dir).unwrap();
    let text = "Ahoy, matey! <|im_start|>user\nWhere be the treasure?";
    assert_eq!(
        exported.tokenizer.encode(text, false).unwrap().get_ids(),
        bundle.tokenizer.encode(text, false).unwrap().get_ids()
    );
    assert_eq!(exported.chat_template, bundle.chat_template);
    assert_eq!(exported.eos_token_ids, bundle.eos_token_ids);
    drop(fused);

    let ours = greedy(&model, &prompt, &stop);
    assert!(ours.len() > 4, "a greedy continuation to compare: {ours:?}");
    assert_eq!(mlx_lm_greedy(&fused_dir, &prompt, &stop), ours);

    let quantized_dir = dir.path().join("mlx4");
    let options = ExportOptions {
        bits: 4,
        ..f32_options(ExportFormat::Mlx)
    };
    run_export(&request(&smollm2_path(), &adapter, &quantized_dir, options));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(quantized_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["quantization"], json!({"group_size": 64, "bits": 4}));
    let quantized = load_hf_folder(&quantized_dir, ComputeDtype::Float32).unwrap();
    assert!(quantized.quantized);
    let ours_quantized = greedy(&quantized, &prompt, &stop);
    assert!(ours_quantized.len() > 4, "{ours_quantized:?}");
    assert_eq!(
        mlx_lm_greedy(&quantized_dir, &prompt, &stop),
        ours_quantized
    );
}

#[test]
fn peft_export_has_peft_names_orientation_and_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    write_tiny(&base_dir, &Tiny::llama());
    let mut model = load_hf_folder(&base_dir, ComputeDtype::Float32).unwrap();
    let adapter = dir.path().join("adapter");
    random_adapter(&mut model, FineTuneType::Dora, 2, &adapter);
    let out = dir.path().join("peft");
    let mut req = request(&base_dir, &adapter, &out, f32_options(ExportFormat::Peft));
    req.card.hub_repo = Some("org/tiny".into());
    run_export(&req);

    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["base_model_name_or_path"], "org/tiny");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 32.0, "scale 8 x rank 4");
    assert_eq!(config["use_dora"], true);
    assert_eq!(config["layers_to_transform"], json!([2, 3]));
    assert_eq!(
        config["target_modules"],
        json!([
            "down_proj",
            "gate_proj",
            "k_proj",
            "o_proj",
            "q_proj",
            "up_proj",
            "v_proj"
        ])
    );

    let ours = Array::load_safetensors(adapter.join(lora::ADAPTER_WEIGHTS_FILE)).unwrap();
    let peft = Array::load_safetensors(out.join("adapter_model.safetensors")).unwrap();
    assert_eq!(peft.len(), 2 * 7 * 3);
    let prefix = "base_model.model.model.layers.3.self_attn.q_proj";
    let a = &peft[&format!("{prefix}.lora_A.weight")];
    let b = &peft[&format!("{prefix}.lora_B.weight")];
    let m = &peft[&format!("{prefix}.lora_magnitude_vector")];
    assert_eq!(a.shape(), [4, 64], "lora_A is [r, in]");
    assert_eq!(b.shape(), [64, 4], "lora_B is [out, r]");
    let layer = "model.layers.3.self_attn.q_proj";
    assert_eq!(max_abs_diff(a, &ours[&format!("{layer}.lora_a")].t()), 0.0);
    assert_eq!(max_abs_diff(b, &ours[&format!("{layer}.lora_b")].t()), 0.0);
    assert_eq!(max_abs_diff(m, &ours[&format!("{layer}.m")]), 0.0);
}

#[test]
fn bf16_export_writes_bf16_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    write_tiny(&base_dir, &Tiny::llama());
    let mut model = load_hf_folder(&base_dir, ComputeDtype::Float32).unwrap();
    let adapter = dir.path().join("adapter");
    random_adapter(&mut model, FineTuneType::Lora, 1, &adapter);
    let out = dir.path().join("bf16");
    run_export(&request(
        &base_dir,
        &adapter,
        &out,
        ExportOptions::new(ExportFormat::Hf),
    ));
    let weights = Array::load_safetensors(out.join("model-00001-of-00001.safetensors")).unwrap();
    assert!(weights
        .values()
        .all(|w| w.dtype() == mlx_rs::Dtype::Bfloat16));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "bfloat16");
}

fn error_of(req: &ExportRequest) -> String {
    match export(req, &mut |_| {}, &AtomicBool::new(false)) {
        Ok(_) => panic!("the export should have been refused"),
        Err(error) => format!("{error:#}"),
    }
}

#[test]
fn refusals_name_the_problem_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    write_tiny(&base_dir, &Tiny::llama());
    let mut model = load_hf_folder(&base_dir, ComputeDtype::Float32).unwrap();
    let adapter = dir.path().join("adapter");
    random_adapter(&mut model, FineTuneType::Lora, 1, &adapter);

    // An adapter trained on another model does not fit.
    let other_dir = dir.path().join("other");
    write_tiny(
        &other_dir,
        &Tiny {
            dims: common::Dims {
                hidden: 32,
                ..Default::default()
            },
            ..Tiny::llama()
        },
    );
    let out: PathBuf = dir.path().join("out");
    let message = error_of(&request(
        &other_dir,
        &adapter,
        &out,
        f32_options(ExportFormat::Hf),
    ));
    assert!(message.contains("does not fit the base"), "{message}");
    assert!(!out.exists());

    let bits = ExportOptions {
        bits: 3,
        ..ExportOptions::new(ExportFormat::Mlx)
    };
    let message = error_of(&request(&base_dir, &adapter, &out, bits));
    assert!(message.contains("bits must be 4 or 8"), "{message}");

    std::fs::create_dir_all(&out).unwrap();
    let message = error_of(&request(
        &base_dir,
        &adapter,
        &out,
        f32_options(ExportFormat::Hf),
    ));
    assert!(message.contains("already exists"), "{message}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing written into it"
    );
}

#[test]
fn a_cancelled_export_leaves_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    write_tiny(&base_dir, &Tiny::llama());
    let mut model = load_hf_folder(&base_dir, ComputeDtype::Float32).unwrap();
    let adapter = dir.path().join("adapter");
    random_adapter(&mut model, FineTuneType::Lora, 1, &adapter);
    let out = dir.path().join("out");
    let req = request(&base_dir, &adapter, &out, f32_options(ExportFormat::Hf));
    let cancel = AtomicBool::new(false);
    let mut seen = 0;
    let result = plan(&req).unwrap().write(
        &req,
        &mut |progress| {
            seen += 1;
            if progress.tensors_done == 5 {
                cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        },
        &cancel,
    );
    let error = result.expect_err("cancelled");
    assert!(error.is::<engine::export::Cancelled>(), "{error:#}");
    assert!(seen >= 6);
    assert!(!out.exists());
    assert!(!engine::export::staging_for(&out).exists());
}
