//! Datasets brought by users: uploads land byte for byte in the data dir,
//! every problem comes back with file, line and field, refused uploads leave
//! nothing behind, the dataset page's figures come from the model's
//! tokenizer, and deleting removes the files.

mod common;

use std::path::Path;

use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

fn jsonl_part(bytes: &[u8], file_name: &str) -> Part {
    Part::bytes(bytes.to_vec()).file_name(file_name.to_string())
}

/// Folders in the datasets dir besides the sample's, including hidden ones.
fn dataset_folders(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("datasets"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn upload(client: &reqwest::Client, server: &Server, form: Form) -> (u16, Value) {
    let response = client
        .post(server.url("/api/datasets"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_upload_is_stored_checked_inspected_and_deleted() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let sample = std::fs::read(setup.data_dir.join("datasets/1/train.jsonl")).unwrap();

    let (status, body) = upload(
        &client,
        &server,
        Form::new()
            .text("name", "my ahoy")
            .part("file", jsonl_part(&sample, "ahoy.jsonl")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["dataset"]["id"].as_i64().unwrap();
    assert_eq!(body["dataset"]["format"], "chat");
    assert_eq!(body["dataset"]["problems"], 0);
    // 300 lines: 10% held out for valid and 10% for test.
    assert_eq!(body["dataset"]["train_count"], 240);
    assert_eq!(body["dataset"]["valid_count"], 30);
    assert_eq!(body["dataset"]["test_count"], 30);
    assert_eq!(body["report"]["splits"][1]["source"]["kind"], "held_out");
    let stored = setup.data_dir.join(format!("datasets/{id}/train.jsonl"));
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        sample,
        "stored byte for byte"
    );

    // The dataset page's figures, with the tiny model's tokenizer.
    let detail = get_json(
        &client,
        &server.url(&format!(
            "/api/datasets/{id}?model=tiny&max_seq_length=64&mask_prompt=true"
        )),
    )
    .await;
    let train = &detail["splits"][0];
    assert_eq!(train["examples"], 240);
    let tokens = &train["tokens"];
    assert!(tokens["tokens"].as_u64().unwrap() > 0, "{detail}");
    assert!(
        tokens["trained_tokens"].as_u64().unwrap() < tokens["tokens"].as_u64().unwrap(),
        "the prompt is masked: {tokens}"
    );
    // Byte-level tokens: nearly every example is longer than 64 and cut;
    // what is cut is exactly what a long enough sequence keeps.
    assert!(
        tokens["truncated_examples"].as_u64().unwrap() > 200,
        "{tokens}"
    );
    let uncut = get_json(
        &client,
        &server.url(&format!(
            "/api/datasets/{id}?model=tiny&max_seq_length=4096"
        )),
    )
    .await;
    let uncut = &uncut["splits"][0]["tokens"];
    assert_eq!(uncut["truncated_examples"], 0, "{uncut}");
    assert_eq!(
        uncut["tokens"].as_u64().unwrap(),
        tokens["tokens"].as_u64().unwrap() + tokens["truncated_tokens"].as_u64().unwrap()
    );
    let histogram: u64 = tokens["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|count| count.as_u64().unwrap())
        .sum();
    assert_eq!(histogram, 240);
    let preview = &detail["previews"][0];
    assert_eq!(preview["file"], "train.jsonl");
    let kinds: Vec<&str> = preview["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|segment| segment["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["masked", "trained", "truncated"], "{preview}");
    let segment = |i: usize| preview["segments"][i]["text"].as_str().unwrap();
    assert!(segment(0).starts_with("<|im_start|>user\n"), "{preview}");
    assert!(segment(0).ends_with("<|im_start|>assistant\n"), "{preview}");
    assert!(segment(1).starts_with("Ahoy!"), "{preview}");
    let kept: u64 = (0..2)
        .map(|i| preview["segments"][i]["tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(kept, 64, "the kept segments fill max_seq_length");

    // The page renders the same figures for a browser.
    let page = text_of(client.get(server.url(&format!("/datasets/{id}?model=tiny")))).await;
    assert!(page.contains("class=\"seg-trained\""), "{page}");
    assert!(page.contains("held out of train.jsonl"));

    let deleted = client
        .delete(server.url(&format!("/api/datasets/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(!stored.parent().unwrap().exists(), "files removed");
    let gone = get_status(&client, &server.url(&format!("/api/datasets/{id}"))).await;
    assert_eq!(gone, 404);
}

#[tokio::test]
async fn problems_name_file_line_and_field_and_block_runs() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let train = b"{\"prompt\": \"a\", \"completion\": \"b\"}\nnot json\n{\"prompt\": 3, \"completion\": \"c\"}\n";
    let (status, body) = upload(
        &client,
        &server,
        Form::new()
            .text("name", "broken")
            .part("train", jsonl_part(train, "train.jsonl"))
            .part(
                "valid",
                jsonl_part(
                    b"{\"prompt\": \"x\", \"completion\": \"y\"}\n",
                    "valid.jsonl",
                ),
            ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let problems = body["report"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{body}");
    assert_eq!(problems[0]["file"], "train.jsonl");
    assert_eq!(problems[0]["line"], 2);
    assert_eq!(problems[1]["line"], 3);
    assert_eq!(problems[1]["field"], "prompt");
    assert_eq!(body["dataset"]["problems"], 2);

    let refused = client
        .post(server.url("/api/runs"))
        .json(&tiny_run(serde_json::json!({"dataset": "broken"})))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["field"], "dataset");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("2 validation problem"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_dataset_with_problems_is_replaced_by_an_upload_under_its_name() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let broken = b"{\"text\": \"one\"}\nnot json\n";
    let (status, first) = upload(
        &client,
        &server,
        Form::new()
            .text("name", "notes")
            .part("file", jsonl_part(broken, "notes.jsonl")),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["dataset"]["problems"], 1);
    let id = first["dataset"]["id"].as_i64().unwrap();
    let sample_folder = dataset_folders(&setup.data_dir)[0].clone();
    assert_eq!(
        dataset_folders(&setup.data_dir),
        [sample_folder.clone(), id.to_string()]
    );

    let fixed = b"{\"text\": \"one\"}\n{\"text\": \"two\"}\n{\"text\": \"three\"}\n";
    let (status, replaced) = upload(
        &client,
        &server,
        Form::new()
            .text("name", "notes")
            .part("file", jsonl_part(fixed, "notes.jsonl")),
    )
    .await;
    assert_eq!(status, 201, "{replaced}");
    assert_eq!(replaced["dataset"]["id"], id, "same dataset: {replaced}");
    assert_eq!(replaced["dataset"]["problems"], 0);
    let counts = &replaced["dataset"];
    let examples = ["train_count", "valid_count", "test_count"]
        .map(|key| counts[key].as_u64().unwrap())
        .iter()
        .sum::<u64>();
    assert_eq!(examples, 3, "{replaced}");
    let datasets = get_json(&client, &server.url("/api/datasets")).await;
    assert_eq!(
        datasets.as_array().unwrap().len(),
        2,
        "sample + notes: {datasets}"
    );
    // The old files are gone and nothing staged is left: the sample's
    // folder and the replacement's.
    let folders = dataset_folders(&setup.data_dir);
    assert_eq!(folders.len(), 2, "{folders:?}");
    assert!(folders[1].starts_with(&format!("{id}-")), "{folders:?}");
    let new_folder = setup.data_dir.join("datasets").join(&folders[1]);
    assert_eq!(
        std::fs::read(new_folder.join("train.jsonl")).unwrap(),
        fixed
    );

    // Now usable, its name is taken like any other's.
    let (status, refused) = upload(
        &client,
        &server,
        Form::new()
            .text("name", "notes")
            .part("file", jsonl_part(broken, "notes.jsonl")),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    assert_eq!(
        std::fs::read(new_folder.join("train.jsonl")).unwrap(),
        fixed
    );
}

#[tokio::test]
async fn refused_uploads_leave_nothing_behind() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let before = dataset_folders(&setup.data_dir);
    let line = b"{\"text\": \"hello\"}\n";

    for (form, status, error) in [
        (
            Form::new()
                .text("name", "../../escape")
                .part("file", jsonl_part(line, "a.jsonl")),
            422,
            "name: name contains '/'; path separators are not allowed",
        ),
        (
            Form::new()
                .text("name", "abc\u{202e}gpj.exe")
                .part("file", jsonl_part(line, "a.jsonl")),
            422,
            "name: name contains the invisible format character U+202E",
        ),
        (
            Form::new().part("file", jsonl_part(line, "a.jsonl")),
            422,
            "name: give the dataset a name",
        ),
        (
            Form::new()
                .text("name", "empty")
                .part("file", jsonl_part(b"", "notes.jsonl")),
            422,
            "file: notes.jsonl is empty: it has no examples",
        ),
        (
            Form::new().text("name", "no files"),
            422,
            "file: choose a JSONL file",
        ),
        (
            Form::new()
                .text("name", "both")
                .part("file", jsonl_part(line, "a.jsonl"))
                .part("train", jsonl_part(line, "train.jsonl")),
            422,
            "each once",
        ),
        (
            Form::new()
                .text("name", "sample-ahoy")
                .part("file", jsonl_part(line, "a.jsonl")),
            409,
            "already exists",
        ),
    ] {
        let (got, body) = upload(&client, &server, form).await;
        assert_eq!(got, status, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(error),
            "expected {error:?} in {body}"
        );
        assert_eq!(dataset_folders(&setup.data_dir), before, "after {body}");
    }
    let datasets = get_json(&client, &server.url("/api/datasets")).await;
    assert_eq!(datasets.as_array().unwrap().len(), 1, "{datasets}");
}

#[tokio::test]
async fn a_browser_post_is_redirected_to_the_page_or_back_with_the_error() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |name: &'static str| {
        client
            .post(server.url("/api/datasets"))
            .header("accept", "text/html")
            .multipart(
                Form::new()
                    .text("name", name)
                    .part("file", jsonl_part(b"{\"text\": \"hi\"}\n", "a.jsonl")),
            )
            .send()
    };
    let created = post("hello").await.unwrap();
    assert_eq!(created.status(), 303);
    assert_eq!(created.headers()["location"], "/datasets/2");
    let refused = post("hello").await.unwrap();
    assert_eq!(refused.status(), 303);
    let location = refused.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/datasets?error="), "{location}");
    let page = text_of(client.get(server.url(&location))).await;
    assert!(
        page.contains("a dataset named &quot;hello&quot; already exists")
            || page.contains("a dataset named \"hello\" already exists"),
        "{page}"
    );
    // An empty file is named as such, and the page keeps the typed name.
    let empty = client
        .post(server.url("/api/datasets"))
        .header("accept", "text/html")
        .multipart(
            Form::new()
                .text("name", "my chats")
                .part("file", jsonl_part(b"", "train.jsonl")),
        )
        .send()
        .await
        .unwrap();
    let location = empty.headers()["location"].to_str().unwrap().to_string();
    let page = text_of(client.get(server.url(&location))).await;
    assert!(
        page.contains("file: train.jsonl is empty: it has no examples"),
        "{page}"
    );
    assert!(page.contains(r#"value="my chats""#), "{page}");
}

#[tokio::test]
async fn an_upload_over_the_limit_is_refused_and_leaves_nothing() {
    let setup = tiny_setup();
    let server = Server::start_in(setup.data_dir.clone(), &["--max-upload-mb", "1"]);
    let client = reqwest::Client::new();
    let before = dataset_folders(&setup.data_dir);
    let line = b"{\"text\": \"a line of a dataset that is far too big\"}\n";
    let big: Vec<u8> = line.iter().copied().cycle().take(16 << 20).collect();
    // Streamed without a length, so the limit is met while reading; 16
    // times the limit, so the client is still sending when the 413 is ready
    // (it must read it, not a reset connection).
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
        big.chunks(64 << 10)
            .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
            .collect::<Vec<_>>(),
    ));
    let (status, body) = upload(
        &client,
        &server,
        Form::new()
            .text("name", "too big")
            .part("file", Part::stream(body).file_name("big.jsonl")),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(dataset_folders(&setup.data_dir), before);
    let datasets = get_json(&client, &server.url("/api/datasets")).await;
    assert_eq!(datasets.as_array().unwrap().len(), 1, "{datasets}");
}

#[tokio::test]
async fn a_killed_uploads_folder_is_removed_at_the_next_start() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let before = dataset_folders(&setup.data_dir);
    // An upload whose file is still arriving when the server dies.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let form = Form::new().text("name", "half").part(
        "file",
        Part::stream(reqwest::Body::wrap_stream(chunks)).file_name("half.jsonl"),
    );
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(server.url("/api/datasets"))
            .multipart(form)
            .send(),
    );
    let line = b"{\"text\": \"ahoy\"}\n".repeat(1 << 14);
    sender.send(Ok(line)).await.unwrap();
    let datasets = setup.data_dir.join("datasets");
    let started = std::time::Instant::now();
    let staging = loop {
        let received = std::fs::read_dir(&datasets)
            .unwrap()
            .flatten()
            .find(|entry| {
                entry.file_name().to_string_lossy().starts_with(".upload-")
                    && std::fs::read_dir(entry.path())
                        .map(|files| files.flatten().any(|f| f.metadata().unwrap().len() > 0))
                        .unwrap_or(false)
            });
        if let Some(entry) = received {
            break entry.path();
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "the upload never reached the disk"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    server.kill();
    drop(sender);
    let _ = request.await;
    assert!(staging.is_dir(), "the killed server left its upload folder");

    let _server = setup.serve(&[]);
    assert!(!staging.exists(), "{} is left", staging.display());
    assert_eq!(dataset_folders(&setup.data_dir), before);
}
