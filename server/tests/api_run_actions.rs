//! What a user does with a run once it trained: download its adapter (best
//! or a chosen checkpoint) as an mlx-lm folder in a zip, clone its settings
//! into the new-run form, and delete it (refused while it runs).

mod common;

use std::io::{Cursor, Read};

use common::*;
use serde_json::{json, Value};

/// The files of a zip, by name.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            (file.name().expect("a UTF-8 name").to_string(), content)
        })
        .collect()
}

#[tokio::test]
async fn download_clone_and_delete_a_finished_run() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let created: Value = client
        .post(server.url("/api/runs"))
        // DoRA, recomputing activations (grad_checkpoint): both train.
        .json(&tiny_run(json!({
            "iters": 10,
            "name": "keeper",
            "fine_tune_type": "dora",
            "grad_checkpoint": true
        })))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();

    // A running run cannot be deleted.
    let early = client
        .delete(server.url(&format!("/api/runs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 409);
    let early: Value = early.json().await.unwrap();
    assert!(
        early["error"]
            .as_str()
            .unwrap()
            .contains("stop it before deleting it"),
        "{early}"
    );

    let run = wait_for_status(&client, &server, id, 300, "done").await;
    let checkpoints = run["checkpoints"].as_array().unwrap();
    let best = checkpoints
        .iter()
        .min_by(|a, b| {
            a["val_loss"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["val_loss"].as_f64().unwrap())
        })
        .unwrap();
    let best_step = best["step"].as_i64().unwrap();
    let run_dir = setup.data_dir.join(format!("runs/{id}"));

    // Without a step: the best checkpoint, in mlx-lm's folder layout.
    let response = client
        .get(server.url(&format!("/api/runs/{id}/adapter.zip")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.contains(&format!("loralab-run-{id}-step-{best_step}.zip")),
        "{disposition}"
    );
    let files = unzip(&response.bytes().await.unwrap());
    let folder = format!("run-{id}-step-{best_step}");
    assert_eq!(
        files
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        [
            format!("{folder}/adapters.safetensors"),
            format!("{folder}/adapter_config.json")
        ]
    );
    let numbered =
        std::fs::read(run_dir.join(format!("{best_step:07}_adapters.safetensors"))).unwrap();
    assert_eq!(
        files[0].1, numbered,
        "the best checkpoint's weights, byte for byte"
    );
    assert_eq!(
        files[1].1,
        std::fs::read(run_dir.join("adapter_config.json")).unwrap()
    );
    let config: Value = serde_json::from_slice(&files[1].1).unwrap();
    assert_eq!(config["fine_tune_type"], "dora", "{config}");
    let magnitudes = String::from_utf8_lossy(&files[0].1);
    assert!(
        magnitudes.contains("model.layers.0.mlp.down_proj.m"),
        "DoRA's magnitudes are in the adapter file"
    );

    // A chosen step, and one that does not exist.
    let first = client
        .get(server.url(&format!("/api/runs/{id}/adapter.zip?step=5")))
        .send()
        .await
        .unwrap();
    let files = unzip(&first.bytes().await.unwrap());
    assert_eq!(files[0].0, format!("run-{id}-step-5/adapters.safetensors"));
    assert_eq!(
        files[0].1,
        std::fs::read(run_dir.join("0000005_adapters.safetensors")).unwrap()
    );
    let missing = get_status(
        &client,
        &server.url(&format!("/api/runs/{id}/adapter.zip?step=7")),
    )
    .await;
    assert_eq!(missing, 404);

    // Clone: the new-run form comes back filled with this run's settings.
    let form = client
        .get(server.url(&format!("/runs/new?clone={id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("value=\"keeper (copy)\""), "{form}");
    assert!(form.contains("name=\"form[iters]\""));
    assert!(form.contains("value=\"10\""), "iters 10 is filled in");
    assert!(form.contains("<option value=\"tiny\" selected>"), "{form}");
    assert!(
        form.contains("<option value=\"dora\" selected>"),
        "the fine-tune type is DoRA"
    );
    let recompute = form
        .split("name=\"form[grad_checkpoint]\"")
        .nth(1)
        .expect("the gradient checkpointing field");
    assert!(
        recompute.starts_with(">") && recompute.contains("<option value=\"true\" selected>"),
        "{recompute}"
    );

    let deleted = client
        .delete(server.url(&format!("/api/runs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(!run_dir.exists(), "its folder is removed");
    let gone = get_status(&client, &server.url(&format!("/api/runs/{id}"))).await;
    assert_eq!(gone, 404);
    let metrics = get_status(
        &client,
        &server.url(&format!("/api/runs/{id}/metrics.json")),
    )
    .await;
    assert_eq!(metrics, 404);
}

#[tokio::test]
async fn a_run_is_estimated_before_it_starts() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let estimate = |body: Value| {
        client
            .post(server.url("/api/runs/estimate"))
            .json(&body)
            .send()
    };
    let small: Value = estimate(tiny_run(json!({"batch_size": 2})))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: u64 = ["weights", "adapters", "activations"]
        .iter()
        .map(|key| small[key].as_u64().unwrap())
        .sum();
    assert_eq!(small["total"].as_u64().unwrap(), parts, "{small}");
    assert!(small["available"].as_u64().unwrap() > 0);
    assert_eq!(small["fits"], true);
    assert!(
        small["compute"]
            .as_str()
            .unwrap()
            .starts_with("f32 on the CPU"),
        "{small}"
    );

    let large: Value = estimate(tiny_run(json!({"batch_size": 8})))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(large["weights"], small["weights"]);
    assert!(large["activations"].as_u64().unwrap() > 3 * small["activations"].as_u64().unwrap());
    let recomputed: Value = estimate(tiny_run(json!({"batch_size": 8, "grad_checkpoint": true})))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recomputed["weights"], large["weights"]);
    assert!(
        recomputed["activations"].as_u64().unwrap() < large["activations"].as_u64().unwrap(),
        "grad_checkpoint keeps less: {recomputed} vs {large}"
    );

    let huge: Value = estimate(tiny_run(json!({"batch_size": 100000})))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(huge["fits"], false, "{huge}");

    let bad = estimate(tiny_run(json!({"batch_size": "many"})))
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.json::<Value>().await.unwrap()["field"], "batch_size");
    let runs = get_json(&client, &server.url("/api/runs")).await;
    assert_eq!(
        runs.as_array().unwrap().len(),
        0,
        "an estimate starts nothing"
    );
}
