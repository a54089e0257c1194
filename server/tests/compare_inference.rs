//! Comparisons through the real inference worker, on the tiny model with
//! adapters trained here for a few steps: outputs stream and are saved,
//! swapping adapters never reloads the base (the worker's load counts),
//! blind votes give win rates, the worker yields its slot to a queued
//! training and stops when idle.

mod common;

use common::*;
use serde_json::{json, Value};

async fn train(client: &reqwest::Client, server: &Server, name: &str, lr: f64) -> i64 {
    let id = create_run(
        client,
        server,
        tiny_run(json!({"name": name, "iters": 30, "learning_rate": lr, "steps_per_eval": 30, "save_every": 30})),
    )
    .await;
    wait_for_status(client, server, id, 120, "done").await;
    id
}

/// Follows a comparison's SSE stream to its end; returns its events.
async fn follow(client: &reqwest::Client, server: &Server, id: i64) -> Vec<(String, Value)> {
    follow_comparison(client, server, id, |(_, kind, _)| kind == "done")
        .await
        .into_iter()
        .map(|(_, kind, data)| (kind, serde_json::from_str(&data).unwrap()))
        .collect()
}

async fn stats(client: &reqwest::Client, server: &Server) -> Value {
    get_json(client, &server.url("/api/compare/inference")).await
}

fn texts(comparison: &Value) -> Vec<Vec<String>> {
    comparison["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    assert_eq!(o["status"], "done", "{o}");
                    o["text"].as_str().unwrap().to_string()
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn adapters_swap_without_reloading_the_base_and_votes_give_win_rates() {
    let setup = tiny_setup();
    let server = setup.serve(&[("LORALAB_INFERENCE_IDLE_SECS", "600")]);
    let client = reqwest::Client::new();
    let first = train(&client, &server, "gentle", 1e-3).await;
    let second = train(&client, &server, "strong", 3e-2).await;

    let columns = json!(["base", format!("run:{first}"), format!("run:{second}")]);
    let (status, created) = post_json(
        &client,
        &server.url("/api/compare"),
        json!({"model": "tiny", "columns": columns, "prompt": "Hello there", "settings": {"max_tokens": 12}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let typed = created["id"].as_i64().unwrap();
    assert_eq!(created["columns"].as_array().unwrap().len(), 3);
    assert_eq!(
        created["columns"][1]["label"],
        format!("gentle (run {first})")
    );
    // The run's own metrics give the column's losses.
    let val = created["columns"][1]["val_loss"].as_f64().unwrap();
    let ppl = created["columns"][1]["val_perplexity"].as_f64().unwrap();
    assert!((ppl - val.exp()).abs() < 1e-9, "{created}");
    assert!(created["columns"][0]["val_loss"].is_null());

    let events = follow(&client, &server, typed).await;
    let (last_kind, last) = events.last().unwrap();
    assert_eq!(last_kind, "done");
    assert_eq!(last["status"], "done");
    // Every output's streamed pieces add up to its stored text.
    let comparison = get_json(&client, &server.url(&format!("/api/compare/{typed}"))).await;
    for output in comparison["prompts"][0]["outputs"].as_array().unwrap() {
        let id = output["id"].as_i64().unwrap();
        let started_live = events
            .iter()
            .any(|(k, e)| k == "output" && e["output"] == id && e["status"] == "running");
        if started_live {
            let streamed: String = events
                .iter()
                .filter(|(k, e)| k == "text" && e["output"] == id)
                .map(|(_, e)| e["text"].as_str().unwrap())
                .collect();
            assert_eq!(streamed, output["text"].as_str().unwrap(), "{output}");
        }
        assert!(
            output["generated_tokens"].as_u64().unwrap() >= 1,
            "{output}"
        );
        assert!(output["tokens_per_sec"].as_f64().is_some(), "{output}");
    }
    let typed_texts = texts(&comparison);
    assert_ne!(
        typed_texts[0][0], typed_texts[0][2],
        "the strong adapter changed nothing"
    );

    let (status, created) = post_json(
        &client,
        &server.url("/api/compare"),
        json!({"model": "tiny", "columns": columns, "dataset": "sample-ahoy", "split": "valid", "count": 3, "settings": {"max_tokens": 8}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let drawn = created["id"].as_i64().unwrap();
    let prompts = created["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 3);
    assert_eq!(prompts[0]["origin"], "valid.jsonl:1");
    assert!(prompts[0]["reference"].as_str().unwrap().len() > 3);
    follow(&client, &server, drawn).await;
    let comparison = get_json(&client, &server.url(&format!("/api/compare/{drawn}"))).await;
    assert_eq!(comparison["status"], "done");
    assert_eq!(texts(&comparison).len(), 3);

    // One worker, one base load for 12 generations; each comparison read
    // each adapter once (columns run one after another).
    let figures = stats(&client, &server).await;
    assert_eq!(figures["workers_started"], 1, "{figures}");
    assert_eq!(figures["base_loads"], 1, "{figures}");
    assert_eq!(figures["adapter_loads"], 4, "{figures}");
    assert_eq!(figures["generations"], 12, "{figures}");
    assert_eq!(figures["running"], true, "{figures}");

    // The same settings give the same outputs again (greedy, seeded).
    let (_, again) = post_json(
        &client,
        &server.url("/api/compare"),
        json!({"model": "tiny", "columns": columns, "prompt": "Hello there", "settings": {"max_tokens": 12}}),
    )
    .await;
    let again_id = again["id"].as_i64().unwrap();
    follow(&client, &server, again_id).await;
    let again = get_json(&client, &server.url(&format!("/api/compare/{again_id}"))).await;
    assert_eq!(texts(&again), typed_texts);

    // Blind votes: a ballot hides the columns; votes give win rates.
    let ballot = get_json(
        &client,
        &server.url(&format!("/api/compare/{drawn}/ballot?prompt=1")),
    )
    .await;
    let options = ballot["options"].as_array().unwrap();
    assert_eq!(options.len(), 3);
    assert!(!ballot.to_string().contains("gentle"), "{ballot}");
    let strong_output = comparison["prompts"][1]["outputs"][2]["id"]
        .as_i64()
        .unwrap();
    let (status, voted) = post_json(
        &client,
        &server.url(&format!("/api/compare/{drawn}/votes")),
        json!({"prompt": 1, "output": strong_output}),
    )
    .await;
    assert_eq!(status, 201, "{voted}");
    let base_output = comparison["prompts"][2]["outputs"][0]["id"]
        .as_i64()
        .unwrap();
    let (_, voted) = post_json(
        &client,
        &server.url(&format!("/api/compare/{drawn}/votes")),
        json!({"prompt": 2, "output": base_output}),
    )
    .await;
    assert_eq!(voted["votes"], 2);
    let rates: Vec<Value> = voted["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["win_rate"].clone())
        .collect();
    assert_eq!(rates, vec![json!(0.5), json!(0.0), json!(0.5)]);
    // An output of another prompt is not a valid vote.
    let (status, error) = post_json(
        &client,
        &server.url(&format!("/api/compare/{drawn}/votes")),
        json!({"prompt": 0, "output": base_output}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error["field"], "output");

    // A queued training takes the idle worker's slot at once.
    let run_id = create_run(&client, &server, tiny_run(json!({"iters": 3}))).await;
    wait_for_status(&client, &server, run_id, 300, "done").await;
    assert_eq!(stats(&client, &server).await["running"], false);
}

#[tokio::test]
async fn bad_requests_name_the_field_and_a_training_keeps_its_slot() {
    let setup = tiny_setup();
    let server = setup.serve(&[
        ("LORALAB_INFERENCE_IDLE_SECS", "1"),
        ("LORALAB_STOP_GRACE_SECS", "20"),
    ]);
    let client = reqwest::Client::new();
    let url = server.url("/api/compare");
    for (body, field, needle) in [
        (
            json!({"model": "nope", "columns": ["base"], "prompt": "x"}),
            "model",
            "no model named",
        ),
        (
            json!({"model": "tiny", "columns": [], "prompt": "x"}),
            "columns",
            "at least one",
        ),
        (
            json!({"model": "tiny", "columns": ["run:42"], "prompt": "x"}),
            "columns[0]",
            "run 42 does not exist",
        ),
        (
            json!({"model": "tiny", "columns": ["base", "base"], "prompt": "x"}),
            "columns[1]",
            "already a column",
        ),
        (
            json!({"model": "tiny", "columns": ["lora"], "prompt": "x"}),
            "columns[0]",
            "is not `base`",
        ),
        (
            json!({"model": "tiny", "columns": ["base"]}),
            "prompt",
            "required",
        ),
        (
            json!({"model": "tiny", "columns": ["base"], "prompt": "x", "settings": {"max_tokens": 0}}),
            "max_tokens",
            "between 1",
        ),
        (
            json!({"model": "tiny", "columns": ["base"], "prompt": "x", "settings": {"top_p": 2.0}}),
            "top_p",
            "(0, 1]",
        ),
        (
            json!({"model": "tiny", "columns": ["base"], "dataset": "sample-ahoy", "split": "train"}),
            "split",
            "not `valid` or `test`",
        ),
        (
            json!({"model": "tiny", "columns": ["base"], "prompt": "x", "colour": 1}),
            "colour",
            "unknown field",
        ),
    ] {
        let (status, error) = post_json(&client, &url, body.clone()).await;
        assert_eq!(status, 422, "{body} -> {error}");
        assert_eq!(error["field"], field, "{body} -> {error}");
        assert!(
            error["error"].as_str().unwrap().contains(needle),
            "{body} -> {error}"
        );
    }

    // Importing: a folder without adapter files is refused, naming the file.
    let empty = setup.temp.path().join("not-an-adapter");
    std::fs::create_dir_all(&empty).unwrap();
    let (status, error) = post_json(
        &client,
        &server.url("/api/compare/adapters"),
        json!({"name": "x", "path": empty.display().to_string()}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("adapters.safetensors"),
        "{error}"
    );

    // While a training holds the only slot, a comparison fails and says why.
    let run_id = create_run(
        &client,
        &server,
        tiny_run(json!({"iters": 1500, "save_every": 1000})),
    )
    .await;
    wait_for_status(&client, &server, run_id, 300, "running").await;
    let (status, created) = post_json(
        &client,
        &url,
        json!({"model": "tiny", "columns": ["base"], "prompt": "Hi", "settings": {"max_tokens": 4}}),
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_i64().unwrap();
    follow(&client, &server, id).await;
    let failed = get_json(&client, &server.url(&format!("/api/compare/{id}"))).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["failure"].as_str().unwrap().contains("worker slot"),
        "{failed}"
    );
    stop_run(&client, &server, run_id).await;

    // Now it runs; then the worker stops after a second idle.
    let (_, created) = post_json(
        &client,
        &url,
        json!({"model": "tiny", "columns": ["base"], "prompt": "Hi", "settings": {"max_tokens": 4}}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    follow(&client, &server, id).await;
    let done = get_json(&client, &server.url(&format!("/api/compare/{id}"))).await;
    assert_eq!(done["status"], "done", "{done}");
    let figures = poll_json(
        &client,
        &server.url("/api/compare/inference"),
        15,
        "the idle worker stopped",
        |figures| figures["running"] == false,
    )
    .await;
    assert_eq!(figures["workers_started"], 1, "{figures}");
}

/// A dataset uploaded as one file has valid and test held out of it, as
/// training holds them out: a comparison draws its prompts from them.
#[tokio::test]
async fn a_one_file_dataset_offers_its_held_out_splits_as_prompts() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let lines: String = (0..40)
        .map(|i| {
            format!(
                "{{\"messages\": [{{\"role\": \"user\", \"content\": \"question {i}\"}}, {{\"role\": \"assistant\", \"content\": \"answer {i}\"}}]}}\n"
            )
        })
        .collect();
    let form = reqwest::multipart::Form::new()
        .text("name", "one-file")
        .part(
            "file",
            reqwest::multipart::Part::bytes(lines.into_bytes()).file_name("chats.jsonl"),
        );
    let uploaded = client
        .post(server.url("/api/datasets"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let uploaded: Value = uploaded.json().await.unwrap();
    let held_out = uploaded["dataset"]["test_count"].as_u64().unwrap();
    assert!(held_out >= 2, "{uploaded}");
    let (status, comparison) = post_json(
        &client,
        &server.url("/api/compare"),
        json!({"model": "tiny", "columns": ["base"], "dataset": "one-file", "split": "test", "count": 2, "settings": {"max_tokens": 2}}),
    )
    .await;
    assert_eq!(status, 201, "{comparison}");
    let prompts = comparison["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 2);
    for prompt in prompts {
        // From the held-out examples: their answers are the references.
        let display = prompt["display"].as_str().unwrap();
        let number = display.strip_prefix("question ").unwrap();
        assert_eq!(prompt["reference"], format!("answer {number}"));
        assert!(
            prompt["origin"]
                .as_str()
                .unwrap()
                .starts_with("train.jsonl:"),
            "{prompt}"
        );
    }
}
