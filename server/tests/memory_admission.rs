//! The supervisor's memory budget: a second run starts beside a first one
//! only when both memory estimates fit the budget together; otherwise it
//! waits, queued, until the first one ends (first in, first out). The
//! inference worker is weighed the same way, and gives way to a training.

mod common;

use common::*;
use serde_json::{json, Value};

/// A run queued whatever its estimate (`force`): these tests are about the
/// queue; a run refused at the door is `api_runs`'s.
async fn create(client: &reqwest::Client, server: &Server, name: &str, iters: u64) -> i64 {
    let body = tiny_run(json!({"iters": iters, "name": name, "save_every": 1000, "force": true}));
    create_run(client, server, body).await
}

/// A comparison of the base on one short prompt, followed to its end.
async fn compare(client: &reqwest::Client, server: &Server) -> Value {
    let (_, created) = post_json(
        client,
        &server.url("/api/compare"),
        json!({"model": "tiny", "columns": ["base"], "prompt": "Hi", "settings": {"max_tokens": 4}}),
    )
    .await;
    let url = server.url(&format!("/api/compare/{}", created["id"]));
    poll_json(client, &url, 60, "its end", |comparison| {
        comparison["status"] != "running" && comparison["status"] != "queued"
    })
    .await
}

async fn inference_running(client: &reqwest::Client, server: &Server) -> bool {
    get_json(client, &server.url("/api/compare/inference")).await["running"] == true
}

async fn status(client: &reqwest::Client, server: &Server, id: i64) -> String {
    let run = get_json(client, &server.url(&format!("/api/runs/{id}"))).await;
    run["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn two_runs_share_a_budget_that_holds_both() {
    let setup = tiny_setup();
    let server = setup.serve(&[
        ("LORALAB_MAX_CONCURRENT_RUNS", "2"),
        ("LORALAB_MEMORY_BUDGET_MB", "100000"),
    ]);
    let client = reqwest::Client::new();
    let first = create(&client, &server, "first", 100_000).await;
    let second = create(&client, &server, "second", 100_000).await;
    for id in [first, second] {
        wait_for(&client, &server, id, 300, "training", |r| {
            r["status"] == "running" && r["step"].as_i64().unwrap_or(0) >= 1
        })
        .await;
    }
    assert_eq!(status(&client, &server, first).await, "running");
    for id in [first, second] {
        stop_run(&client, &server, id).await;
    }
}

#[tokio::test]
async fn a_run_that_does_not_fit_waits_for_the_one_running() {
    let setup = tiny_setup();
    // A budget of 0 holds no estimate: the first run starts anyway (alone,
    // it was shown its own estimate), the second waits for it.
    let server = setup.serve(&[
        ("LORALAB_MAX_CONCURRENT_RUNS", "2"),
        ("LORALAB_MEMORY_BUDGET_MB", "0"),
    ]);
    let client = reqwest::Client::new();
    let first = create(&client, &server, "first", 100_000).await;
    let second = create(&client, &server, "second", 3).await;
    wait_for(&client, &server, first, 300, "training", |r| {
        r["step"].as_i64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(status(&client, &server, second).await, "queued");

    stop_run(&client, &server, first).await;
    let done = wait_for_status(&client, &server, second, 300, "done").await;
    assert_eq!(done["step"], 3);
}

#[tokio::test]
async fn the_inference_worker_runs_beside_a_training_only_within_the_budget() {
    for (budget, beside) in [("100000", true), ("0", false)] {
        let setup = tiny_setup();
        let server = setup.serve(&[
            ("LORALAB_MAX_CONCURRENT_RUNS", "2"),
            ("LORALAB_MEMORY_BUDGET_MB", budget),
        ]);
        let client = reqwest::Client::new();
        let run = create(&client, &server, "long", 100_000).await;
        wait_for_status(&client, &server, run, 300, "running").await;
        let comparison = compare(&client, &server).await;
        if beside {
            assert_eq!(comparison["status"], "done", "{comparison}");
        } else {
            assert_eq!(comparison["status"], "failed", "{comparison}");
            let failure = comparison["failure"].as_str().unwrap();
            assert!(failure.contains("LORALAB_MEMORY_BUDGET_MB"), "{failure}");
        }
        assert_eq!(status(&client, &server, run).await, "running");
        stop_run(&client, &server, run).await;
    }
}

#[tokio::test]
async fn a_queued_training_stops_an_inference_worker_it_does_not_fit_beside() {
    let setup = tiny_setup();
    let server = setup.serve(&[
        ("LORALAB_MAX_CONCURRENT_RUNS", "2"),
        ("LORALAB_MEMORY_BUDGET_MB", "0"),
        ("LORALAB_INFERENCE_IDLE_SECS", "600"),
    ]);
    let client = reqwest::Client::new();
    // Alone, the inference worker starts whatever the budget.
    assert_eq!(compare(&client, &server).await["status"], "done");
    assert!(inference_running(&client, &server).await);
    let run = create(&client, &server, "short", 3).await;
    let done = wait_for_status(&client, &server, run, 300, "done").await;
    assert_eq!(done["step"], 3);
    assert!(!inference_running(&client, &server).await);
}
