//! Pulls from a local stand-in for the Hugging Face Hub: the cache layout
//! huggingface_hub shares, progress to the last byte, a second pull served
//! from the cache, offline use, errors that name the repo and file, and
//! `loralab train` / `loralab models pull` on a repo id.

mod common;
mod fake_hub;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_hub::{FakeHub, FakeRepo};
use server::hub::{HubEvent, HubSettings, HubSpec};

const COMMIT: &str = "5f2b1c0d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";

fn tiny_repo(temp: &Path) -> FakeRepo {
    FakeRepo::tiny_llama(&temp.join("upstream"), 7, COMMIT)
}

fn settings(hub: &str, cache: &Path) -> HubSettings {
    HubSettings {
        endpoint: hub.to_string(),
        cache_dir: cache.to_path_buf(),
        token: None,
        offline: false,
        stall_timeout: Duration::from_secs(60),
    }
}

type Events = Arc<Mutex<Vec<HubEvent>>>;

fn recorder() -> (Events, server::hub::ProgressFn) {
    let events: Events = Default::default();
    let sink = events.clone();
    (events, Arc::new(move |e| sink.lock().unwrap().push(e)))
}

/// A pull that must fail: what its error says.
async fn pull_error(
    settings: &HubSettings,
    spec: &HubSpec,
    progress: server::hub::ProgressFn,
) -> String {
    server::hub::pull(settings, spec, progress)
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn a_pull_fills_the_hf_cache_and_the_next_one_reads_it() {
    let temp = tempfile::tempdir().unwrap();
    let repo = tiny_repo(temp.path());
    let total: u64 = repo.files.iter().map(|(_, b)| b.len() as u64).sum();
    let hub = FakeHub::start(vec![("test-org/tiny-llama", repo.clone())], Duration::ZERO).await;
    let cache = temp.path().join("hf/hub");
    let spec = HubSpec::parse("test-org/tiny-llama").unwrap();

    let (events, progress) = recorder();
    let pulled = server::hub::pull(&settings(&hub.url, &cache), &spec, progress)
        .await
        .unwrap();
    let snapshot = cache.join(format!("models--test-org--tiny-llama/snapshots/{COMMIT}"));
    assert_eq!(pulled.path, snapshot);
    assert_eq!(pulled.commit, COMMIT);
    assert!(!pulled.from_cache);
    assert_eq!(pulled.downloaded_bytes, total);
    // huggingface_hub's layout: the ref, and snapshot links into blobs
    // named by the content's sha256.
    assert_eq!(
        std::fs::read_to_string(cache.join("models--test-org--tiny-llama/refs/main")).unwrap(),
        COMMIT
    );
    for (name, bytes) in &repo.files {
        let link = snapshot.join(name);
        let target = std::fs::read_link(&link).unwrap();
        assert!(target.starts_with("../../blobs"), "{target:?}");
        assert_eq!(&std::fs::read(&link).unwrap(), bytes, "{name}");
    }
    // Progress: the plan, then bytes up to each file's size.
    let events = events.lock().unwrap().clone();
    let HubEvent::Plan { commit, files } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(commit, COMMIT);
    let mut names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert_eq!(files.iter().map(|f| f.size).sum::<u64>(), total);
    let bytes: u64 = events
        .iter()
        .map(|e| match e {
            HubEvent::Bytes { bytes, .. } => *bytes,
            _ => 0,
        })
        .sum();
    assert_eq!(bytes, total);
    let done = events
        .iter()
        .filter(|e| matches!(e, HubEvent::FileDone { .. }))
        .count();
    assert_eq!(done, 4);

    // The model loads from the snapshot.
    let model = engine::models::load_hf_folder(&snapshot, Default::default()).unwrap();
    assert_eq!(model.num_layers(), engine::fixtures::LAYERS);

    // Again: one question to the Hub, no file requested.
    let file_gets = hub.counters.files.load(Ordering::SeqCst);
    let (_, progress) = recorder();
    let again = server::hub::pull(&settings(&hub.url, &cache), &spec, progress)
        .await
        .unwrap();
    assert!(again.from_cache);
    assert_eq!(again.path, snapshot);
    assert_eq!(hub.counters.files.load(Ordering::SeqCst), file_gets);
    assert_eq!(hub.counters.info.load(Ordering::SeqCst), 2);

    // Offline, explicitly: not even the question.
    let offline = HubSettings {
        offline: true,
        ..settings(&hub.url, &cache)
    };
    let (_, progress) = recorder();
    let cached = server::hub::pull(&offline, &spec, progress).await.unwrap();
    assert_eq!(
        (cached.path.clone(), cached.from_cache),
        (snapshot.clone(), true)
    );
    assert_eq!(hub.counters.info.load(Ordering::SeqCst), 2);

    // The Hub gone: the cache serves; a repo it never held is named.
    let url = hub.url.clone();
    hub.stop().await;
    let (_, progress) = recorder();
    let cached = server::hub::pull(&settings(&url, &cache), &spec, progress.clone())
        .await
        .unwrap();
    assert_eq!(cached.path, snapshot);
    let other = HubSpec::parse("test-org/other").unwrap();
    let error = pull_error(&settings(&url, &cache), &other, progress.clone()).await;
    assert!(
        error.starts_with(&format!(
            "test-org/other: the Hub at {url} cannot be reached ("
        )),
        "{error}"
    );
    assert!(
        error.ends_with(&format!(
            "and it is not in the Hugging Face cache {} (no snapshot for \"main\")",
            cache.display()
        )),
        "{error}"
    );
    // Offline with a file gone from the snapshot: what is missing is named.
    std::fs::remove_file(snapshot.join("model.safetensors")).unwrap();
    let error = pull_error(&offline, &spec, progress).await;
    assert_eq!(
        error,
        format!(
            "test-org/tiny-llama: HF_HUB_OFFLINE is set, and its snapshot in the Hugging Face cache {} lacks model.safetensors",
            snapshot.display()
        )
    );
}

/// Splits a safetensors file in two shards (tensors alternate), as
/// transformers writes big checkpoints, with the index naming them.
fn shard(folder: &Path) {
    let bytes = std::fs::read(folder.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for part in 0..2 {
        let file = format!("model-0000{}-of-00002.safetensors", part + 1);
        let (mut out_header, mut out_data) = (serde_json::Map::new(), Vec::new());
        for name in names.iter().skip(part).step_by(2) {
            let mut entry = header[*name].clone();
            let offsets = entry["data_offsets"].as_array().unwrap();
            let (start, end) = (
                offsets[0].as_u64().unwrap() as usize,
                offsets[1].as_u64().unwrap() as usize,
            );
            entry["data_offsets"] =
                serde_json::json!([out_data.len(), out_data.len() + end - start]);
            out_data.extend_from_slice(&data[start..end]);
            out_header.insert((*name).clone(), entry);
            weight_map.insert((*name).clone(), file.clone().into());
        }
        let header_bytes = serde_json::to_vec(&out_header).unwrap();
        let mut out = (header_bytes.len() as u64).to_le_bytes().to_vec();
        out.extend(header_bytes);
        out.extend(out_data);
        std::fs::write(folder.join(&file), out).unwrap();
    }
    std::fs::write(
        folder.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    std::fs::remove_file(folder.join("model.safetensors")).unwrap();
}

#[tokio::test]
async fn a_sharded_repo_brings_its_index_and_shards_and_nothing_else() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = temp.path().join("upstream");
    engine::fixtures::write_tiny_llama(&upstream, 4).unwrap();
    shard(&upstream);
    // What a Loralab pull leaves on the Hub: other formats and files.
    std::fs::write(upstream.join("consolidated.safetensors"), "not ours").unwrap();
    std::fs::write(upstream.join("pytorch_model.bin"), "not ours").unwrap();
    std::fs::write(upstream.join("README.md"), "# tiny").unwrap();
    std::fs::write(
        upstream.join("generation_config.json"),
        r#"{"eos_token_id": 257}"#,
    )
    .unwrap();
    let hub = FakeHub::start(
        vec![("test-org/sharded", FakeRepo::from_folder(&upstream, COMMIT))],
        Duration::ZERO,
    )
    .await;
    let cache = temp.path().join("cache");
    let spec = HubSpec::parse("test-org/sharded").unwrap();
    let (events, progress) = recorder();
    let pulled = server::hub::pull(&settings(&hub.url, &cache), &spec, progress)
        .await
        .unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&pulled.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "config.json",
            "generation_config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    );
    // The index came first (it names the shards); the plan lists it as cached.
    let events = events.lock().unwrap().clone();
    let HubEvent::Plan { files, .. } = &events[0] else {
        panic!("{events:?}")
    };
    let planned: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        planned,
        [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ]
    );
    assert_eq!(
        files.iter().filter(|f| f.cached).count(),
        1,
        "only the index: {files:?}"
    );
    let model = engine::models::load_hf_folder(&pulled.path, Default::default()).unwrap();
    assert_eq!(model.num_layers(), engine::fixtures::LAYERS);
}

#[tokio::test]
async fn errors_name_the_repo_and_the_file_and_a_failed_pull_keeps_only_partial_blobs() {
    let temp = tempfile::tempdir().unwrap();
    let repo = tiny_repo(temp.path());
    let weights_size = repo.size_of("model.safetensors");
    let hub = FakeHub::start(vec![("test-org/tiny-llama", repo)], Duration::ZERO).await;
    let cache = temp.path().join("cache");
    let (_, progress) = recorder();

    let missing = HubSpec::parse("test-org/no-such-model").unwrap();
    let error = pull_error(&settings(&hub.url, &cache), &missing, progress.clone()).await;
    assert_eq!(
        error,
        format!(
            "test-org/no-such-model: no such model repo on {}, or it is private (set HF_TOKEN to a token that can read it)",
            hub.url
        )
    );

    let gated = HubSpec::parse("test-org/gated-llama").unwrap();
    let error = pull_error(&settings(&hub.url, &cache), &gated, progress.clone()).await;
    assert_eq!(
        error,
        "test-org/gated-llama is gated: accept its terms on its Hub page, then set HF_TOKEN to a token of that account"
    );
    let branch = HubSpec::parse("test-org/tiny-llama@no-such-branch").unwrap();
    let error = pull_error(&settings(&hub.url, &cache), &branch, progress.clone()).await;
    assert_eq!(
        error,
        "test-org/tiny-llama has no revision \"no-such-branch\""
    );

    let gguf = HubSpec::parse("test-org/tiny-llama/tiny-q4_0.gguf").unwrap();
    let error = pull_error(&settings(&hub.url, &cache), &gguf, progress.clone()).await;
    assert_eq!(error, "test-org/tiny-llama has no file \"tiny-q4_0.gguf\"");

    // More than any disk holds: refused before a byte is written.
    let spec = HubSpec::parse("test-org/tiny-llama").unwrap();
    hub.claim_size("model.safetensors", 1 << 60);
    let files_before = hub.counters.files.load(Ordering::SeqCst);
    let error = pull_error(&settings(&hub.url, &cache), &spec, progress.clone()).await;
    let expected = format!(
        "test-org/tiny-llama: not enough disk space for the Hugging Face cache {}: the download needs 1048576.0 TiB, ",
        cache.display()
    );
    assert!(error.starts_with(&expected), "{error}");
    assert!(error.ends_with(" is free"), "{error}");
    assert_eq!(hub.counters.files.load(Ordering::SeqCst), files_before);
    hub.mend();

    hub.break_file("model.safetensors");
    let error = pull_error(&settings(&hub.url, &cache), &spec, progress.clone()).await;
    assert_eq!(
        error,
        "test-org/tiny-llama: the Hub answered 500 for model.safetensors"
    );
    // The weights are not in the snapshot; their partial file is a blob's
    // `.sync.part`, which the next pull resumes.
    let repo_dir = cache.join("models--test-org--tiny-llama");
    let snapshot = repo_dir.join(format!("snapshots/{COMMIT}"));
    assert!(snapshot.join("config.json").is_file());
    assert!(!snapshot.join("model.safetensors").exists());
    let parts: Vec<PathBuf> = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".sync.part"))
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");

    hub.mend();
    hub.cut_file("model.safetensors");
    let error = pull_error(&settings(&hub.url, &cache), &spec, progress.clone()).await;
    let expected = format!(
        "test-org/tiny-llama: the connection to the Hub at {} failed while downloading model.safetensors (",
        hub.url
    );
    assert!(error.starts_with(&expected), "{error}");
    assert!(error.ends_with("); pull again to resume"), "{error}");
    assert!(!snapshot.join("model.safetensors").exists());

    hub.mend();
    let (events, progress) = recorder();
    let pulled = server::hub::pull(&settings(&hub.url, &cache), &spec, progress)
        .await
        .unwrap();
    assert_eq!(pulled.downloaded_bytes, weights_size);
    let events = events.lock().unwrap().clone();
    let HubEvent::Plan { files, .. } = &events[0] else {
        panic!("{events:?}")
    };
    let fetched: Vec<&str> = files
        .iter()
        .filter(|f| !f.cached)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(fetched, ["model.safetensors"]);

    // main moves to a commit with the same files: the new snapshot links
    // the blobs already here, nothing is fetched again.
    let moved = "7777777777777777777777777777777777777777";
    hub.move_main("test-org/tiny-llama", moved);
    let file_gets = hub.counters.files.load(Ordering::SeqCst);
    let (_, progress) = recorder();
    let pulled = server::hub::pull(&settings(&hub.url, &cache), &spec, progress)
        .await
        .unwrap();
    assert_eq!(pulled.path, repo_dir.join(format!("snapshots/{moved}")));
    assert_eq!((pulled.from_cache, pulled.downloaded_bytes), (true, 0));
    assert_eq!(hub.counters.files.load(Ordering::SeqCst), file_gets);
    assert_eq!(
        std::fs::read_link(pulled.path.join("model.safetensors")).unwrap(),
        std::fs::read_link(snapshot.join("model.safetensors")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        moved
    );
    engine::models::load_hf_folder(&pulled.path, Default::default()).unwrap();

    // A Hub that stops sending: the pull ends after the silence limit.
    let slow = FakeHub::start(
        vec![("test-org/tiny-llama", tiny_repo(&temp.path().join("slow")))],
        Duration::from_secs(2),
    )
    .await;
    let quick_to_judge = HubSettings {
        stall_timeout: Duration::from_millis(300),
        ..settings(&slow.url, &temp.path().join("cache-2"))
    };
    let (_, progress) = recorder();
    let error = pull_error(&quick_to_judge, &spec, progress).await;
    assert_eq!(
        error,
        "test-org/tiny-llama: the Hub sent nothing for 0.3 s while config.json was downloading; pull again to resume"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn train_and_models_pull_take_a_repo_id() {
    let setup = common::tiny_setup();
    let dir = setup.temp.path().to_path_buf();
    let repo = tiny_repo(&dir);
    let hub = FakeHub::start(vec![("test-org/tiny-llama", repo)], Duration::ZERO).await;
    let hf_home = dir.join("hf-home");
    engine::data::sample::write_sample_dataset(&dir.join("data-files")).unwrap();
    std::fs::write(
        dir.join("lora.yaml"),
        "model: test-org/tiny-llama\ndata: data-files\niters: 1\nbatch_size: 2\nnum_layers: 1\n\
         steps_per_report: 1\nsteps_per_eval: 100\nval_batches: 1\nmax_seq_length: 64\n\
         adapter_path: adapters\nlora_parameters:\n  rank: 2\n",
    )
    .unwrap();
    // `loralab --data-dir <data> ARGS` against the stand-in Hub: whether
    // it succeeded, its stdout and its stderr.
    let loralab = |args: &[&str]| {
        let output = tokio::task::block_in_place(|| {
            std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
                .arg("--data-dir")
                .arg(&setup.data_dir)
                .args(args)
                .current_dir(&dir)
                .env("HF_ENDPOINT", &hub.url)
                .env("HF_HOME", &hf_home)
                .env_remove("HF_HUB_CACHE")
                .env_remove("HF_HUB_OFFLINE")
                .output()
                .unwrap()
        });
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (success, stdout, stderr) = loralab(&["train", "--config", "lora.yaml"]);
    assert!(success, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "Pulling test-org/tiny-llama from {} into {}",
            hub.url,
            hf_home.join("hub").display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("  model.safetensors: "), "{stderr}");
    assert!(stdout.contains("Iter 1: Train loss "), "{stdout}");
    assert!(dir.join("adapters/adapters.safetensors").is_file());

    // `models pull` registers it; every file is in the cache already.
    let files_before = hub.counters.files.load(Ordering::SeqCst);
    let (success, stdout, stderr) = loralab(&["models", "pull", "test-org/tiny-llama"]);
    assert!(success, "{stdout}\n{stderr}");
    let snapshot = hf_home.join(format!(
        "hub/models--test-org--tiny-llama/snapshots/{COMMIT}"
    ));
    assert_eq!(
        stdout.trim(),
        format!("test-org/tiny-llama\thub\t{}", snapshot.display())
    );
    assert!(
        stderr.contains("test-org/tiny-llama: every file is in the cache"),
        "{stderr}"
    );
    assert_eq!(hub.counters.files.load(Ordering::SeqCst), files_before);
    let (_, stdout, _) = loralab(&["models"]);
    assert!(stdout
        .lines()
        .any(|line| line.starts_with("test-org/tiny-llama\thub\t")));

    let (success, _, stderr) = loralab(&["models", "pull", "test-org/none"]);
    assert!(!success);
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "error: test-org/none: no such model repo on {}, or it is private (set HF_TOKEN to a token that can read it)",
            hub.url
        )
    );
}
