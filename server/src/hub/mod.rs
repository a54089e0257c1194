//! Models from the Hugging Face Hub, pulled with the `hf-hub` crate into the
//! standard HF cache (shared with mlx-lm and transformers), and resolved from
//! that cache alone when offline.
//!
//! This lives in the server, not the engine: hf-hub's tokio API is async and
//! the server owns the runtime; workers only ever see the snapshot folder
//! (or GGUF file) a pull resolves to, as a plain path.

mod cache;
pub mod console;
mod download;
pub mod pulls;
mod spec;

use std::path::PathBuf;
use std::sync::Arc;

pub use cache::{default_cache_dir, missing_in_snapshot, CachedRepo};
pub use download::pull;
pub use spec::HubSpec;

pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

/// Files of a safetensors repo that Loralab uses besides the weights, when
/// the repo has them (config.json and tokenizer.json are required).
pub(crate) const SIDE_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// The weight files the engine loads from a folder without an index.
pub(crate) fn is_weight_file(name: &str) -> bool {
    !name.contains('/') && name.starts_with("model") && name.ends_with(".safetensors")
}

/// Where and how to reach the Hub; read from the environment variables
/// huggingface_hub uses, so one setting serves every tool.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// `HF_ENDPOINT`, default `https://huggingface.co`.
    pub endpoint: String,
    /// See `default_cache_dir`.
    pub cache_dir: PathBuf,
    /// `HF_TOKEN`, else the token file `huggingface-cli login` writes.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE=1`: never touch the network.
    pub offline: bool,
    /// How long the Hub may stay silent (no answer, no byte) before a pull
    /// gives up: `LORALAB_HUB_STALL_SECS`, default 60.
    pub stall_timeout: std::time::Duration,
}

impl HubSettings {
    pub fn from_env() -> Self {
        let env = |key| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        let token = env("HF_TOKEN").or_else(|| {
            let path = env("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| {
                env("HF_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        let cache = env("XDG_CACHE_HOME")
                            .map(PathBuf::from)
                            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
                            .unwrap_or_default();
                        cache.join("huggingface")
                    })
                    .join("token")
            });
            std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        Self {
            endpoint: env("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "https://huggingface.co".into()),
            cache_dir: default_cache_dir(),
            token,
            stall_timeout: std::time::Duration::from_secs(
                env("LORALAB_HUB_STALL_SECS")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(60),
            ),
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            }),
        }
    }
}

/// One file of a pull.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedFile {
    pub name: String,
    pub size: u64,
    /// Already whole in the cache: nothing to download.
    pub cached: bool,
}

/// What a pull reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// The files of this pull, before any byte is downloaded.
    Plan {
        commit: String,
        files: Vec<PlannedFile>,
    },
    /// `bytes` more of `file` are on disk.
    Bytes { file: String, bytes: u64 },
    /// `file` is whole in the cache.
    FileDone { file: String },
}

pub type ProgressFn = Arc<dyn Fn(HubEvent) + Send + Sync>;

/// A model in the cache, ready to load.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// The snapshot folder, or the GGUF file in it.
    pub path: PathBuf,
    pub commit: String,
    /// Nothing was downloaded (and, offline, nothing was asked of the Hub).
    pub from_cache: bool,
    pub downloaded_bytes: u64,
}

/// Why a pull failed; every message names the repo (and the file).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{repo}: no such model repo on {endpoint}, or it is private (set HF_TOKEN to a token that can read it)")]
    RepoNotFound { repo: String, endpoint: String },
    #[error("{repo} is gated: accept its terms on its Hub page, then set HF_TOKEN to a token of that account")]
    Gated { repo: String },
    #[error("{repo}: the Hub refused the request ({status}): set HF_TOKEN to a token that can read this repo")]
    Unauthorized { repo: String, status: u16 },
    #[error("{repo} has no revision {revision:?}")]
    RevisionNotFound { repo: String, revision: String },
    #[error("{repo} has no file {file:?}{}", available_ggufs(.available))]
    FileNotFound {
        repo: String,
        file: String,
        available: Vec<String>,
    },
    #[error("{repo} cannot be used: {reason}")]
    Unusable { repo: String, reason: String },
    #[error("{repo}: {reason}, and it is not in the Hugging Face cache {cache} (no snapshot for {revision:?})")]
    NotCached {
        repo: String,
        revision: String,
        reason: String,
        cache: String,
    },
    #[error("{repo}: {reason}, and its snapshot in the Hugging Face cache {snapshot} lacks {}", .missing.join(", "))]
    Incomplete {
        repo: String,
        reason: String,
        snapshot: String,
        missing: Vec<String>,
    },
    #[error("{repo}: the connection to the Hub at {endpoint} failed while downloading {file} ({message}); pull again to resume")]
    Network {
        repo: String,
        file: String,
        endpoint: String,
        message: String,
    },
    #[error("{repo}: the Hub sent nothing for {seconds} s while {file} was downloading; pull again to resume")]
    Stalled {
        repo: String,
        file: String,
        seconds: f64,
    },
    #[error("{repo}: the Hub answered {status} for {file}")]
    Http {
        repo: String,
        file: String,
        status: u16,
    },
    #[error("{repo}: the disk is full: no space left for {file} in {cache}")]
    DiskFull {
        repo: String,
        file: String,
        cache: String,
    },
    #[error("{repo}: not enough disk space for the Hugging Face cache {cache}: the download needs {needed}, {available} is free")]
    NoRoom {
        repo: String,
        cache: String,
        needed: String,
        available: String,
    },
    #[error("{repo}: cannot write {file} into the cache {cache}: {message}")]
    Io {
        repo: String,
        file: String,
        cache: String,
        message: String,
    },
    #[error("{repo}: {message}")]
    Other { repo: String, message: String },
}

fn available_ggufs(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!(" (its GGUF files: {})", available.join(", "))
    }
}
