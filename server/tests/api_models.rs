//! Models brought from this machine: a model folder and a GGUF file are
//! described from their metadata and registered; bad paths and names get
//! errors naming the field; removing one forgets it and keeps its files.

mod common;

use common::*;
use serde_json::{json, Value};

async fn import(client: &reqwest::Client, server: &Server, body: Value) -> (u16, Value) {
    let response = client
        .post(server.url("/api/models"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn folders_and_gguf_files_are_registered_from_their_metadata() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();

    let (status, folder) = import(
        &client,
        &server,
        json!({"name": "tiny again", "path": setup.model_dir}),
    )
    .await;
    assert_eq!(status, 201, "{folder}");
    assert_eq!(folder["source"], "folder");
    assert_eq!(folder["architecture"], "llama");
    let config: engine::model_config::ModelConfig =
        serde_json::from_slice(&std::fs::read(setup.model_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        folder["parameters"].as_u64().unwrap(),
        engine::memory::parameter_count(&config)
    );
    assert!(folder["size_bytes"].as_u64().unwrap() > 0);

    let gguf = env!("LORALAB_DEFAULT_MODEL");
    let (status, model) = import(&client, &server, json!({"path": gguf})).await;
    assert_eq!(status, 201, "{model}");
    assert_eq!(
        model["name"], "SmolLM2-135M-Instruct.Q4_1",
        "named after the file"
    );
    assert_eq!(model["quantization"], "Q4_1");
    assert_eq!(model["parameters"], 134_515_008u64);
    assert_eq!(
        model["size_bytes"].as_u64().unwrap(),
        std::fs::metadata(gguf).unwrap().len()
    );

    let not_gguf = setup.temp.path().join("notes.gguf");
    std::fs::write(&not_gguf, "hello").unwrap();
    for (body, status, field, error) in [
        (
            json!({"path": "relative/model.gguf"}),
            422,
            "path",
            "is not an absolute path",
        ),
        (
            json!({"path": "/no/such/model.gguf"}),
            422,
            "path",
            "does not exist",
        ),
        (
            json!({"path": not_gguf}),
            422,
            "path",
            "is not a usable GGUF file",
        ),
        (
            json!({"name": "../x", "path": gguf}),
            422,
            "name",
            "path separators are not allowed",
        ),
        (
            json!({"name": "tiny", "path": gguf}),
            409,
            "",
            "already exists",
        ),
    ] {
        let (got, answer) = import(&client, &server, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(error),
            "{body}: {answer}"
        );
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{answer}");
        }
    }

    let id = folder["id"].as_i64().unwrap();
    let removed = client
        .delete(server.url(&format!("/api/models/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let models = get_json(&client, &server.url("/api/models")).await;
    let names = names(&models);
    assert!(!names.contains(&"tiny again"), "{names:?}");
    assert!(names.contains(&"SmolLM2-135M-Instruct.Q4_1"), "{names:?}");
    assert!(setup.model_dir.join("config.json").is_file(), "files stay");
}
