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
