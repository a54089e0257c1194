//! The owner and operator tokens: random, kept in `<data dir>/access/` with
//! 0600 permissions, compared in constant time. A running server notices a
//! rotation (`loralab token rotate`) by the file changing, so the sessions it
//! granted end without a restart.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use app::Role;

/// Bytes of randomness in a token (hex-encoded: 64 characters).
const TOKEN_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Owner,
    Operator,
}

impl TokenKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Operator => "operator",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::Owner => "owner.token",
            Self::Operator => "operator.token",
        }
    }

    pub fn role(self) -> Role {
        match self {
            Self::Owner => Role::Owner,
            Self::Operator => Role::Operator,
        }
    }
}

/// A fresh random token, hex-encoded so it can sit in a URL and a cookie.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("the OS random source failed: {error}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Equal-length inputs take the same time whatever their content; a length
/// mismatch returns at once (token lengths are public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// What identifies a file's version: a rotation replaces the file by rename.
type Stamp = Option<(u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    fs::metadata(path)
        .ok()
        .map(|meta| (meta.ino(), meta.mtime(), meta.mtime_nsec()))
}

#[derive(Default)]
struct Loaded {
    owner: (Stamp, Option<String>),
    operator: (Stamp, Option<String>),
}

pub struct TokenStore {
    dir: PathBuf,
    loaded: Mutex<Loaded>,
}

impl TokenStore {
    /// Opens `<data dir>/access/`, creating the owner token on first use.
    pub fn open(data_root: &Path) -> Result<Self> {
        let dir = data_root.join("access");
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the access folder {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to its owner", dir.display()))?;
        let store = Self {
            dir,
            loaded: Mutex::new(Loaded::default()),
        };
        if store.read(TokenKind::Owner)?.is_none() {
            store.rotate(TokenKind::Owner)?;
        }
        Ok(store)
    }

    /// The access folder (0700), where the tokens and sessions are kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, kind: TokenKind) -> PathBuf {
        self.dir.join(kind.file_name())
    }

    /// The token of `kind`, if there is one.
    pub fn read(&self, kind: TokenKind) -> Result<Option<String>> {
        let path = self.path(kind);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        };
        let mode = fs::metadata(&path)?.permissions().mode();
        if mode & 0o077 != 0 {
            // Someone loosened it (a copy, a backup tool): tighten it again.
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "token file was readable by others; setting 0600");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        }
        let token = text.trim();
        if token.len() != TOKEN_BYTES * 2 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "{}: not a Loralab token ({} hex digits expected); `loralab token rotate` writes a new one",
                path.display(),
                TOKEN_BYTES * 2
            );
        }
        Ok(Some(token.to_string()))
    }

    /// Writes a new token of `kind` (0600, by rename so readers never see
    /// half a file) and returns it.
    pub fn rotate(&self, kind: TokenKind) -> Result<String> {
        let token = random_token()?;
        let path = self.path(kind);
        let temp = self.dir.join(format!(".{}.new", kind.file_name()));
        let _ = fs::remove_file(&temp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        writeln!(file, "{token}")?;
        file.sync_all()?;
        fs::rename(&temp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(token)
    }

    /// Deletes the token of `kind`; false when there was none.
    pub fn remove(&self, kind: TokenKind) -> Result<bool> {
        match fs::remove_file(self.path(kind)) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error).context("cannot remove the token"),
        }
    }

    /// The token of `kind` as it is now, read again only when its file
    /// changed (a rotation by another process). An unreadable token grants
    /// nothing until fixed.
    pub fn current(&self, kind: TokenKind) -> Option<String> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match kind {
            TokenKind::Owner => &mut loaded.owner,
            TokenKind::Operator => &mut loaded.operator,
        };
        let current = stamp(&self.path(kind));
        if current != slot.0 || current.is_none() {
            slot.1 = self.read(kind).unwrap_or_else(|error| {
                tracing::error!(
                    error = format!("{error:#}"),
                    "reading a token; it grants nothing until fixed"
                );
                None
            });
            slot.0 = current;
        }
        slot.1.clone()
    }

    /// Which token `presented` is, if any. Every known token is compared,
    /// so the time taken does not tell which one nearly matched.
    pub fn kind_of(&self, presented: &str) -> Option<TokenKind> {
        let mut found = None;
        for kind in [TokenKind::Owner, TokenKind::Operator] {
            let matches = self
                .current(kind)
                .is_some_and(|token| constant_time_eq(token.as_bytes(), presented.as_bytes()));
            if matches && found.is_none() {
                found = Some(kind);
            }
        }
        found
    }

    /// The role a presented token grants, if any.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        self.kind_of(presented).map(TokenKind::role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_private_random_and_rotate() {
        let temp = tempfile::tempdir().unwrap();
        let store = TokenStore::open(temp.path()).unwrap();
        let owner = store.read(TokenKind::Owner).unwrap().unwrap();
        assert_eq!(owner.len(), 64);
        let mode = fs::metadata(store.path(TokenKind::Owner))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.role_of(&owner), Some(Role::Owner));
        assert_eq!(store.role_of("nope"), None);
        assert_eq!(store.role_of(&"0".repeat(64)), None);

        let operator = store.rotate(TokenKind::Operator).unwrap();
        assert_ne!(operator, owner);
        assert_eq!(store.role_of(&operator), Some(Role::Operator));

        let rotated = store.rotate(TokenKind::Owner).unwrap();
        assert_eq!(
            store.role_of(&owner),
            None,
            "the old owner token still works"
        );
        assert_eq!(store.role_of(&rotated), Some(Role::Owner));

        assert!(store.remove(TokenKind::Operator).unwrap());
        assert_eq!(store.role_of(&operator), None);
        assert!(!store.remove(TokenKind::Operator).unwrap());
    }

    #[test]
    fn a_damaged_token_file_is_named() {
        let temp = tempfile::tempdir().unwrap();
        let store = TokenStore::open(temp.path()).unwrap();
        fs::write(store.path(TokenKind::Owner), "short\n").unwrap();
        let error = store.read(TokenKind::Owner).unwrap_err().to_string();
        assert!(
            error.contains("owner.token: not a Loralab token (64 hex digits expected)"),
            "{error}"
        );
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abce"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
    }
}
