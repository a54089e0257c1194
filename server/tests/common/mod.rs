#![allow(dead_code)]
//! Helpers shared by the integration tests: the real `loralab` binary on
//! port 0 with a fresh data dir.

pub mod inference_worker;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running `loralab serve`, killed when dropped.
pub struct Server {
    pub base_url: String,
    pub data_dir: PathBuf,
    child: Child,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the server on a free port with a new, empty data dir.
    pub fn start(extra_args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::start_in(data_dir, extra_args);
        server._temp = Some(temp);
        server
    }

    /// Starts the server on a free port with the given data dir.
    pub fn start_in(data_dir: PathBuf, extra_args: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra_args, &[])
    }

    /// Starts the server with extra environment variables (supervisor settings).
    pub fn start_with_env(data_dir: PathBuf, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loralab"))
            .envs(env.iter().copied())
            .arg("serve")
            .args(["--port", "0", "--data-dir"])
            .arg(&data_dir)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn loralab");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base_url = loop {
            let line = lines
                .next()
                .expect("loralab exited before printing its URL")
                .expect("read stdout");
            if let Some(url) = line.strip_prefix("Loralab is serving on ") {
                break url.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            base_url,
            data_dir,
            child,
            _temp: None,
        }
    }

    /// The server process's id (benches read its peak RSS).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// SIGKILLs the server (its workers live on until they notice).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data dir with a tiny random Llama registered as the model `tiny`.
pub struct TinySetup {
    pub temp: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub model_dir: PathBuf,
}

impl TinySetup {
    /// `loralab serve` on this data dir, with environment variables
    /// (supervisor and inference settings).
    pub fn serve(&self, env: &[(&str, &str)]) -> Server {
        Server::start_with_env(self.data_dir.clone(), &[], env)
    }
}

pub fn tiny_setup() -> TinySetup {
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let model_dir = temp.path().join("tiny-llama");
    engine::fixtures::write_tiny_llama(&model_dir, 11).expect("tiny model");
    let (_, store) = server::setup::prepare(&data_dir, None).expect("data dir");
    store
        .upsert_model(&server::store::NewModel {
            name: "tiny".into(),
            source: "folder".into(),
            location: model_dir.display().to_string(),
            architecture: Some("llama".into()),
            parameters: None,
            quantization: None,
            size_bytes: None,
            builtin: false,
        })
        .expect("register tiny");
    TinySetup {
        temp,
        data_dir,
        model_dir,
    }
}

/// A run request on the tiny model and the sample dataset; `extra` keys
/// override the defaults.
pub fn tiny_run(extra: serde_json::Value) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": "tiny",
        "dataset": "sample-ahoy",
        "batch_size": 4,
        "max_seq_length": 128,
        "learning_rate": 1e-3,
        "num_layers": -1,
        "steps_per_report": 1,
        "steps_per_eval": 5,
        "val_batches": 1,
        "save_every": 5,
        "lora_parameters": {"rank": 4, "scale": 10.0},
    });
    for (key, value) in extra.as_object().expect("object") {
        body[key] = value.clone();
    }
    body
}

/// The owner's token of a server started with `--lan`.
pub fn owner_token(server: &Server) -> String {
    std::fs::read_to_string(server.data_dir.join("access/owner.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = client.get(url).send().await.expect("GET");
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.expect("JSON")
}

/// GETs `url`: the answer's status.
pub async fn get_status(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

/// GETs a page that must answer 200; its HTML.
pub async fn page(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.text().await.unwrap()
}

/// The role badge's text in a rendered page.
pub fn badge(html: &str) -> &str {
    let at = html.find(r#"id="role""#).expect("a role badge");
    let text = &html[at..];
    let start = text.find('>').unwrap() + 1;
    let end = text.find("</span>").unwrap();
    &text[start..end]
}

/// The `name` of each item of a JSON list (models, datasets).
pub fn names(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect()
}

/// Sends a request and reads the answer's body as text, whatever its status.
pub async fn text_of(request: reqwest::RequestBuilder) -> String {
    request.send().await.unwrap().text().await.unwrap()
}

/// POSTs `body` as JSON: the answer's status and its JSON body.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Creates a run (`POST /api/runs`), which must answer 201; its id.
pub async fn create_run(client: &reqwest::Client, server: &Server, body: serde_json::Value) -> i64 {
    let (status, run) = post_json(client, &server.url("/api/runs"), body).await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_i64().expect("a run id")
}

/// POSTs a run action without a body (`stop`, `resume`): the answer's status.
pub async fn run_action(client: &reqwest::Client, server: &Server, id: i64, action: &str) -> u16 {
    client
        .post(server.url(&format!("/api/runs/{id}/{action}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Stops run `id`, which must answer 200, and waits until it is stopped;
/// the stopped run.
pub async fn stop_run(client: &reqwest::Client, server: &Server, id: i64) -> serde_json::Value {
    assert_eq!(run_action(client, server, id, "stop").await, 200);
    wait_for_status(client, server, id, 300, "stopped").await
}

/// Polls `GET url` until `done(answer)` holds; panics after `secs` (a
/// guard against hangs, not a speed check: a loaded 2-core machine trains
/// the tiny model several times slower than a quiet one).
pub async fn poll_json(
    client: &reqwest::Client,
    url: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let answer = get_json(client, url).await;
        if done(&answer) {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never reached {what}: {answer:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Polls `GET /api/runs/{id}` until `done(run)` holds; panics after `secs`.
pub async fn wait_for(
    client: &reqwest::Client,
    server: &Server,
    id: i64,
    secs: u64,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    poll_json(
        client,
        &server.url(&format!("/api/runs/{id}")),
        secs,
        what,
        done,
    )
    .await
}

/// Waits until run `id` has `status`; panics after `secs`.
pub async fn wait_for_status(
    client: &reqwest::Client,
    server: &Server,
    id: i64,
    secs: u64,
    status: &str,
) -> serde_json::Value {
    wait_for(client, server, id, secs, status, |run| {
        run["status"] == status
    })
    .await
}

/// Trains the tiny model for 6 steps on one rank, then again with
/// `ranks` (`{"gpus": 2}`, a two-host machine set) on two, and checks that
/// the second run logs both ranks and has the first's train loss at every
/// step (1e-4 relative). Returns the two-rank run's id and view.
pub async fn two_ranks_train_as_one(
    client: &reqwest::Client,
    server: &Server,
    ranks: serde_json::Value,
) -> (i64, serde_json::Value) {
    let one = create_run(client, server, tiny_run(serde_json::json!({"iters": 6}))).await;
    wait_for_status(client, server, one, 300, "done").await;
    let mut settings = serde_json::json!({"iters": 6});
    settings.as_object_mut().unwrap().extend(
        ranks
            .as_object()
            .expect("rank settings are an object")
            .clone(),
    );
    let two = create_run(client, server, tiny_run(settings)).await;
    let run = wait_for_status(client, server, two, 300, "done").await;
    let tail = run["log_tail"].as_str().unwrap();
    assert!(tail.contains("[rank 0] Rank 0 of 2 (ring)"), "{tail}");
    assert!(tail.contains("[rank 1] Rank 1 of 2 (ring)"), "{tail}");

    let train_losses = |metrics: serde_json::Value| -> Vec<f64> {
        metrics["reports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["train_loss"].as_f64().unwrap())
            .collect()
    };
    let url = |id: i64| server.url(&format!("/api/runs/{id}/metrics.json"));
    let alone = train_losses(get_json(client, &url(one)).await);
    let together = train_losses(get_json(client, &url(two)).await);
    assert_eq!(alone.len(), 6);
    assert_eq!(alone.len(), together.len());
    for (step, (a, b)) in alone.iter().zip(&together).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "step {}: {a} vs {b}",
            step + 1
        );
    }
    (two, run)
}

/// Follows a comparison's SSE stream until `stop` says so.
pub async fn follow_comparison(
    client: &reqwest::Client,
    server: &Server,
    id: i64,
    stop: impl Fn(&(i64, String, String)) -> bool,
) -> Vec<(i64, String, String)> {
    let response = client
        .get(server.url(&format!("/api/compare/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    read_sse(response, stop).await
}

/// The `status` of each SSE event (the runs list's updates).
pub fn statuses(events: &[(i64, String, String)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, _, data)| {
            serde_json::from_str::<serde_json::Value>(data).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Sends only the head of a POST to `address` (host:port) that declares
/// `length` bytes, with `headers` (each `Name: value\r\n`), and reads the
/// answer: the server must refuse without waiting for the body.
pub async fn post_head_only(address: &str, path: &str, length: u64, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Content-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.read_to_end(&mut answer),
    )
    .await
    .expect("the server waited for a body it must refuse")
    .unwrap();
    String::from_utf8(answer).unwrap()
}

/// Reads SSE frames from a response until `stop` says so: (id, event, data).
pub async fn read_sse(
    response: reqwest::Response,
    stop: impl Fn(&(i64, String, String)) -> bool,
) -> Vec<(i64, String, String)> {
    use futures_util::StreamExt;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("SSE timed out")
            .expect("SSE ended early")
            .expect("SSE chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (0, String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().unwrap();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.is_empty() {
                continue; // keep-alive comment
            }
            let item = (id, event, data);
            let last = stop(&item);
            events.push(item);
            if last {
                return events;
            }
        }
    }
}
