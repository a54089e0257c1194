//! The standard Hugging Face cache, as huggingface_hub (Python) and hf-hub
//! lay it out: `models--org--name/{blobs,refs,snapshots}`, a ref file
//! holding the commit a branch or tag pointed at, and per commit a snapshot
//! folder of links into `blobs/`. Read here without any network access.

use std::path::{Path, PathBuf};

use super::spec::HubSpec;

/// The cache folder: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (huggingface_hub's order; `XDG_CACHE_HOME`
/// stands in for `~/.cache` as it does there).
pub fn default_cache_dir() -> PathBuf {
    let env = |key| std::env::var_os(key).filter(|v| !v.is_empty());
    if let Some(dir) = env("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = env("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// One repo's folder in the cache.
#[derive(Debug, Clone)]
pub struct CachedRepo {
    pub dir: PathBuf,
}

impl CachedRepo {
    pub fn new(cache_dir: &Path, repo: &str) -> Self {
        Self {
            dir: cache_dir.join(format!("models--{}", repo.replace('/', "--"))),
        }
    }

    /// The commit `revision` stands for: a full commit hash is itself,
    /// a branch or tag is read from `refs/`.
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let text = std::fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// Points `revision` at `commit` (what huggingface_hub does after a
    /// download; a commit needs no ref).
    pub fn write_ref(&self, revision: &str, commit: &str) -> std::io::Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = self.dir.join("refs").join(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, commit)
    }
}

fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `path` (a snapshot link) leads to a whole file: links whose
/// blob is gone, or still downloading, do not count.
pub fn present(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// What a snapshot lacks for Loralab to load it: for a GGUF spec, the file;
/// otherwise `config.json`, `tokenizer.json` and the weights (the shards the
/// index names, else at least one `model*.safetensors`). Empty when usable.
pub fn missing_in_snapshot(snapshot: &Path, spec: &HubSpec) -> Vec<String> {
    if let Some(file) = &spec.file {
        return (!present(&snapshot.join(file)))
            .then(|| file.clone())
            .into_iter()
            .collect();
    }
    let mut missing: Vec<String> = ["config.json", "tokenizer.json"]
        .into_iter()
        .filter(|name| !present(&snapshot.join(name)))
        .map(str::to_string)
        .collect();
    let index = snapshot.join(super::INDEX_FILE);
    if present(&index) {
        match shards_of_index(&index) {
            Ok(shards) => missing.extend(
                shards
                    .into_iter()
                    .filter(|shard| !present(&snapshot.join(shard))),
            ),
            Err(why) => missing.push(format!("{} ({why})", super::INDEX_FILE)),
        }
    } else {
        let has_weights = std::fs::read_dir(snapshot).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                super::is_weight_file(&entry.file_name().to_string_lossy())
                    && present(&entry.path())
            })
        });
        if !has_weights {
            missing.push("model.safetensors".into());
        }
    }
    missing
}

/// The shard files `model.safetensors.index.json` names, sorted, once each.
pub fn shards_of_index(index: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| format!("cannot read it: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no `weight_map` object")?;
    let mut shards = map
        .values()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or("`weight_map` values must be file names")
        })
        .collect::<Result<Vec<_>, _>>()?;
    shards.sort();
    shards.dedup();
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn refs_lead_to_snapshots_and_missing_files_are_named() {
        let temp = tempfile::tempdir().unwrap();
        let repo = CachedRepo::new(temp.path(), "org/name");
        assert_eq!(repo.dir, temp.path().join("models--org--name"));
        assert_eq!(repo.commit_of("main"), None);
        repo.write_ref("main", COMMIT).unwrap();
        assert_eq!(repo.commit_of("main").as_deref(), Some(COMMIT));
        assert_eq!(repo.commit_of(COMMIT).as_deref(), Some(COMMIT));

        let snapshot = repo.snapshot(COMMIT);
        std::fs::create_dir_all(&snapshot).unwrap();
        let spec = HubSpec::parse("org/name").unwrap();
        assert_eq!(
            missing_in_snapshot(&snapshot, &spec),
            ["config.json", "tokenizer.json", "model.safetensors"]
        );
        std::fs::write(snapshot.join("config.json"), "{}").unwrap();
        std::fs::write(snapshot.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(
            snapshot.join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors", "c": "model-1.safetensors"}}"#,
        )
        .unwrap();
        std::fs::write(snapshot.join("model-1.safetensors"), "x").unwrap();
        // A link to a blob still downloading (no blob yet) is not there.
        std::os::unix::fs::symlink("../../blobs/abc", snapshot.join("model-2.safetensors"))
            .unwrap();
        assert_eq!(
            missing_in_snapshot(&snapshot, &spec),
            ["model-2.safetensors"]
        );
        let gguf = HubSpec::parse("org/name/q4.gguf").unwrap();
        assert_eq!(missing_in_snapshot(&snapshot, &gguf), ["q4.gguf"]);
    }
}
