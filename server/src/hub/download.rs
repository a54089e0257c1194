//! A pull: ask the Hub which commit a revision is and which files it has,
//! skip what the cache already holds, download the rest with hf-hub
//! (which keeps a partial file as `blobs/<etag>.sync.part` and links a
//! finished one into `snapshots/<commit>/`), and fall back to the cache
//! when offline or when the Hub cannot be reached.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hf_hub::api::tokio::{Api, ApiBuilder, ApiError, Progress};
use hf_hub::{Repo, RepoType};
use serde::Deserialize;

use super::cache::{missing_in_snapshot, present, shards_of_index, CachedRepo};
use super::{
    is_weight_file, HubError, HubEvent, HubSettings, HubSpec, PlannedFile, ProgressFn, Pulled,
    INDEX_FILE, SIDE_FILES,
};

/// The Hub's `api/models/{repo}/revision/{rev}?blobs=true` answer, the
/// parts used here.
#[derive(Debug, Deserialize)]
struct RepoInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Debug, Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    /// The git blob id: the cache's blob name for a file kept in git.
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, Deserialize)]
struct Lfs {
    sha256: String,
}

impl Sibling {
    /// The name of this file's blob in the cache (its ETag): the sha256 of
    /// an LFS file, else the git blob id.
    fn etag(&self) -> Option<&str> {
        self.lfs
            .as_ref()
            .map(|lfs| lfs.sha256.as_str())
            .or(self.blob_id.as_deref())
    }
}

/// Resolves `spec` to a model in the cache, downloading what is missing.
/// `progress` hears the plan, then bytes as they land.
pub async fn pull(
    settings: &HubSettings,
    spec: &HubSpec,
    progress: ProgressFn,
) -> Result<Pulled, HubError> {
    if settings.offline {
        return from_cache(settings, spec, "HF_HUB_OFFLINE is set", &progress);
    }
    let api = ApiBuilder::new()
        .with_endpoint(settings.endpoint.clone())
        .with_cache_dir(settings.cache_dir.clone())
        .with_token(settings.token.clone())
        .with_progress(false)
        .build()
        .map_err(|e| other(spec, format!("cannot set up the Hub client: {e}")))?;
    let repo = Repo::with_revision(spec.repo.clone(), RepoType::Model, spec.revision().into());
    let info = match fetch_info(&api, &repo, settings, spec).await {
        Ok(info) => info,
        Err(Fetch::Unreachable(message)) => {
            let reason = format!(
                "the Hub at {} cannot be reached ({message})",
                settings.endpoint
            );
            return from_cache(settings, spec, &reason, &progress);
        }
        Err(Fetch::Refused(error)) => return Err(error),
    };
    let cached = CachedRepo::new(&settings.cache_dir, &spec.repo);
    let snapshot = cached.snapshot(&info.sha);
    let sizes: HashMap<&str, u64> = info
        .siblings
        .iter()
        .map(|s| (s.rfilename.as_str(), s.size.unwrap_or(0)))
        .collect();
    let mut names = choose_files(spec, &info)?;
    let api_repo = api.repo(repo);
    let mut downloaded = 0;
    if names.iter().any(|name| name == INDEX_FILE) {
        // The index says which shards to fetch; it is small, so it comes
        // first and outside the plan's byte count.
        if !present(&snapshot.join(INDEX_FILE)) {
            let path = fetch(&api_repo, INDEX_FILE, settings, spec, None).await?;
            check_snapshot(&path, &snapshot, spec, INDEX_FILE)?;
            downloaded += sizes.get(INDEX_FILE).copied().unwrap_or(0);
        }
        let shards =
            shards_of_index(&snapshot.join(INDEX_FILE)).map_err(|why| HubError::Unusable {
                repo: spec.repo.clone(),
                reason: format!("{INDEX_FILE}: {why}"),
            })?;
        names.retain(|name| !is_weight_file(name));
        for shard in shards {
            if !sizes.contains_key(shard.as_str()) {
                return Err(HubError::Unusable {
                    repo: spec.repo.clone(),
                    reason: format!("{INDEX_FILE} names {shard}, which the repo does not have"),
                });
            }
            names.push(shard);
        }
    }
    let etags: HashMap<&str, &str> = info
        .siblings
        .iter()
        .filter_map(|s| Some((s.rfilename.as_str(), s.etag()?)))
        .collect();
    let files: Vec<PlannedFile> = names
        .iter()
        .map(|name| PlannedFile {
            name: name.clone(),
            size: sizes.get(name.as_str()).copied().unwrap_or(0),
            cached: present(&snapshot.join(name))
                || etags
                    .get(name.as_str())
                    .is_some_and(|etag| link_blob(&cached, &snapshot, name, etag)),
        })
        .collect();
    let needed: u64 = files.iter().filter(|f| !f.cached).map(|f| f.size).sum();
    check_room(settings, spec, needed)?;
    progress(HubEvent::Plan {
        commit: info.sha.clone(),
        files: files.clone(),
    });
    for file in files.iter().filter(|f| !f.cached) {
        let path = fetch(&api_repo, &file.name, settings, spec, Some(&progress)).await?;
        check_snapshot(&path, &snapshot, spec, &file.name)?;
        downloaded += file.size;
    }
    cached
        .write_ref(spec.revision(), &info.sha)
        .map_err(|e| io_error(spec, "its ref", settings, e))?;
    let missing = missing_in_snapshot(&snapshot, spec);
    if !missing.is_empty() {
        return Err(HubError::Incomplete {
            repo: spec.repo.clone(),
            reason: "after the download".into(),
            snapshot: snapshot.display().to_string(),
            missing,
        });
    }
    Ok(Pulled {
        path: match &spec.file {
            Some(file) => snapshot.join(file),
            None => snapshot,
        },
        commit: info.sha,
        from_cache: downloaded == 0,
        downloaded_bytes: downloaded,
    })
}

/// A file unchanged since another commit is already a blob: link it into
/// this commit's snapshot (as huggingface_hub does) instead of fetching it
/// again. `true` when the snapshot now has it.
fn link_blob(cached: &CachedRepo, snapshot: &Path, name: &str, etag: &str) -> bool {
    if etag.is_empty() || etag.contains(['/', '.']) {
        return false;
    }
    if !present(&cached.dir.join("blobs").join(etag)) {
        return false;
    }
    let link = snapshot.join(name);
    let Some(parent) = link.parent() else {
        return false;
    };
    // From snapshots/<commit>/<name> back up to the repo folder.
    let depth = Path::new(name).components().count() + 1;
    let target = Path::new(&"../".repeat(depth)).join("blobs").join(etag);
    std::fs::create_dir_all(parent).is_ok()
        && std::os::unix::fs::symlink(&target, &link).is_ok()
        && present(&link)
}

/// Refuses a download the cache's file system cannot hold, before any
/// byte lands (hf-hub preallocates sparse files, so a full disk would
/// otherwise show only midway).
fn check_room(settings: &HubSettings, spec: &HubSpec, needed: u64) -> Result<(), HubError> {
    let existing = settings
        .cache_dir
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("/"));
    let Ok(stats) = rustix::fs::statvfs(existing) else {
        // Unknown: the download itself will say if the disk fills up.
        return Ok(());
    };
    let available = stats.f_bavail.saturating_mul(stats.f_frsize);
    if needed > available {
        return Err(HubError::NoRoom {
            repo: spec.repo.clone(),
            cache: settings.cache_dir.display().to_string(),
            needed: crate::models::format_size(needed),
            available: crate::models::format_size(available),
        });
    }
    Ok(())
}

/// The model from the cache alone (no network call): the snapshot the
/// revision's ref points at, if it holds everything a load needs.
fn from_cache(
    settings: &HubSettings,
    spec: &HubSpec,
    reason: &str,
    progress: &ProgressFn,
) -> Result<Pulled, HubError> {
    let cached = CachedRepo::new(&settings.cache_dir, &spec.repo);
    let Some(commit) = cached.commit_of(spec.revision()) else {
        return Err(HubError::NotCached {
            repo: spec.repo.clone(),
            revision: spec.revision().into(),
            reason: reason.into(),
            cache: settings.cache_dir.display().to_string(),
        });
    };
    let snapshot = cached.snapshot(&commit);
    let missing = missing_in_snapshot(&snapshot, spec);
    if !missing.is_empty() {
        return Err(HubError::Incomplete {
            repo: spec.repo.clone(),
            reason: reason.into(),
            snapshot: snapshot.display().to_string(),
            missing,
        });
    }
    let files = std::fs::read_dir(&snapshot)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| present(&e.path()))
                .map(|e| PlannedFile {
                    name: e.file_name().to_string_lossy().into_owned(),
                    size: std::fs::metadata(e.path()).map_or(0, |m| m.len()),
                    cached: true,
                })
                .collect()
        })
        .unwrap_or_default();
    progress(HubEvent::Plan {
        commit: commit.clone(),
        files,
    });
    Ok(Pulled {
        path: match &spec.file {
            Some(file) => snapshot.join(file),
            None => snapshot,
        },
        commit,
        from_cache: true,
        downloaded_bytes: 0,
    })
}

enum Fetch {
    /// No answer at all: the cache may still serve.
    Unreachable(String),
    /// The Hub answered, and said no.
    Refused(HubError),
}

async fn fetch_info(
    api: &Api,
    repo: &Repo,
    settings: &HubSettings,
    spec: &HubSpec,
) -> Result<RepoInfo, Fetch> {
    let response = api
        .repo(repo.clone())
        .info_request()
        .query(&[("blobs", "true")])
        .timeout(settings.stall_timeout)
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                Fetch::Unreachable(root_cause(&e))
            } else {
                Fetch::Refused(other(
                    spec,
                    format!("asking the Hub about it failed: {}", root_cause(&e)),
                ))
            }
        })?;
    let status = response.status();
    if status.is_success() {
        return response.json::<RepoInfo>().await.map_err(|e| {
            Fetch::Refused(other(
                spec,
                format!("the Hub's answer about it is not understood: {e}"),
            ))
        });
    }
    // The Hub says why in `X-Error-Code` (huggingface_hub reads it too):
    // an unknown and a private repo look the same to a stranger.
    let code = response
        .headers()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let repo_id = spec.repo.clone();
    Err(Fetch::Refused(match (code.as_str(), status.as_u16()) {
        ("GatedRepo", _) => HubError::Gated { repo: repo_id },
        ("RevisionNotFound", _) => HubError::RevisionNotFound {
            repo: repo_id,
            revision: spec.revision().into(),
        },
        ("RepoNotFound" | "RepositoryNotFound", _) | (_, 404) => HubError::RepoNotFound {
            repo: repo_id,
            endpoint: settings.endpoint.clone(),
        },
        (_, status @ (401 | 403)) => HubError::Unauthorized {
            repo: repo_id,
            status,
        },
        (_, status) => HubError::Http {
            repo: repo_id,
            file: "its file list".into(),
            status,
        },
    }))
}

/// The files to download: the named GGUF file; or config, tokenizer and
/// side files the repo has, the index if any, and `model*.safetensors`.
fn choose_files(spec: &HubSpec, info: &RepoInfo) -> Result<Vec<String>, HubError> {
    let has = |name: &str| info.siblings.iter().any(|s| s.rfilename == name);
    let ggufs: Vec<String> = info
        .siblings
        .iter()
        .map(|s| s.rfilename.clone())
        .filter(|name| name.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    if let Some(file) = &spec.file {
        if !has(file) {
            return Err(HubError::FileNotFound {
                repo: spec.repo.clone(),
                file: file.clone(),
                available: ggufs,
            });
        }
        return Ok(vec![file.clone()]);
    }
    let weights: Vec<String> = info
        .siblings
        .iter()
        .map(|s| s.rfilename.clone())
        .filter(|name| is_weight_file(name))
        .collect();
    let unusable = |reason: String| HubError::Unusable {
        repo: spec.repo.clone(),
        reason,
    };
    if weights.is_empty() {
        return Err(unusable(match ggufs.first() {
            Some(first) => format!(
                "it has no model*.safetensors weights but GGUF files ({}): name one, as {}/{first}",
                ggufs.join(", "),
                spec.repo
            ),
            None => "it has no model*.safetensors weights (and no GGUF file)".into(),
        }));
    }
    for required in ["config.json", "tokenizer.json"] {
        if !has(required) {
            return Err(unusable(format!("it has no {required}")));
        }
    }
    let mut names: Vec<String> = SIDE_FILES
        .iter()
        .filter(|name| has(name))
        .map(|name| name.to_string())
        .collect();
    if has(INDEX_FILE) {
        names.push(INDEX_FILE.into());
    }
    names.extend(weights);
    Ok(names)
}

/// hf-hub's progress hook, per file; it also notes when bytes last came.
#[derive(Clone)]
struct FileProgress {
    file: String,
    sink: Option<ProgressFn>,
    last_byte: Arc<Mutex<Instant>>,
}

impl Progress for FileProgress {
    async fn init(&mut self, _size: usize, _filename: &str) {}

    async fn update(&mut self, size: usize) {
        *self.last_byte.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if let Some(sink) = &self.sink {
            sink(HubEvent::Bytes {
                file: self.file.clone(),
                bytes: size as u64,
            });
        }
    }

    async fn finish(&mut self) {
        if let Some(sink) = &self.sink {
            sink(HubEvent::FileDone {
                file: self.file.clone(),
            });
        }
    }
}

async fn fetch(
    repo: &hf_hub::api::tokio::ApiRepo,
    file: &str,
    settings: &HubSettings,
    spec: &HubSpec,
    progress: Option<&ProgressFn>,
) -> Result<std::path::PathBuf, HubError> {
    let last_byte = Arc::new(Mutex::new(Instant::now()));
    let hook = FileProgress {
        file: file.to_string(),
        sink: progress.cloned(),
        last_byte: last_byte.clone(),
    };
    // hf-hub's client has no timeout, and a big file may take hours; what
    // ends a dead connection is silence.
    let stalled = async {
        loop {
            let since = last_byte
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed();
            if since >= settings.stall_timeout {
                return;
            }
            tokio::time::sleep(settings.stall_timeout - since).await;
        }
    };
    tokio::select! {
        done = repo.download_with_progress(file, hook) => {
            done.map_err(|error| download_error(error, file, settings, spec))
        }
        () = stalled => Err(HubError::Stalled {
            repo: spec.repo.clone(),
            file: file.to_string(),
            seconds: settings.stall_timeout.as_secs_f64(),
        }),
    }
}

/// hf-hub links the file under the commit its server named; a different
/// one means the revision moved during the pull.
fn check_snapshot(
    path: &Path,
    snapshot: &Path,
    spec: &HubSpec,
    file: &str,
) -> Result<(), HubError> {
    if path.starts_with(snapshot) {
        return Ok(());
    }
    Err(other(
        spec,
        format!(
            "{} moved to another commit while {file} was downloading; pull again",
            spec.revision()
        ),
    ))
}

fn download_error(error: ApiError, file: &str, settings: &HubSettings, spec: &HubSpec) -> HubError {
    match error {
        ApiError::RequestError(e) => match e.status() {
            Some(status) => HubError::Http {
                repo: spec.repo.clone(),
                file: file.into(),
                status: status.as_u16(),
            },
            None => HubError::Network {
                repo: spec.repo.clone(),
                file: file.into(),
                endpoint: settings.endpoint.clone(),
                message: root_cause(&e),
            },
        },
        ApiError::IoError(e) => io_error(spec, file, settings, e),
        ApiError::TooManyRetries(inner) => download_error(*inner, file, settings, spec),
        ApiError::LockAcquisition(path) => other(
            spec,
            format!(
                "{file} is being downloaded by another program (lock {}); try again when it is done",
                path.display()
            ),
        ),
        other_error => other(spec, format!("downloading {file} failed: {other_error}")),
    }
}

fn io_error(spec: &HubSpec, file: &str, settings: &HubSettings, error: std::io::Error) -> HubError {
    let cache = settings.cache_dir.display().to_string();
    // ENOSPC (28) and EDQUOT (122): out of room either way.
    if error.kind() == std::io::ErrorKind::StorageFull
        || matches!(error.raw_os_error(), Some(28 | 122))
    {
        return HubError::DiskFull {
            repo: spec.repo.clone(),
            file: file.into(),
            cache,
        };
    }
    HubError::Io {
        repo: spec.repo.clone(),
        file: file.into(),
        cache,
        message: error.to_string(),
    }
}

fn other(spec: &HubSpec, message: String) -> HubError {
    HubError::Other {
        repo: spec.repo.clone(),
        message,
    }
}

/// reqwest's own message is "error sending request"; the reason is below.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_as_such() {
        let settings = HubSettings {
            endpoint: "http://hub.invalid".into(),
            cache_dir: "/cache/hub".into(),
            token: None,
            offline: false,
            stall_timeout: std::time::Duration::from_secs(60),
        };
        let spec = HubSpec::parse("org/name").unwrap();
        let full = io_error(
            &spec,
            "model.safetensors",
            &settings,
            std::io::Error::from_raw_os_error(28),
        );
        assert_eq!(
            full.to_string(),
            "org/name: the disk is full: no space left for model.safetensors in /cache/hub"
        );
        let denied = io_error(
            &spec,
            "config.json",
            &settings,
            std::io::Error::from_raw_os_error(13),
        );
        assert_eq!(
            denied.to_string(),
            "org/name: cannot write config.json into the cache /cache/hub: Permission denied (os error 13)"
        );
    }
}
