//! Browser sessions. Signing in (the owner or operator link, or the viewer
//! password) hands the browser a random session id, never the secret it
//! presented, so a copied cookie is not the token. Each session remembers
//! what granted it (the digest of that token or password): rotating the
//! token or changing the password ends it, as do 30 idle days and signing
//! out everywhere.
//!
//! Kept in `<data dir>/access/sessions.json` (0600) so a restart signs nobody
//! out; the file holds digests of the ids, so reading it grants nothing.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::tokens::{random_token, TokenKind};

/// A session unused for this long is over.
pub const IDLE_LIMIT_SECS: u64 = 30 * 24 * 3600;
/// Last-seen times are saved at most this often: they matter at the scale
/// of days, and every page view writing a file would be waste.
const TOUCH_EVERY_SECS: u64 = 3600;

/// What signed a session in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Grant {
    /// A token of `kind` whose digest was `token_sha256`.
    Token {
        kind: TokenKind,
        token_sha256: String,
    },
    /// The viewer password whose digest was `password_sha256`.
    ViewerPassword { password_sha256: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    grant: Grant,
    /// Unix seconds.
    last_seen: u64,
}

pub struct Sessions {
    path: PathBuf,
    /// By digest of the session id.
    live: Mutex<HashMap<String, Session>>,
}

/// Hex SHA-256, the form secrets are remembered in.
pub fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Sessions {
    /// Loads the sessions of `dir` (the access folder), dropping expired
    /// ones. An unreadable file signs everyone out rather than stopping the
    /// server: sessions are cheap to make again.
    pub fn open(dir: &Path) -> Self {
        let path = dir.join("sessions.json");
        let mut live: HashMap<String, Session> = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "sessions file unreadable; everyone signs in again");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        let cutoff = now().saturating_sub(IDLE_LIMIT_SECS);
        live.retain(|_, session| session.last_seen >= cutoff);
        Self {
            path,
            live: Mutex::new(live),
        }
    }

    /// A new session for `grant`; returns its id (the cookie's value).
    pub fn start(&self, grant: Grant) -> Result<String> {
        let id = random_token()?;
        let mut live = self.lock();
        live.insert(
            digest(&id),
            Session {
                grant,
                last_seen: now(),
            },
        );
        self.save(&live);
        Ok(id)
    }

    /// What granted session `id`, if it is live; marks it seen.
    pub fn grant_of(&self, id: &str) -> Option<Grant> {
        let key = digest(id);
        let now = now();
        let mut live = self.lock();
        let session = live.get_mut(&key)?;
        if now.saturating_sub(session.last_seen) > IDLE_LIMIT_SECS {
            live.remove(&key);
            self.save(&live);
            return None;
        }
        let grant = session.grant.clone();
        if now.saturating_sub(session.last_seen) > TOUCH_EVERY_SECS {
            session.last_seen = now;
            self.save(&live);
        }
        Some(grant)
    }

    pub fn end(&self, id: &str) {
        let mut live = self.lock();
        if live.remove(&digest(id)).is_some() {
            self.save(&live);
        }
    }

    /// Signs out every browser; returns how many sessions there were.
    pub fn end_all(&self) -> usize {
        let mut live = self.lock();
        let count = live.len();
        live.clear();
        self.save(&live);
        count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Written by rename, so a crash leaves the old file or the new one. A
    /// failure is logged: the sessions still hold until a restart.
    fn save(&self, live: &HashMap<String, Session>) {
        if let Err(error) = self.write(live) {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot save sessions; they last until a restart"
            );
        }
    }

    fn write(&self, live: &HashMap<String, Session>) -> Result<()> {
        let temp = self.path.with_extension("json.new");
        let _ = fs::remove_file(&temp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        file.write_all(&serde_json::to_vec(live)?)?;
        file.sync_all()?;
        fs::rename(&temp, &self.path)
            .with_context(|| format!("cannot replace {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_grant() -> Grant {
        Grant::Token {
            kind: TokenKind::Owner,
            token_sha256: digest("t"),
        }
    }

    #[test]
    fn sessions_survive_a_restart_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Sessions::open(dir.path());
        let id = sessions.start(owner_grant()).unwrap();
        let other = sessions.start(owner_grant()).unwrap();
        assert_ne!(id, other);
        assert_eq!(id.len(), 64);
        let text = fs::read_to_string(dir.path().join("sessions.json")).unwrap();
        assert!(!text.contains(&id), "the file holds digests, not ids");

        let reopened = Sessions::open(dir.path());
        assert_eq!(reopened.grant_of(&id), Some(owner_grant()));
        assert_eq!(reopened.grant_of("not-a-session"), None);
        reopened.end(&id);
        assert_eq!(reopened.grant_of(&id), None);
        assert_eq!(reopened.grant_of(&other), Some(owner_grant()));
        assert_eq!(reopened.end_all(), 1);
        assert_eq!(Sessions::open(dir.path()).grant_of(&other), None);
    }

    #[test]
    fn idle_sessions_expire() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Sessions::open(dir.path());
        let id = sessions.start(owner_grant()).unwrap();
        sessions.lock().values_mut().for_each(|session| {
            session.last_seen = now() - IDLE_LIMIT_SECS - 1;
        });
        assert_eq!(sessions.grant_of(&id), None);
        // Also dropped when loading.
        let id = sessions.start(owner_grant()).unwrap();
        let mut live = sessions.lock().clone();
        live.values_mut()
            .for_each(|session| session.last_seen = now() - IDLE_LIMIT_SECS - 1);
        sessions.write(&live).unwrap();
        assert_eq!(Sessions::open(dir.path()).grant_of(&id), None);
    }
}
