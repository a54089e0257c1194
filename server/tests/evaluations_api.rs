//! Evaluations through the server and its real inference worker, on the
//! tiny model and the sample dataset: a run's checkpoint evaluated on its
//! valid split gives the validation loss the run reported, results are
//! stored and reused, the run page's form and the compare page's loss row
//! work without JavaScript, and Stop cancels a comparison and a chat reply
//! mid-generation.

mod common;

use common::*;
use serde_json::{json, Value};

/// The validation loss the run reported at `step`.
async fn reported_val_loss(client: &reqwest::Client, server: &Server, id: i64, step: u64) -> f64 {
    let metrics = get_json(client, &server.url(&format!("/api/runs/{id}/metrics.json"))).await;
    metrics["evals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == step)
        .unwrap_or_else(|| panic!("no eval at step {step}: {metrics}"))["val_loss"]
        .as_f64()
        .unwrap()
}

#[tokio::test]
async fn a_checkpoint_evaluates_to_the_loss_its_run_reported() {
    let setup = tiny_setup();
    let server = setup.serve(&[("LORALAB_INFERENCE_IDLE_SECS", "600")]);
    let client = reqwest::Client::new();
    // Evaluations after the updates of steps 4 and 8 (and at 0), which is
    // where the checkpoints are saved: the loss the run reported at step 4
    // is the loss of the weights saved there.
    let id = create_run(
        &client,
        &server,
        tiny_run(json!({"name": "evaluated", "iters": 8, "steps_per_eval": 4, "save_every": 4, "val_batches": -1, "test": true})),
    )
    .await;
    wait_for_status(&client, &server, id, 300, "done").await;
    let reported = reported_val_loss(&client, &server, id, 4).await;

    let url = server.url(&format!("/api/runs/{id}/evaluate"));
    let (status, evaluation) = post_json(&client, &url, json!({"split": "valid", "step": 4})).await;
    assert_eq!(status, 200, "{evaluation}");
    let loss = evaluation["loss"].as_f64().unwrap();
    assert!(
        (loss - reported).abs() / reported < 1e-4,
        "evaluated {loss}, the run reported {reported}"
    );
    assert_eq!(evaluation["source"], "run");
    assert_eq!(evaluation["run_id"], id);
    assert_eq!(evaluation["step"], 4);
    assert_eq!(evaluation["split"], "valid");
    assert_eq!(evaluation["dataset"], "sample-ahoy");
    assert_eq!(evaluation["model"], "tiny");
    assert_eq!(evaluation["label"], format!("evaluated (run {id}), step 4"));
    // 40 valid examples, 4 a batch, all of them (val_batches -1).
    assert_eq!(evaluation["batches"], 10);
    assert!(evaluation["tokens"].as_u64().unwrap() > 100, "{evaluation}");
    let perplexity = evaluation["perplexity"].as_f64().unwrap();
    assert!((perplexity - loss.exp()).abs() < 1e-9 * perplexity);
    assert_eq!(evaluation["reused"], false);

    // The same question again is answered from the store.
    let (status, again) = post_json(&client, &url, json!({"split": "valid", "step": 4})).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], evaluation["id"]);
    assert_eq!(again["reused"], true);
    let inference = get_json(&client, &server.url("/api/compare/inference")).await;
    assert_eq!(inference["evaluations"], 1, "{inference}");

    // No body: the test split and the best checkpoint. The run's own test
    // loss was computed on its last weights (step 8) with all test batches.
    let response = client.post(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let on_test: Value = response.json().await.unwrap();
    assert_eq!(on_test["split"], "test");
    let checkpoints = get_json(&client, &server.url(&format!("/api/runs/{id}"))).await;
    let best = checkpoints["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["val_loss"].is_number())
        .min_by(|a, b| {
            a["val_loss"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["val_loss"].as_f64().unwrap())
        })
        .unwrap()["step"]
        .clone();
    assert_eq!(on_test["step"], best);
    // On the last weights with all test batches: the test loss the run
    // reported when it finished.
    let at_end = post_json(&client, &url, json!({"split": "test", "step": 8}))
        .await
        .1;
    let response = client
        .get(server.url(&format!("/api/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    let events = read_sse(response, |(_, kind, _)| kind == "done").await;
    let done: Value = serde_json::from_str(&events.last().unwrap().2).unwrap();
    let reported_test = done["test_loss"].as_f64().unwrap();
    let test_loss = at_end["loss"].as_f64().unwrap();
    assert!(
        (test_loss - reported_test).abs() / reported_test < 1e-4,
        "evaluated {test_loss}, the run reported {reported_test}"
    );

    // Bad requests name the field.
    for (body, field, needle) in [
        (json!({"split": "validation"}), "split", "no such split"),
        (
            json!({"step": 99}),
            "step",
            "no checkpoint at step 99 (it has: 4, 8)",
        ),
        (json!({"colour": 1}), "colour", "unknown field"),
    ] {
        let (status, error) = post_json(&client, &url, body.clone()).await;
        assert_eq!(status, 422, "{body} -> {error}");
        assert_eq!(error["field"], field, "{body} -> {error}");
        assert!(
            error["error"].as_str().unwrap().contains(needle),
            "{body} -> {error}"
        );
    }
    let (status, _) = post_json(&client, &server.url("/api/runs/999/evaluate"), json!({})).await;
    assert_eq!(status, 404);

    let listed = get_json(&client, &server.url(&format!("/api/runs/{id}/evaluations"))).await;
    let listed = listed.as_array().unwrap();
    // The best checkpoint may be the last one, whose test evaluation is
    // then the one just asked for again.
    let expected = if best == 8 { 2 } else { 3 };
    assert_eq!(listed.len(), expected, "{listed:?}");
    assert_eq!(listed[expected - 1]["id"], evaluation["id"], "newest first");
    assert_eq!(listed[0]["step"], 8);
    assert_eq!(at_end["reused"], best == 8);

    // The run page: the action, and the stored numbers.
    let html = page(&client, &server.url(&format!("/runs/{id}"))).await;
    assert!(html.contains(r#"id="evaluate-test""#), "no evaluate button");
    assert!(html.contains("Evaluate on test split"));
    assert!(
        html.contains(&format!("{loss:.4}")),
        "the loss is not shown"
    );
    assert!(html.contains(&format!("{perplexity:.3}")));

    // The same action as a plain form post (JavaScript off): a redirect
    // back to the run page, and one more stored evaluation.
    let response = no_redirects()
        .post(server.url("/fn/runs/evaluate"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(format!("id={id}&split=valid"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "{:?}", response.text().await);
    assert_eq!(
        response.headers()["location"],
        format!("/runs/{id}#evaluations").as_str()
    );
    let listed = get_json(&client, &server.url(&format!("/api/runs/{id}/evaluations"))).await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|e| e["split"] == "valid" && e["step"] == best),
        "{listed:?}"
    );

    // One worker and one base load served all of it.
    let inference = get_json(&client, &server.url("/api/compare/inference")).await;
    assert_eq!(inference["workers_started"], 1, "{inference}");
    assert_eq!(inference["base_loads"], 1, "{inference}");
}

/// Gives the tiny model an end token outside its vocabulary, which is no
/// stop token: generations then run to their limit or until stopped.
fn without_end_token(setup: &TinySetup) {
    let tokenizer_config = setup.model_dir.join("tokenizer_config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&tokenizer_config).unwrap()).unwrap();
    config["eos_token"] = json!("<|no-such-token|>");
    std::fs::write(&tokenizer_config, config.to_string()).unwrap();
}

#[tokio::test]
async fn compare_columns_get_losses_on_one_base_and_stop_cancels() {
    let setup = tiny_setup();
    // The random tiny model may greedily pick its end token within a few
    // dozen tokens, before a stop could land; without one (an end token
    // outside the vocabulary is no stop token) a long generation runs
    // until it is stopped.
    without_end_token(&setup);
    let server = setup.serve(&[("LORALAB_INFERENCE_IDLE_SECS", "600")]);
    let client = reqwest::Client::new();
    let mut runs = Vec::new();
    for (name, lr) in [("gentle", 1e-3), ("strong", 3e-2)] {
        let body =
            tiny_run(json!({"name": name, "iters": 10, "learning_rate": lr, "save_every": 10}));
        runs.push(create_run(&client, &server, body).await);
    }
    for id in &runs {
        wait_for_status(&client, &server, *id, 300, "done").await;
    }
    let columns = json!([
        "base",
        format!("run:{}", runs[0]),
        format!("run:{}", runs[1])
    ]);
    let (status, created) = post_json(
        &client,
        &server.url("/api/compare"),
        json!({"model": "tiny", "columns": columns, "prompt": "Hi", "settings": {"max_tokens": 4}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let cid = created["id"].as_i64().unwrap();
    follow_comparison(&client, &server, cid, |(_, kind, _)| kind == "done").await;

    // Losses per column on the sample dataset's valid split.
    let url = server.url(&format!("/api/compare/{cid}/evaluate"));
    let (status, losses) = post_json(
        &client,
        &url,
        json!({"dataset": "sample-ahoy", "split": "valid"}),
    )
    .await;
    assert_eq!(status, 200, "{losses}");
    assert_eq!(losses["dataset"], "sample-ahoy");
    assert_eq!(losses["split"], "valid");
    let columns = losses["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 3);
    let loss = |i: usize| columns[i]["loss"].as_f64().unwrap();
    assert_eq!(columns[0]["source"], "base");
    assert_eq!(columns[1]["source"], "run");
    assert_eq!(columns[1]["step"], 10);
    assert!((loss(0) - loss(2)).abs() > 1e-3, "{losses}");
    assert!((loss(1) - loss(2)).abs() > 1e-6, "{losses}");
    // The strong adapter learned the style: lower loss than the base.
    assert!(loss(2) < loss(0), "{losses}");
    for column in columns {
        assert_eq!(column["tokens"], columns[0]["tokens"], "the same batches");
        assert_eq!(column["reused"], false);
    }
    // One base load for 3 generations and 3 evaluations; each adapter read
    // once to generate and once to evaluate (the columns run in turn).
    let inference = get_json(&client, &server.url("/api/compare/inference")).await;
    assert_eq!(inference["base_loads"], 1, "{inference}");
    assert_eq!(inference["workers_started"], 1, "{inference}");
    assert_eq!(inference["evaluations"], 3, "{inference}");
    assert_eq!(inference["adapter_loads"], 4, "{inference}");

    // Asked again: all stored, nothing computed.
    let (_, again) = post_json(
        &client,
        &url,
        json!({"dataset": "sample-ahoy", "split": "valid"}),
    )
    .await;
    for (i, column) in again["columns"].as_array().unwrap().iter().enumerate() {
        assert_eq!(column["reused"], true);
        assert_eq!(column["loss"].as_f64().unwrap(), loss(i));
    }
    let inference = get_json(&client, &server.url("/api/compare/inference")).await;
    assert_eq!(inference["evaluations"], 3, "{inference}");

    // The page renders them in each column (no JavaScript needed).
    let html = page(
        &client,
        &server.url(&format!("/compare/{cid}?dataset=sample-ahoy&split=valid")),
    )
    .await;
    for i in 0..3 {
        assert!(
            html.contains(&format!("{:.4}", loss(i))),
            "column {i}'s loss is not on the page"
        );
    }
    assert!(html.contains("Loss (sample-ahoy · valid)"));
    assert!(html.contains(r#"id="evaluate-form""#));

    // The form post: evaluate (stored already) and come back to the page.
    let response = no_redirects()
        .post(server.url("/fn/compare/evaluate"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(format!("id={cid}&dataset=sample-ahoy&split=test"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        format!("/compare/{cid}?dataset=sample-ahoy&split=test#losses").as_str()
    );
    let stored = get_json(
        &client,
        &server.url(&format!(
            "/api/compare/{cid}/evaluations?dataset=sample-ahoy&split=test"
        )),
    )
    .await;
    assert!(stored["columns"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["loss"].is_number()));

    // Unknown dataset and split: named.
    for (body, field, needle) in [
        (
            json!({"dataset": "nope"}),
            "dataset",
            "no dataset named \"nope\"",
        ),
        (
            json!({"dataset": "sample-ahoy", "split": "dev"}),
            "split",
            "no such split \"dev\"",
        ),
    ] {
        let (status, error) = post_json(&client, &url, body.clone()).await;
        assert_eq!(status, 422, "{body} -> {error}");
        assert_eq!(error["field"], field);
        assert!(error["error"].as_str().unwrap().contains(needle), "{error}");
    }

    // Stop: a long generation ends early and keeps its text. Both outputs
    // are decoded together (one batch), so both stop there.
    let (_, long) = post_json(
        &client,
        &server.url("/api/compare"),
        json!({"model": "tiny", "columns": ["base", format!("run:{}", runs[1])], "prompt": "Tell me a story", "settings": {"max_tokens": 1024}}),
    )
    .await;
    let long_id = long["id"].as_i64().unwrap();
    follow_comparison(&client, &server, long_id, |(_, kind, _)| kind == "text").await;
    let (status, cancelled) = post_json(
        &client,
        &server.url(&format!("/api/compare/{long_id}/cancel")),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["cancelled"], true);
    let stopped = get_json(&client, &server.url(&format!("/api/compare/{long_id}"))).await;
    assert_eq!(stopped["status"], "cancelled", "{stopped}");
    let outputs = stopped["prompts"][0]["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["status"], "cancelled", "{stopped}");
    assert_eq!(outputs[0]["finish_reason"], "cancelled");
    let generated = outputs[0]["generated_tokens"].as_u64().unwrap();
    assert!((1..1024).contains(&generated), "{generated}");
    assert!(!outputs[0]["text"].as_str().unwrap().is_empty());
    assert_eq!(outputs[1]["status"], "cancelled", "{stopped}");
    assert!(outputs[1]["generated_tokens"].as_u64().unwrap() < 1024);
    // Nothing left to stop.
    let (_, again) = post_json(
        &client,
        &server.url(&format!("/api/compare/{long_id}/cancel")),
        json!({}),
    )
    .await;
    assert_eq!(again["cancelled"], false);

    // A chat reply stopped mid-way is kept and marked.
    let (status, chat) = post_json(
        &client,
        &server.url("/api/chat"),
        json!({"model": "tiny", "adapter": "base"}),
    )
    .await;
    assert_eq!(status, 201, "{chat}");
    let chat_id = chat["id"].as_i64().unwrap();
    let response = client
        .post(server.url(&format!("/api/chat/{chat_id}/messages")))
        .json(&json!({"content": "Tell me a long story"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reader = tokio::spawn(read_sse(response, |(_, kind, _)| {
        kind == "done" || kind == "error"
    }));
    // Cancel as soon as the reply is being generated.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, answer) = post_json(
            &client,
            &server.url(&format!("/api/chat/{chat_id}/cancel")),
            json!({}),
        )
        .await;
        if answer["cancelled"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reply never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let events = reader.await.unwrap();
    let (_, kind, data) = events.last().unwrap();
    assert_eq!(kind, "done", "{data}");
    let done: Value = serde_json::from_str(data).unwrap();
    assert_eq!(done["finish_reason"], "cancelled", "{done}");
    assert!(done["generated_tokens"].as_u64().unwrap() < 256, "{done}");
    let stored = get_json(&client, &server.url(&format!("/api/chat/{chat_id}"))).await;
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{stored}");
    assert_eq!(messages[1]["cancelled"], true, "{stored}");
    assert_eq!(messages[1]["content"], done["text"]);
}

#[tokio::test]
async fn a_dataset_without_a_test_split_is_said_so_and_valid_is_offered() {
    let setup = tiny_setup();
    // A dataset with train.jsonl and valid.jsonl only, registered as an
    // upload would register it.
    let folder = setup.temp.path().join("no-test");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("train.jsonl"),
        engine::data::sample::TRAIN_JSONL,
    )
    .unwrap();
    std::fs::write(
        folder.join("valid.jsonl"),
        engine::data::sample::VALID_JSONL,
    )
    .unwrap();
    let (_, store) = server::setup::prepare(&setup.data_dir, None).unwrap();
    store
        .upsert_dataset(&server::store::NewDataset {
            name: "no-test".into(),
            directory: folder.display().to_string(),
            format: Some("chat".into()),
            train_count: 300,
            valid_count: 40,
            test_count: 0,
            problems: 0,
            builtin: false,
        })
        .unwrap();
    drop(store);
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let id = create_run(
        &client,
        &server,
        tiny_run(json!({"dataset": "no-test", "iters": 4, "save_every": 4})),
    )
    .await;
    wait_for_status(&client, &server, id, 300, "done").await;

    let html = page(&client, &server.url(&format!("/runs/{id}"))).await;
    assert!(
        html.contains("dataset no-test has no test split. Evaluate on the valid split instead"),
        "no notice"
    );
    assert!(!html.contains(r#"id="evaluate-test""#));
    assert!(html.contains(r#"id="evaluate-valid""#));

    let url = server.url(&format!("/api/runs/{id}/evaluate"));
    let (status, error) = post_json(&client, &url, json!({})).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "split");
    assert_eq!(
        error["error"],
        "split: dataset \"no-test\" has no test split (it has: train, valid)"
    );
    let (status, evaluation) = post_json(&client, &url, json!({"split": "valid"})).await;
    assert_eq!(status, 200, "{evaluation}");
    assert_eq!(evaluation["step"], 4);
    assert_eq!(evaluation["batches"], 1, "the run's val_batches");
    let loss = evaluation["loss"].as_f64().unwrap();

    // Shared on the LAN, a viewer sees the numbers but not the action, and
    // cannot reach it.
    drop(server);
    let server = Server::start_in(setup.data_dir.clone(), &["--lan", "--host", "127.0.0.1"]);
    let html = page(&client, &server.url(&format!("/runs/{id}"))).await;
    assert!(html.contains(&format!("{loss:.4}")), "the loss is hidden");
    assert!(
        !html.contains(r#"id="evaluate-valid""#),
        "a viewer sees the action"
    );
    let response = client
        .post(server.url(&format!("/api/runs/{id}/evaluate")))
        .json(&json!({"split": "valid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

/// A chat reply's `done` event, sent through the API.
async fn chat_reply(client: &reqwest::Client, server: &Server, chat_id: i64, text: &str) -> Value {
    let response = client
        .post(server.url(&format!("/api/chat/{chat_id}/messages")))
        .json(&json!({ "content": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = read_sse(response, |(_, kind, _)| kind == "done" || kind == "error").await;
    let (_, kind, data) = events.last().unwrap();
    assert_eq!(kind, "done", "{data}");
    serde_json::from_str(data).unwrap()
}

async fn patch_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.patch(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_chat_keeps_its_settings_and_they_change_between_replies() {
    let setup = tiny_setup();
    // Without an end token every reply runs to its token limit.
    without_end_token(&setup);
    let server = setup.serve(&[("LORALAB_INFERENCE_IDLE_SECS", "600")]);
    let client = reqwest::Client::new();

    // Out-of-range settings are refused by name, and no chat is made.
    for (body, field) in [
        (
            json!({"model": "tiny", "adapter": "base", "max_tokens": 5000}),
            "max_tokens",
        ),
        (
            json!({"model": "tiny", "adapter": "base", "temperature": -1.0}),
            "temperature",
        ),
    ] {
        let (status, error) = post_json(&client, &server.url("/api/chat"), body).await;
        assert_eq!(status, 422, "{error}");
        assert!(error.to_string().contains(field), "{error}");
    }

    let (status, chat) = post_json(
        &client,
        &server.url("/api/chat"),
        json!({"model": "tiny", "adapter": "base", "temperature": 0.0, "max_tokens": 3}),
    )
    .await;
    assert_eq!(status, 201, "{chat}");
    assert_eq!(
        (chat["temperature"].as_f64(), chat["max_tokens"].as_u64()),
        (Some(0.0), Some(3))
    );
    let chat_id = chat["id"].as_i64().unwrap();
    let url = server.url(&format!("/api/chat/{chat_id}"));
    let first = chat_reply(&client, &server, chat_id, "Hello").await;
    assert_eq!(first["generated_tokens"], 3, "{first}");

    // A bad change changes nothing.
    let (status, error) =
        patch_json(&client, &url, json!({"max_tokens": 0, "temperature": 0.5})).await;
    assert_eq!(status, 422, "{error}");
    assert!(error.to_string().contains("max_tokens"), "{error}");
    let unchanged = get_json(&client, &url).await;
    assert_eq!(unchanged["max_tokens"], 3);
    assert_eq!(unchanged["temperature"], 0.0);

    let (status, changed) = patch_json(
        &client,
        &url,
        json!({"max_tokens": 7, "system": "Be brief."}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["max_tokens"], 7);
    assert_eq!(changed["temperature"], 0.0, "kept: {changed}");
    assert_eq!(changed["system"], "Be brief.");
    let second = chat_reply(&client, &server, chat_id, "And again").await;
    assert_eq!(second["generated_tokens"], 7, "{second}");

    // Greedy replies repeat: a second chat with the same settings and
    // message answers as the first did.
    let (_, twin) = post_json(
        &client,
        &server.url("/api/chat"),
        json!({"model": "tiny", "adapter": "base", "temperature": 0.0, "max_tokens": 3}),
    )
    .await;
    let twin_reply = chat_reply(&client, &server, twin["id"].as_i64().unwrap(), "Hello").await;
    assert_eq!(twin_reply["text"], first["text"]);

    // An empty system message removes it.
    let (_, cleared) = patch_json(&client, &url, json!({"system": ""})).await;
    assert_eq!(cleared["system"], Value::Null, "{cleared}");
    assert_eq!(cleared["max_tokens"], 7);
}
