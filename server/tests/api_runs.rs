//! The JSON API with real workers: a run trains to the end on a tiny model,
//! its events stream over SSE (history, live, Last-Event-ID), its metrics
//! and adapters are kept; bad requests get 4xx answers naming the field.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_run_trains_to_done_with_events_metrics_and_adapters() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();

    let datasets = get_json(&client, &server.url("/api/datasets")).await;
    assert_eq!(datasets[0]["name"], "sample-ahoy", "{datasets}");
    assert_eq!(datasets[0]["train_count"], 300);
    assert_eq!(datasets[0]["valid_count"], 40);
    let models = get_json(&client, &server.url("/api/models")).await;
    let names = names(&models);
    assert!(names.contains(&"tiny"), "{models}");

    let created = client
        .post(server.url("/api/runs"))
        .json(&tiny_run(json!({"iters": 10, "name": "ahoy"})))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "ahoy");
    assert_eq!(created["config"]["iters"], 10);

    let stream = client
        .get(server.url(&format!("/api/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let events = read_sse(stream, |(_, kind, _)| kind == "done").await;
    let ids: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "{events:?}"
    );
    assert_eq!(events[0].1, "started");
    let reports: Vec<Value> = events
        .iter()
        .filter(|e| e.1 == "report")
        .map(|e| serde_json::from_str(&e.2).unwrap())
        .collect();
    let steps: Vec<u64> = reports
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=10).collect::<Vec<_>>());
    let first_loss = reports[0]["train_loss"].as_f64().unwrap();
    assert!(
        (first_loss - (258f64).ln()).abs() < 1.0,
        "a random model's loss is near ln(vocab): {first_loss}"
    );

    let run = wait_for_status(&client, &server, id, 300, "done").await;
    assert_eq!(run["step"], 10);
    assert_eq!(run["total_steps"], 10);
    assert!(run["started_at"].is_string() && run["finished_at"].is_string());
    let checkpoints: Vec<i64> = run["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_i64().unwrap())
        .collect();
    assert_eq!(checkpoints, vec![5, 10]);
    assert!(run["checkpoints"][0]["val_loss"].as_f64().unwrap() > 0.0);
    assert!(
        run["log_tail"].as_str().unwrap().contains("Loading model"),
        "{run}"
    );

    let run_dir = setup.data_dir.join(format!("runs/{id}"));
    for file in [
        "adapters.safetensors",
        "adapter_config.json",
        "0000005_adapters.safetensors",
        "trainer_state.json",
    ] {
        assert!(run_dir.join(file).is_file(), "missing {file}");
    }

    let metrics = get_json(
        &client,
        &server.url(&format!("/api/runs/{id}/metrics.json")),
    )
    .await;
    assert_eq!(metrics["reports"].as_array().unwrap().len(), 10);
    let eval_steps: Vec<u64> = metrics["evals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    // Each after its step's update, so checkpoints 5 and 10 carry their own.
    assert_eq!(eval_steps, vec![0, 5, 10]);
    let csv = client
        .get(server.url(&format!("/api/runs/{id}/metrics.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "step,epoch,train_loss,learning_rate,it_per_sec,tokens_per_sec,trained_tokens,peak_memory_gb,val_loss,\
         cpu_temp_c,gpu_temp_c,cpu_util_percent,gpu_util_percent,gpu_power_w,memory_used_bytes,\
         swap_used_bytes,memory_pressure_some_percent,worker_rss_bytes"
    );
    assert_eq!(lines.len(), 1 + 11, "steps 0..=10: {csv}");
    assert!(lines[1].starts_with("0,,,,,,,,"), "{}", lines[1]);

    // Reconnecting after event 3 gives exactly the events after it.
    let again = client
        .get(server.url(&format!("/api/runs/{id}/events")))
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    let rest = read_sse(again, |(_, kind, _)| kind == "done").await;
    assert_eq!(rest[0].0, 4);
    assert_eq!(rest.len(), events.len() - 3);
    assert_eq!(rest.last().unwrap().0, *ids.last().unwrap());

    let list = get_json(&client, &server.url("/api/runs")).await;
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["status"], "done");
    assert_eq!(list[0]["model"], "tiny");
}

async fn post_run(server: &Server, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url("/api/runs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let cases = [
        (
            json!({"dataset": "sample-ahoy"}),
            "model",
            "model: required",
        ),
        (
            json!({"model": "nope", "dataset": "sample-ahoy"}),
            "model",
            "model: no model named \"nope\"",
        ),
        (
            json!({"model": "tiny", "dataset": "nope"}),
            "dataset",
            "dataset: no dataset named \"nope\"",
        ),
        (
            tiny_run(json!({"lora_layerz": 4})),
            "lora_layerz",
            "lora_layerz: unknown field",
        ),
        (
            tiny_run(json!({"iters": "ten"})),
            "iters",
            "iters: invalid type: string \"ten\"",
        ),
        (
            tiny_run(json!({"batch_size": 0})),
            "batch_size",
            "batch_size: must be at least 1",
        ),
        (
            tiny_run(json!({"learning_rate": -1.0})),
            "learning_rate",
            "learning_rate: must be a positive number",
        ),
        (
            tiny_run(json!({"lora_parameters": {"rank": 4, "rnak": 2}})),
            "lora_parameters",
            "lora_parameters: unknown field `rnak`",
        ),
        (
            tiny_run(json!({"data": "/tmp"})),
            "data",
            "data: is set by Loralab",
        ),
        (
            tiny_run(json!({"num_layers": -5})),
            "num_layers",
            "num_layers: must be -1 (all) or positive, got -5",
        ),
        (
            tiny_run(json!({"num_layers": 99})),
            "num_layers",
            "num_layers: is 99 but the model only has",
        ),
        (
            tiny_run(json!({"lora_parameters": {"rank": 4, "dropout": 1.5}})),
            "lora_parameters.dropout",
            "lora_parameters.dropout: must be at least 0 and below 1",
        ),
        (
            tiny_run(json!({"lr_schedule": {"name": "warp", "arguments": [1e-3]}})),
            "lr_schedule",
            "lr_schedule: is not usable: lr_schedule name `warp` is not supported",
        ),
        (
            tiny_run(json!({"force": "yes"})),
            "force",
            "force: must be true or false",
        ),
    ];
    for (body, field, message) in cases {
        let (status, answer) = post_run(&server, body.clone()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(answer["field"], field, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with(message),
            "{error:?} should start with {message:?}"
        );
    }
    let client = reqwest::Client::new();
    let missing = client.get(server.url("/api/runs/99")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "run 99 does not exist");
    let stop = client
        .post(server.url("/api/runs/99/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 404);
    let list = get_json(&client, &server.url("/api/runs")).await;
    assert_eq!(list, json!([]), "no invalid request may queue a run");
}

#[tokio::test]
async fn a_run_over_the_memory_budget_is_refused_unless_forced() {
    let setup = tiny_setup();
    // 1 MB: less than any run needs, so the estimate is over it.
    let server = setup.serve(&[("LORALAB_MEMORY_BUDGET_MB", "1")]);
    let (status, answer) = post_run(&server, tiny_run(json!({"iters": 2}))).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "memory");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("memory: this run needs about ")
            && error.contains("but 1.0 MiB is available"),
        "{error}"
    );
    assert!(error.contains("force: true"), "{error}");
    let client = reqwest::Client::new();
    assert_eq!(get_json(&client, &server.url("/api/runs")).await, json!([]));
    // Forced, it is queued and trains (alone).
    let id = create_run(
        &client,
        &server,
        tiny_run(json!({"iters": 2, "force": true})),
    )
    .await;
    let run = wait_for_status(&client, &server, id, 300, "done").await;
    assert_eq!(run["step"], 2, "{run}");
    assert!(
        run["config"]["iters"] == 2 && run["config"].get("force").is_none(),
        "{run}"
    );
}
