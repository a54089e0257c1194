//! The supervisor's memory budget: a second run starts beside a first one
//! only when both memory estimates fit the budget together; otherwise it
//! waits, queued, until the first one ends (first in, first out).

mod common;

use common::*;
use serde_json::{json, Value};

async fn create(client: &reqwest::Client, server: &Server, name: &str, iters: u64) -> i64 {
    let created: Value = client
        .post(server.url("/api/runs"))
        .json(&tiny_run(
            json!({"iters": iters, "name": name, "save_every": 1000}),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_i64().expect("a run id")
}

async fn status(client: &reqwest::Client, server: &Server, id: i64) -> String {
    let run = get_json(client, &server.url(&format!("/api/runs/{id}"))).await;
    run["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn two_runs_share_a_budget_that_holds_both() {
    let setup = tiny_setup();
    let server = Server::start_with_env(
        setup.data_dir.clone(),
        &[],
        &[
            ("LORALAB_MAX_CONCURRENT_RUNS", "2"),
            ("LORALAB_MEMORY_BUDGET_MB", "100000"),
        ],
    );
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
        client
            .post(server.url(&format!("/api/runs/{id}/stop")))
            .send()
            .await
            .unwrap();
    }
    for id in [first, second] {
        wait_for(&client, &server, id, 300, "stopped", |r| {
            r["status"] == "stopped"
        })
        .await;
    }
}

#[tokio::test]
async fn a_run_that_does_not_fit_waits_for_the_one_running() {
    let setup = tiny_setup();
    // A budget of 0 holds no estimate: the first run starts anyway (alone,
    // it was shown its own estimate), the second waits for it.
    let server = Server::start_with_env(
        setup.data_dir.clone(),
        &[],
        &[
            ("LORALAB_MAX_CONCURRENT_RUNS", "2"),
            ("LORALAB_MEMORY_BUDGET_MB", "0"),
        ],
    );
    let client = reqwest::Client::new();
    let first = create(&client, &server, "first", 100_000).await;
    let second = create(&client, &server, "second", 3).await;
    wait_for(&client, &server, first, 300, "training", |r| {
        r["step"].as_i64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(status(&client, &server, second).await, "queued");

    client
        .post(server.url(&format!("/api/runs/{first}/stop")))
        .send()
        .await
        .unwrap();
    wait_for(&client, &server, first, 300, "stopped", |r| {
        r["status"] == "stopped"
    })
    .await;
    let done = wait_for(&client, &server, second, 300, "done", |r| {
        r["status"] == "done"
    })
    .await;
    assert_eq!(done["step"], 3);
}
