#![allow(dead_code)]
//! A stand-in for the Hugging Face Hub's HTTP API (the network is closed
//! in tests): `GET /api/models/{org}/{name}/revision/{rev}` with siblings
//! and sizes, and `GET /{org}/{name}/resolve/{rev}/{file}` with the headers
//! hf-hub reads (`ETag` = the content's sha256 as for LFS files,
//! `X-Repo-Commit`, `Content-Range` on ranged requests). Unknown repos get
//! the Hub's 401 + `X-Error-Code: RepositoryNotFound`. It counts requests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct FakeRepo {
    pub commit: String,
    pub files: Vec<(String, Vec<u8>)>,
}

impl FakeRepo {
    /// Every file of a folder (not recursive), under its file name.
    pub fn from_folder(dir: &Path, commit: &str) -> Self {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    std::fs::read(entry.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        Self {
            commit: commit.into(),
            files,
        }
    }

    /// A tiny random Llama (`seed`) written to `dir`, as a repo at `commit`.
    pub fn tiny_llama(dir: &Path, seed: u64, commit: &str) -> Self {
        engine::fixtures::write_tiny_llama(dir, seed).unwrap();
        Self::from_folder(dir, commit)
    }

    pub fn size_of(&self, name: &str) -> u64 {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.len() as u64)
            .unwrap()
    }
}

#[derive(Default)]
pub struct Counters {
    /// `api/models/...` requests.
    pub info: AtomicUsize,
    /// `resolve/...` requests (hf-hub's metadata probe and its ranged GETs).
    pub files: AtomicUsize,
}

struct HubState {
    repos: HashMap<String, FakeRepo>,
    counters: Arc<Counters>,
    /// Files answered with a 500 instead of their bytes (metadata still works).
    broken: Mutex<Vec<String>>,
    /// Files whose connection drops after half their bytes.
    cut: Mutex<Vec<String>>,
    /// Sizes the file list claims instead of the real ones.
    claimed: Mutex<HashMap<String, u64>>,
    /// Repos whose main branch moved to another commit (same files).
    moved: Mutex<HashMap<String, String>>,
    /// Wait before each ranged file answer (to watch a pull in flight).
    delay: Duration,
}

pub struct FakeHub {
    pub url: String,
    pub counters: Arc<Counters>,
    state: Arc<HubState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeHub {
    pub async fn start(repos: Vec<(&str, FakeRepo)>, delay: Duration) -> Self {
        let counters = Arc::new(Counters::default());
        let state = Arc::new(HubState {
            repos: repos
                .into_iter()
                .map(|(id, repo)| (id.to_string(), repo))
                .collect(),
            counters: counters.clone(),
            broken: Mutex::new(Vec::new()),
            cut: Mutex::new(Vec::new()),
            claimed: Mutex::new(HashMap::new()),
            moved: Mutex::new(HashMap::new()),
            delay,
        });
        let app = Router::new()
            .route("/api/models/{org}/{name}/revision/{*rev}", get(info))
            .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            counters,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn break_file(&self, name: &str) {
        self.state.broken.lock().unwrap().push(name.into());
    }

    pub fn cut_file(&self, name: &str) {
        self.state.cut.lock().unwrap().push(name.into());
    }

    /// A new commit on main with the same files (say, a README edit).
    pub fn move_main(&self, repo: &str, commit: &str) {
        self.state
            .moved
            .lock()
            .unwrap()
            .insert(repo.into(), commit.into());
    }

    /// The file list says `name` has `size` bytes.
    pub fn claim_size(&self, name: &str, size: u64) {
        self.state.claimed.lock().unwrap().insert(name.into(), size);
    }

    pub fn mend(&self) {
        self.state.claimed.lock().unwrap().clear();
        self.state.broken.lock().unwrap().clear();
        self.state.cut.lock().unwrap().clear();
    }

    /// Closes the listener: the Hub becomes unreachable.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn not_found() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("x-error-code", "RepositoryNotFound")],
        Json(serde_json::json!({"error": "Repository Not Found"})),
    )
        .into_response()
}

async fn info(
    State(state): State<Arc<HubState>>,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
) -> Response {
    state.counters.info.fetch_add(1, Ordering::SeqCst);
    // As the Hub answers for a gated repo without an accepted token, and
    // for a branch that does not exist.
    if name.starts_with("gated") {
        return (
            StatusCode::FORBIDDEN,
            [("x-error-code", "GatedRepo")],
            "gated",
        )
            .into_response();
    }
    let Some(repo) = state.repos.get(&format!("{org}/{name}")) else {
        return not_found();
    };
    let commit = state
        .moved
        .lock()
        .unwrap()
        .get(&format!("{org}/{name}"))
        .cloned()
        .unwrap_or_else(|| repo.commit.clone());
    if rev != "main" && rev != commit {
        return (
            StatusCode::NOT_FOUND,
            [("x-error-code", "RevisionNotFound")],
            "Invalid rev id",
        )
            .into_response();
    }
    let siblings: Vec<serde_json::Value> = repo
        .files
        .iter()
        .map(|(name, bytes)| {
            let claimed = state.claimed.lock().unwrap().get(name).copied();
            serde_json::json!({
                "rfilename": name,
                "size": claimed.unwrap_or(bytes.len() as u64),
                "lfs": {"sha256": sha256_hex(bytes), "size": bytes.len()},
            })
        })
        .collect();
    Json(serde_json::json!({
        "id": format!("{org}/{name}"),
        "sha": commit,
        "siblings": siblings,
    }))
    .into_response()
}

async fn resolve(
    State(state): State<Arc<HubState>>,
    UrlPath((org, name, _rev, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    state.counters.files.fetch_add(1, Ordering::SeqCst);
    let Some(repo) = state.repos.get(&format!("{org}/{name}")) else {
        return not_found();
    };
    let Some((_, bytes)) = repo.files.iter().find(|(n, _)| *n == file) else {
        return (
            StatusCode::NOT_FOUND,
            [("x-error-code", "EntryNotFound")],
            "Entry not found",
        )
            .into_response();
    };
    let commit = state
        .moved
        .lock()
        .unwrap()
        .get(&format!("{org}/{name}"))
        .cloned()
        .unwrap_or_else(|| repo.commit.clone());
    let len = bytes.len();
    let (start, end) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .map(|(a, b)| {
            let start: usize = a.parse().unwrap_or(0);
            // hf-hub may ask one byte past the end; HTTP says clamp.
            let end: usize = b.parse().unwrap_or(len - 1);
            (start, end.min(len - 1))
        })
        .unwrap_or((0, len - 1));
    let probe = start == 0 && end == 0;
    if !probe {
        if !state.delay.is_zero() {
            tokio::time::sleep(state.delay).await;
        }
        if state.broken.lock().unwrap().contains(&file) {
            return (StatusCode::INTERNAL_SERVER_ERROR, "broken on purpose").into_response();
        }
        if state.cut.lock().unwrap().contains(&file) {
            // Promise the whole range, send half, then fail the body: the
            // client sees the connection drop mid-file.
            let range = &bytes[start..=end];
            let half = range[..range.len() / 2].to_vec();
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                vec![Ok(half), Err(std::io::Error::other("cut on purpose"))];
            return (
                StatusCode::PARTIAL_CONTENT,
                [
                    (header::ETAG, format!("\"{}\"", sha256_hex(bytes))),
                    (
                        header::HeaderName::from_static("x-repo-commit"),
                        commit.clone(),
                    ),
                    (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
                    (header::CONTENT_LENGTH, (end - start + 1).to_string()),
                ],
                axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
            )
                .into_response();
        }
    }
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::ETAG, format!("\"{}\"", sha256_hex(bytes))),
            (
                header::HeaderName::from_static("x-repo-commit"),
                commit.clone(),
            ),
            (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        bytes[start..=end].to_vec(),
    )
        .into_response()
}
