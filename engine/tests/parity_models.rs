//! Every family's forward pass and loss against mlx-lm's on the same tiny
//! checkpoint (needs the peer: scripts/setup-peer.sh).

mod common;

use common::*;
use engine::config::ComputeDtype;
use engine::models::{load_hf_folder, Pass};
use engine::train::loss::{batch_loss, loss_inputs};
use mlx_rs::Array;

fn check_against_peer(t: Tiny) {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_tiny(&model_dir, &t);
    // Rows of different lengths, padded like mlx-lm pads, one with a prompt offset.
    let b = batch(&pattern_rows(3, 20, 1), 33, &[0, 5, 0]);
    let batch_path = dir.path().join("batch.json");
    std::fs::write(&batch_path, batch_json(&b).to_string()).unwrap();
    let out = dir.path().join("peer.safetensors");
    let report = run_peer(
        "peer_logits.py",
        &[
            model_dir.to_str().unwrap(),
            batch_path.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let peer: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let peer_logits = Array::load_safetensors(&out)
        .unwrap()
        .remove("logits")
        .unwrap();

    let model = load_hf_folder(&model_dir, ComputeDtype::Auto).unwrap();
    let inputs = loss_inputs(&b).unwrap();
    let logits = model.forward(&inputs.inputs).unwrap();
    let diff = max_abs_diff(&logits, &peer_logits);
    assert!(
        diff < 1e-3,
        "{t:?}: logits differ from mlx-lm's by {diff} (max |logit| {})",
        max_abs(&peer_logits)
    );
    let params = model.lora_params();
    let pass = Pass {
        lora: &params,
        dropout_seed: None,
        grad_checkpoint: false,
    };
    let loss = batch_loss(&model, &pass, &inputs)
        .unwrap()
        .try_item_exact::<f32>()
        .unwrap() as f64;
    let peer_loss = peer["loss"].as_f64().unwrap();
    assert!(
        ((loss - peer_loss) / peer_loss).abs() < 1e-3,
        "{t:?}: loss {loss} vs mlx-lm {peer_loss}"
    );
    assert_eq!(
        inputs.tokens as u64,
        peer["ntoks"].as_u64().unwrap(),
        "{t:?}: token count"
    );
    // A random model over 256 tokens starts near ln(256) = 5.55.
    assert!(loss > 3.0 && loss < 9.0, "{t:?}: implausible loss {loss}");
}

#[test]
fn llama_matches_mlx_lm() {
    check_against_peer(Tiny::llama());
}

#[test]
fn llama_tied_embeddings_match_mlx_lm() {
    check_against_peer(Tiny {
        tied: true,
        ..Tiny::llama()
    });
}

#[test]
fn llama3_rope_scaling_and_traditional_rope_match_mlx_lm() {
    check_against_peer(Tiny {
        llama3_scaling: true,
        ..Tiny::llama()
    });
    check_against_peer(Tiny {
        rope_traditional: true,
        ..Tiny::llama()
    });
}

#[test]
fn quantized_llama_matches_mlx_lm() {
    check_against_peer(Tiny {
        quantize: true,
        tied: true,
        ..Tiny::llama()
    });
}

#[test]
fn qwen2_matches_mlx_lm() {
    check_against_peer(Tiny::family("qwen2"));
}

#[test]
fn qwen3_matches_mlx_lm() {
    check_against_peer(Tiny {
        tied: true,
        ..Tiny::family("qwen3")
    });
}

#[test]
fn phi3_matches_mlx_lm() {
    check_against_peer(Tiny::family("phi3"));
}
