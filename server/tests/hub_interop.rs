//! A model we pull is one Python's tools find in the cache: huggingface_hub
//! resolves it offline to our snapshot, and mlx-lm loads it by repo id with
//! `HF_HUB_OFFLINE=1`; and what huggingface_hub downloads, we find offline
//! (needs the peer: scripts/setup-peer.sh).

mod fake_hub;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;

use fake_hub::{FakeHub, FakeRepo};
use server::hub::{HubSettings, HubSpec};

const COMMIT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

fn peer_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/peer-venv/bin/python");
    assert!(
        python.exists(),
        "the mlx-lm peer is missing: {} does not exist; run scripts/setup-peer.sh",
        python.display()
    );
    python
}

/// Runs a command that must succeed; its stdout, trimmed.
async fn stdout_of(command: &mut Command) -> String {
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

const PEER: &str = r#"
import json, os, sys
from huggingface_hub import snapshot_download, try_to_load_from_cache
repo = sys.argv[1]
snapshot = snapshot_download(repo, local_files_only=True)
weights = try_to_load_from_cache(repo, "model.safetensors")
from mlx_lm import load
import mlx.core as mx
model, tokenizer = load(repo)
logits = model(mx.array([tokenizer.encode("ahoy")]))
print(json.dumps({"snapshot": snapshot, "weights": weights, "vocab": logits.shape[-1]}))
"#;

// Multi-threaded: the stand-in Hub keeps serving while Python runs.
#[tokio::test(flavor = "multi_thread")]
async fn huggingface_hub_and_mlx_lm_use_what_we_pulled() {
    let python = peer_python();
    let temp = tempfile::tempdir().unwrap();
    let upstream = temp.path().join("upstream");
    let repo = FakeRepo::tiny_llama(&upstream, 9, COMMIT);
    let hub = FakeHub::start(vec![("test-org/tiny-llama", repo)], Duration::ZERO).await;
    let cache = temp.path().join("hub-cache");
    let settings = HubSettings {
        endpoint: hub.url.clone(),
        cache_dir: cache.clone(),
        token: None,
        offline: false,
        stall_timeout: Duration::from_secs(60),
    };
    let spec = HubSpec::parse("test-org/tiny-llama").unwrap();
    let pulled = server::hub::pull(&settings, &spec, Arc::new(|_| {}))
        .await
        .unwrap();

    // The other way: huggingface_hub downloads into a second cache, which
    // we then read offline.
    let python_cache = temp.path().join("python-cache");
    let downloaded = stdout_of(
        Command::new(&python)
            .args([
                "-c",
                "import os, sys; from huggingface_hub import hf_hub_download; \
                 names = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']; \
                 print(os.path.dirname([hf_hub_download(sys.argv[1], n) for n in names][0]))",
                "test-org/tiny-llama",
            ])
            .env("HF_HUB_CACHE", &python_cache)
            .env("HF_ENDPOINT", &hub.url)
            .env("HF_HUB_DISABLE_XET", "1")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_OFFLINE"),
    )
    .await;
    hub.stop().await;
    let offline = HubSettings {
        cache_dir: python_cache.clone(),
        offline: true,
        ..settings.clone()
    };
    let theirs = server::hub::pull(&offline, &spec, Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(theirs.path.display().to_string(), downloaded);
    engine::models::load_hf_folder(&theirs.path, Default::default()).unwrap();

    let answer = stdout_of(
        Command::new(&python)
            .args(["-c", PEER, "test-org/tiny-llama"])
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("HF_HOME")
            .env_remove("HF_ENDPOINT"),
    )
    .await;
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["snapshot"], pulled.path.display().to_string());
    assert_eq!(
        answer["weights"],
        pulled.path.join("model.safetensors").display().to_string()
    );
    assert_eq!(
        answer["vocab"].as_u64(),
        Some(engine::fixtures::VOCAB as u64)
    );
}
