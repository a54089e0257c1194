//! The real binary serves its first page, the health API and its assets,
//! and prepares a real SQLite database in the data dir.

mod common;

use common::Server;

#[tokio::test]
async fn serves_dashboard_health_and_assets() {
    let server = Server::start(&[]);
    let client = reqwest::Client::new();

    let page = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<h1>Runs</h1>"), "{html}");
    assert!(html.contains("No runs yet"), "{html}");
    assert!(html.contains(r#"href="/assets/app.css""#));
    assert!(
        !html.contains("__wasm") && !html.contains("hydrate"),
        "pages must not ship hydration scripts"
    );

    let health: serde_json::Value = client
        .get(server.url("/api/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["device"], "cpu", "this machine has no GPU: {health}");

    let css = client
        .get(server.url("/assets/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    let missing = client
        .get(server.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("Not found"));

    let database = server.data_dir.join("loralab.sqlite3");
    assert!(database.is_file(), "no database at {}", database.display());
    let header = std::fs::read(&database).unwrap();
    assert!(header.starts_with(b"SQLite format 3\0"));
}

/// The shipped SmolLM2 GGUF (installed by scripts/setup.sh; cargo's config
/// passes its path). Only its header is read here.
fn shipped_model() -> &'static str {
    env!("LORALAB_DEFAULT_MODEL")
}

#[tokio::test]
async fn registers_the_default_model_once() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let model_arg = shipped_model();
    for _ in 0..2 {
        let server = Server::start_in(data_dir.clone(), &["--default-model", model_arg]);
        drop(server);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["models", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    let listing = String::from_utf8(output.stdout).unwrap();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(
        listing.starts_with("SmolLM2-135M-Instruct\tgguf\t"),
        "{listing}"
    );
    assert!(listing.contains("SmolLM2-135M-Instruct.Q4_1.gguf"));
}

#[test]
fn a_corrupt_default_model_is_a_clear_error() {
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("broken.gguf");
    std::fs::write(&model, b"not a gguf file at all").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(temp.path().join("data"))
        .arg("--default-model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.gguf is not a usable GGUF"),
        "{stderr}"
    );
}

#[test]
fn missing_default_model_is_a_clear_error() {
    let temp = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(temp.path())
        .args(["--default-model", "/nonexistent/model.gguf"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("default model /nonexistent/model.gguf is missing"),
        "{stderr}"
    );
}
