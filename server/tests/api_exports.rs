//! Export jobs through the real server: a trained run exported as a fused
//! HF folder (whose logits are the run's base + adapter), an MLX-quantized
//! folder, a PEFT adapter, a GGUF and a GGUF LoRA adapter, each followed
//! over SSE to `done`, listed, and
//! downloaded as zip and tar; bad requests refused naming the field; a
//! killed export worker leaves no folder and the export says why; and
//! `loralab export` headless.

mod common;

use std::io::Read;
use std::path::Path;

use common::*;
use engine::config::ComputeDtype;
use serde_json::{json, Value};

/// Follows an export's SSE stream to its end; the events' kinds and the
/// last view.
async fn follow_export(client: &reqwest::Client, server: &Server, id: i64) -> (Vec<String>, Value) {
    let response = client
        .get(server.url(&format!("/api/exports/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = read_sse(response, |(_, kind, _)| kind != "progress").await;
    let last: Value = serde_json::from_str(&events.last().unwrap().2).unwrap();
    (events.into_iter().map(|(_, kind, _)| kind).collect(), last)
}

async fn start_export(
    client: &reqwest::Client,
    server: &Server,
    run: i64,
    body: Value,
) -> (u16, Value) {
    post_json(
        client,
        &server.url(&format!("/api/runs/{run}/exports")),
        body,
    )
    .await
}

async fn export_done(client: &reqwest::Client, server: &Server, run: i64, body: Value) -> Value {
    let (status, view) = start_export(client, server, run, body).await;
    assert_eq!(status, 202, "{view}");
    let id = view["id"].as_i64().unwrap();
    let (kinds, last) = follow_export(client, server, id).await;
    assert_eq!(kinds.last().map(String::as_str), Some("done"), "{last:#}");
    assert_eq!(last["tensors_done"], last["tensors_total"]);
    last
}

fn files_of(view: &Value) -> Vec<(String, u64)> {
    serde_json::from_value(view["files"].clone()).unwrap()
}

#[tokio::test]
async fn a_trained_run_exports_as_hf_mlx_and_peft_and_downloads() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let run = create_run(&client, &server, tiny_run(json!({"iters": 10}))).await;
    let finished = wait_for_status(&client, &server, run, 300, "done").await;
    let best = finished["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .min_by(|a, b| {
            a["val_loss"]
                .as_f64()
                .partial_cmp(&b["val_loss"].as_f64())
                .unwrap()
        })
        .unwrap()["step"]
        .as_i64()
        .unwrap();

    // Fused, f32: the folder's logits are the base's with the best
    // checkpoint's adapter.
    let hf = export_done(
        &client,
        &server,
        run,
        json!({"format": "hf", "dtype": "f32"}),
    )
    .await;
    assert_eq!(hf["step"], best, "the best checkpoint by default");
    assert!(hf["fused"].as_u64().unwrap() > 0, "{hf:#}");
    let names: Vec<String> = files_of(&hf).into_iter().map(|(n, _)| n).collect();
    for file in [
        "config.json",
        "model-00001-of-00001.safetensors",
        "model.safetensors.index.json",
        "README.md",
    ] {
        assert!(names.contains(&file.to_string()), "{names:?}");
    }
    let folder = Path::new(hf["path"].as_str().unwrap()).to_path_buf();
    let fused = engine::models::load_hf_folder(&folder, ComputeDtype::Float32).unwrap();
    let mut model =
        engine::models::load_hf_folder(&setup.model_dir, ComputeDtype::Float32).unwrap();
    let run_dir = setup.data_dir.join(format!("runs/{run}"));
    engine::lora::load_adapters(&mut model, &run_dir).unwrap();
    let checkpoint = finished["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == best)
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    engine::lora::load_weights(&mut model, Path::new(&checkpoint)).unwrap();
    let tokens = mlx_rs::Array::from_slice(&[1u32, 5, 9, 33, 2, 70], &[1, 6]);
    let ours = model.forward(&tokens).unwrap();
    let theirs = fused.forward(&tokens).unwrap();
    let diff = ours
        .subtract(&theirs)
        .unwrap()
        .abs()
        .unwrap()
        .max(false)
        .unwrap()
        .item_exact::<f32>();
    assert!(diff < 1e-4, "fused logits differ by {diff}");
    assert!(hf["usage"]
        .as_str()
        .unwrap()
        .contains(folder.to_str().unwrap()));

    // MLX 8-bit and PEFT at another checkpoint.
    let mlx = export_done(&client, &server, run, json!({"format": "mlx", "bits": 8})).await;
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(mlx["path"].as_str().unwrap()).join("config.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config["quantization"]["bits"], 8);
    let peft = export_done(&client, &server, run, json!({"format": "peft", "step": 5})).await;
    assert_eq!(peft["step"], 5);
    assert!(files_of(&peft)
        .iter()
        .any(|(n, _)| n == "adapter_model.safetensors"));

    let listed = get_json(&client, &server.url(&format!("/api/exports?run={run}"))).await;
    let formats: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["peft", "mlx", "hf"], "newest first");

    // Downloads hold exactly the folder's files.
    let id = hf["id"].as_i64().unwrap();
    let zip_bytes = client
        .get(server.url(&format!("/api/exports/{id}/download?as=zip")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.to_vec())).unwrap();
    for (name, size) in files_of(&hf) {
        let mut entry = archive
            .by_name(&format!("loralab-export-{id}-hf/{name}"))
            .unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, std::fs::read(folder.join(&name)).unwrap(), "{name}");
        assert_eq!(bytes.len() as u64, size);
    }
    let tar_bytes = client
        .get(server.url(&format!("/api/exports/{id}/download?as=tar")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut offset = 0;
    let mut seen = Vec::new();
    while tar_bytes[offset] != 0 {
        let header = &tar_bytes[offset..offset + 512];
        let name = String::from_utf8_lossy(&header[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = u64::from_str_radix(std::str::from_utf8(&header[124..135]).unwrap(), 8).unwrap();
        let data = &tar_bytes[offset + 512..offset + 512 + size as usize];
        let file = name.rsplit('/').next().unwrap();
        assert_eq!(data, std::fs::read(folder.join(file)).unwrap(), "{name}");
        seen.push(file.to_string());
        offset += 512 + (size as usize).div_ceil(512) * 512;
    }
    assert_eq!(seen.len(), files_of(&hf).len());
    assert_eq!(tar_bytes.len(), offset + 1024);

    // Deleting an export removes its folder.
    let deleted = client
        .delete(server.url(&format!("/api/exports/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(!folder.exists());
    assert_eq!(
        get_status(&client, &server.url(&format!("/api/exports/{id}"))).await,
        404
    );
}

/// GGUF through the job machinery: a trained run exported as a Q8_0 GGUF
/// (with its Modelfile) and as a llama.cpp LoRA adapter, followed over SSE
/// to `done`, with the quant and the Ollama command in the view.
#[tokio::test]
async fn a_trained_run_exports_as_gguf_and_gguf_lora() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let run = create_run(&client, &server, tiny_run(json!({"iters": 5}))).await;
    wait_for_status(&client, &server, run, 300, "done").await;

    let gguf = export_done(
        &client,
        &server,
        run,
        json!({"format": "gguf", "quant": "q8_0"}),
    )
    .await;
    assert_eq!(gguf["quant"], "q8_0", "{gguf:#}");
    assert!(gguf["fused"].as_u64().unwrap() > 0, "{gguf:#}");
    assert_eq!(gguf["copied"], 0, "an HF base has nothing to copy");
    let names: Vec<String> = files_of(&gguf).into_iter().map(|(n, _)| n).collect();
    for file in ["model.gguf", "Modelfile", "README.md"] {
        assert!(names.contains(&file.to_string()), "{names:?}");
    }
    let folder = Path::new(gguf["path"].as_str().unwrap()).to_path_buf();
    let file = engine::gguf::GgufFile::open(folder.join("model.gguf")).unwrap();
    assert_eq!(
        file.get("general.file_type").and_then(|v| v.as_u64()),
        Some(7)
    );
    assert!(
        gguf["usage"].as_str().unwrap().contains("ollama create"),
        "{gguf:#}"
    );
    let lm_studio = names
        .iter()
        .find(|name| name.starts_with("lmstudio/loralab/") && name.ends_with("-Q8_0.gguf"))
        .unwrap_or_else(|| panic!("LM Studio's layout: {names:?}"));
    assert_eq!(
        std::fs::read(folder.join(lm_studio)).unwrap(),
        std::fs::read(folder.join("model.gguf")).unwrap()
    );
    assert!(
        gguf["usage"]
            .as_str()
            .unwrap()
            .contains("~/.lmstudio/models/"),
        "{gguf:#}"
    );

    let lora = export_done(&client, &server, run, json!({"format": "gguf-lora"})).await;
    assert_eq!(lora["quant"], "f16");
    assert!(lora["fused"].is_null(), "{lora:#}");
    let adapter = Path::new(lora["path"].as_str().unwrap()).join("adapter.gguf");
    let file = engine::gguf::GgufFile::open(&adapter).unwrap();
    assert_eq!(
        file.get("general.type").and_then(|v| v.as_str()),
        Some("adapter")
    );
}

#[tokio::test]
async fn bad_export_requests_are_refused_naming_the_field() {
    let setup = tiny_setup();
    let server = setup.serve(&[("LORALAB_MAX_CONCURRENT_RUNS", "1")]);
    let client = reqwest::Client::new();
    let run = create_run(&client, &server, tiny_run(json!({"iters": 5}))).await;
    wait_for_status(&client, &server, run, 300, "done").await;
    for (body, field) in [
        (json!({"format": "onnx"}), "format"),
        (json!({"format": "hf", "dtype": "f8"}), "dtype"),
        (json!({"format": "mlx", "bits": 3}), "bits"),
        (json!({"format": "hf", "step": 7}), "step"),
        (json!({"format": "gguf", "quant": "q3_k_xl"}), "quant"),
    ] {
        let (status, answer) = start_export(&client, &server, run, body.clone()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let (status, _) = start_export(&client, &server, 999, json!({"format": "hf"})).await;
    assert_eq!(status, 404);
    // What the GGUF writer cannot write is refused before a job exists.
    let dora = create_run(
        &client,
        &server,
        tiny_run(json!({"iters": 2, "fine_tune_type": "dora"})),
    )
    .await;
    wait_for_status(&client, &server, dora, 300, "done").await;
    let (status, answer) =
        start_export(&client, &server, dora, json!({"format": "gguf-lora"})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "format");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("a DoRA adapter cannot be written as a GGUF LoRA adapter"),
        "{answer}"
    );

    // A full fine-tune trains in its worker like any run; it has no
    // adapter to export alone.
    let full = create_run(
        &client,
        &server,
        tiny_run(json!({"iters": 2, "fine_tune_type": "full", "num_layers": 2})),
    )
    .await;
    wait_for_status(&client, &server, full, 300, "done").await;
    let (status, answer) =
        start_export(&client, &server, full, json!({"format": "gguf-lora"})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "format");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("a full fine-tune has no adapter to write alone (`gguf-lora`)"),
        "{answer}"
    );

    // A run queued behind a long one has no adapter yet.
    let long = create_run(&client, &server, tiny_run(json!({"iters": 100000}))).await;
    let queued = create_run(&client, &server, tiny_run(json!({"iters": 5}))).await;
    let (status, answer) = start_export(&client, &server, queued, json!({"format": "hf"})).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("no adapter yet"),
        "{answer}"
    );
    assert!(get_json(&client, &server.url("/api/exports"))
        .await
        .as_array()
        .unwrap()
        .is_empty());
    stop_run(&client, &server, long).await;
}

/// The export-worker processes of this server (children of `server_pid`).
fn export_workers(server_pid: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1));
        if String::from_utf8_lossy(&cmdline).contains("export-worker")
            && parent == Some(&server_pid.to_string())
        {
            pids.push(pid);
        }
    }
    pids
}

/// SmolLM2 (the shipped GGUF) fused as f32 takes a few seconds: long
/// enough to SIGKILL its worker midway.
#[tokio::test]
async fn a_killed_export_worker_leaves_no_folder_and_the_export_says_why() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let server = Server::start_in(data_dir.clone(), &[]);
    let client = reqwest::Client::new();
    let run = create_run(
        &client,
        &server,
        json!({
            "model": "SmolLM2-135M-Instruct", "dataset": "sample-ahoy", "iters": 2,
            "batch_size": 1, "max_seq_length": 64, "num_layers": 1, "val_batches": 1,
            "steps_per_eval": 2, "save_every": 2, "steps_per_report": 1,
        }),
    )
    .await;
    wait_for_status(&client, &server, run, 600, "done").await;
    let (status, view) = start_export(
        &client,
        &server,
        run,
        json!({"format": "hf", "dtype": "f32"}),
    )
    .await;
    assert_eq!(status, 202, "{view}");
    let id = view["id"].as_i64().unwrap();
    poll_json(
        &client,
        &server.url(&format!("/api/exports/{id}")),
        300,
        "a tensor written",
        |v| {
            v["tensors_done"].as_u64().unwrap_or(0) > 0
                || v["status"] != "running" && v["status"] != "queued"
        },
    )
    .await;
    let workers = export_workers(server.pid());
    assert_eq!(workers.len(), 1, "one export worker runs");
    let killed = std::process::Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let ended = poll_json(
        &client,
        &server.url(&format!("/api/exports/{id}")),
        60,
        "failed",
        |v| v["status"] == "failed",
    )
    .await;
    assert!(
        ended["error"].as_str().unwrap().contains("killed"),
        "{ended:#}"
    );
    let exports = data_dir.join("exports");
    let left: Vec<String> = std::fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "nothing half-made is left: {left:?}");
    drop(server);

    // Headless: the same run exported by `loralab export` as a PEFT adapter.
    let out = temp.path().join("peft-out");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "export",
            "--run",
            &run.to_string(),
        ])
        .args(["--format", "peft", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PeftModel.from_pretrained"), "{stdout}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["layers_to_transform"],
        json!([29]),
        "num_layers 1: the top block"
    );
    // Asked again, the destination exists: refused, nothing touched.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "export",
            "--run",
            &run.to_string(),
        ])
        .args(["--format", "hf", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}
