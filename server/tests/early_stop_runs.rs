//! Early stopping and `keep_checkpoints` through the API with a real
//! worker: the run ends `done` with its reason (API and page), its adapter
//! is the best checkpoint, and the checkpoints listed are the files on disk.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::json;

#[tokio::test]
async fn an_early_stopped_run_lists_exactly_the_checkpoints_on_disk() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    // No evaluation improves on the first by 100: the third (step 10)
    // is the second in a row without improvement.
    let id = create_run(
        &client,
        &server,
        tiny_run(json!({
            "iters": 60,
            "early_stopping": {"patience": 2, "min_delta": 100.0},
            "keep_checkpoints": 1,
        })),
    )
    .await;
    let run = wait_for_status(&client, &server, id, 300, "done").await;
    let reason = "stopped early at step 10: no improvement in 2 evaluations";
    assert_eq!(run["finish_reason"], reason, "{run}");
    assert_eq!(run["step"], 10);
    assert_eq!(run["config"]["keep_checkpoints"], 1);
    assert_eq!(run["config"]["early_stopping"]["patience"], 2);

    // Saved at 0 (the first evaluation is the best so far), 5 and 10;
    // keep 1: the lowest validation loss and the latest.
    let checkpoints = run["checkpoints"].as_array().unwrap();
    let listed: BTreeSet<String> = checkpoints
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect();
    let run_dir = Path::new(checkpoints[0]["path"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_str().unwrap().ends_with("_adapters.safetensors"))
        .map(|path| path.display().to_string())
        .collect();
    assert_eq!(listed, on_disk);
    let steps: Vec<i64> = checkpoints
        .iter()
        .map(|c| c["step"].as_i64().unwrap())
        .collect();
    assert!(
        steps.contains(&10) && (1..=2).contains(&steps.len()),
        "{steps:?}"
    );
    let best = checkpoints
        .iter()
        .min_by(|a, b| {
            let loss = |c: &serde_json::Value| c["val_loss"].as_f64().unwrap();
            loss(a).total_cmp(&loss(b))
        })
        .unwrap();
    assert_eq!(
        std::fs::read(run_dir.join("adapters.safetensors")).unwrap(),
        std::fs::read(best["path"].as_str().unwrap()).unwrap(),
        "the adapter is the best checkpoint ({best})"
    );
    // What keep_checkpoints removed is in the run's events.
    let events = client
        .get(server.url(&format!("/api/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    let events = read_sse(events, |(_, kind, _)| kind == "done").await;
    let removed = events
        .iter()
        .filter(|e| e.1 == "checkpoint_removed")
        .count();
    assert_eq!(removed + steps.len(), 3, "{events:?}");

    let html = page(&client, &server.url(&format!("/runs/{id}"))).await;
    assert!(html.contains(reason), "the run page shows the reason");
}

#[tokio::test]
async fn bad_early_stopping_and_keep_checkpoints_are_refused_naming_the_field() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    for (extra, field) in [
        (
            json!({"early_stopping": {"patience": 0}}),
            "early_stopping.patience",
        ),
        (
            json!({"early_stopping": {"patience": 2, "min_delta": -0.5}}),
            "early_stopping.min_delta",
        ),
        (
            json!({"early_stopping": {"patience": 2, "delta": 1}}),
            "early_stopping",
        ),
        (json!({"keep_checkpoints": 0}), "keep_checkpoints"),
        (json!({"keep_checkpoints": -1}), "keep_checkpoints"),
    ] {
        let response = client
            .post(server.url("/api/runs"))
            .json(&tiny_run(extra.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{extra}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["field"], field, "{extra}: {body}");
    }
}

/// `loralab train` reads both keys from a YAML config and says what it
/// removed and why it stopped, in mlx-lm's console style.
#[test]
fn train_cli_stops_early_and_keeps_checkpoints_from_yaml() {
    let setup = tiny_setup();
    let dir = setup.temp.path();
    engine::data::sample::write_sample_dataset(&dir.join("data")).unwrap();
    let model = setup.model_dir.display().to_string();
    std::fs::write(
        dir.join("lora.yaml"),
        format!(
            "model: {model}\ndata: data\nnum_layers: -1\nbatch_size: 4\niters: 60\nval_batches: 1\n\
             learning_rate: 1.0e-3\nsteps_per_report: 5\nsteps_per_eval: 5\nsave_every: 5\n\
             max_seq_length: 128\nadapter_path: out\nlora_parameters:\n  rank: 4\n\
             early_stopping:\n  patience: 2\n  min_delta: 100.0\nkeep_checkpoints: 1\n"
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["train", "--config", "lora.yaml"])
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "Training stopped early at step 10: no improvement in 2 evaluations; the best checkpoint is the adapter"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("(keep_checkpoints)."), "{stdout}");
    assert!(!stdout.contains("Iter 15:"), "{stdout}");
    let numbered = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_str().unwrap().ends_with("_adapters.safetensors")
        })
        .count();
    assert!(
        (1..=2).contains(&numbered),
        "{numbered} numbered checkpoints"
    );
}
