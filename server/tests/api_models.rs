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
            json!({"name": "abc\u{202e}gpj.exe", "path": gguf}),
            422,
            "name",
            "name contains the invisible format character U+202E",
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

/// A copy of the tiny model with `edit` applied to its folder.
fn lying_copy(setup: &TinySetup, name: &str, edit: impl FnOnce(&std::path::Path)) -> String {
    let dir = setup.temp.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&setup.model_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    edit(&dir);
    dir.display().to_string()
}

fn set_config(dir: &std::path::Path, key: &str, value: Value) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, config.to_string()).unwrap();
}

#[tokio::test]
async fn folders_whose_config_lies_are_refused_naming_the_field() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let layers = {
        let config: Value =
            serde_json::from_slice(&std::fs::read(setup.model_dir.join("config.json")).unwrap())
                .unwrap();
        config["num_hidden_layers"].as_u64().unwrap()
    };
    let weights_len = std::fs::metadata(setup.model_dir.join("model.safetensors"))
        .unwrap()
        .len();
    let before = get_json(&client, &server.url("/api/models")).await;
    let cases = [
        (
            lying_copy(&setup, "zero-width", |dir| {
                set_config(dir, "hidden_size", json!(0))
            }),
            "config.json: hidden_size is 0; it must be from 1 to 131072".to_string(),
        ),
        (
            lying_copy(&setup, "deep", |dir| {
                set_config(dir, "num_hidden_layers", json!(1_000_000_000u64))
            }),
            "config.json: num_hidden_layers is 1000000000; it must be from 1 to 1024".to_string(),
        ),
        (
            lying_copy(&setup, "one-more", |dir| {
                set_config(dir, "num_hidden_layers", json!(layers + 1))
            }),
            format!(
                "config.json: num_hidden_layers is {} but the weights have {layers} layers",
                layers + 1
            ),
        ),
        (
            lying_copy(&setup, "huge-header", |dir| {
                let path = dir.join("model.safetensors");
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[..8].copy_from_slice(&1_000_000_000_000_000u64.to_le_bytes());
                std::fs::write(&path, bytes).unwrap();
            }),
            format!("model.safetensors: the header claims 1000000000000000 bytes but the file has {weights_len}; it is not a safetensors file"),
        ),
    ];
    for (path, error) in &cases {
        let (status, answer) = import(&client, &server, json!({"path": path})).await;
        assert_eq!(status, 422, "{path}: {answer}");
        assert_eq!(answer["field"], "path", "{answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.ends_with(error.as_str()), "{path}: {message}");
        assert!(!message.contains("/rustc/"), "{message}");
    }
    // None is stored.
    let after = get_json(&client, &server.url("/api/models")).await;
    assert_eq!(names(&after), names(&before));
    // A file that is not a GGUF is refused without its bytes in the error.
    let (status, answer) = import(&client, &server, json!({"path": "/etc/passwd"})).await;
    assert_eq!(status, 422, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(message.contains("not a GGUF file"), "{message}");
    assert!(
        !message.contains("root") && !message.contains('['),
        "{message}"
    );
}
