//! Before a run on a machine set starts, its dataset files go to every
//! host: a file whose SHA-256 there already equals ours is skipped, any
//! other is streamed over ssh into a temporary name, renamed into place,
//! and checked again. A host that cannot be reached, written or verified
//! fails the copy with its name, so the run fails before any rank starts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::launch::{is_this_machine, quote, ssh_command, Host};

/// What one host received.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCopy {
    pub host: String,
    /// The files sent (their paths on the host); those not listed matched.
    pub copied: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot copy the dataset to `{host}`: {reason}")]
pub struct CopyError {
    pub host: String,
    pub reason: String,
}

/// A file to copy: where it is here, and where it goes on every host.
#[derive(Debug, Clone)]
pub struct FileCopy {
    pub local: PathBuf,
    pub remote: PathBuf,
}

/// `files` below `local_root`, each bound for the same place below
/// `remote_root` (a host's data dir).
pub fn under(files: &[PathBuf], local_root: &Path, remote_root: &Path) -> Vec<FileCopy> {
    files
        .iter()
        .map(|local| FileCopy {
            local: local.clone(),
            remote: remote_root.join(local.strip_prefix(local_root).unwrap_or(local)),
        })
        .collect()
}

/// The SHA-256 of a file here, in hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies `files` to each of `hosts` in turn.
pub fn copy_to_hosts(hosts: &[Host], files: &[FileCopy]) -> Result<Vec<HostCopy>, CopyError> {
    let sums = files
        .iter()
        .map(|file| {
            sha256_file(&file.local).map_err(|e| CopyError {
                host: "this machine".into(),
                reason: format!("cannot read {}: {e}", file.local.display()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    hosts
        .iter()
        .map(|host| copy_to_host(host, files, &sums))
        .collect()
}

/// `sh -c script` here for a host named as this machine, else over ssh.
fn on_host(host: &Host, script: &str) -> Command {
    let mut command = if is_this_machine(&host.ssh) {
        let mut sh = Command::new("sh");
        sh.arg("-c");
        sh
    } else {
        ssh_command(&host.ssh)
    };
    command.arg(script);
    command
}

fn copy_to_host(host: &Host, files: &[FileCopy], sums: &[String]) -> Result<HostCopy, CopyError> {
    let fail = |reason: String| CopyError {
        host: host.ssh.clone(),
        reason,
    };
    let theirs = remote_sums(host, files).map_err(fail)?;
    let mut copied = Vec::new();
    for ((file, ours), theirs) in files.iter().zip(sums).zip(theirs) {
        if theirs.as_deref() == Some(ours.as_str()) {
            continue;
        }
        send(host, file).map_err(fail)?;
        let after = remote_sums(host, std::slice::from_ref(file)).map_err(fail)?;
        if after[0].as_deref() != Some(ours.as_str()) {
            return Err(fail(format!(
                "{} differs from ours after the copy (SHA-256 {} there, {ours} here)",
                file.remote.display(),
                after[0].as_deref().unwrap_or("none")
            )));
        }
        copied.push(file.remote.clone());
    }
    Ok(HostCopy {
        host: host.ssh.clone(),
        copied,
    })
}

/// What ssh's failure (or the script's) says, for a reason.
fn failure(status: std::process::ExitStatus, stderr: &[u8], doing: &str) -> String {
    let text = String::from_utf8_lossy(stderr);
    let last = text.lines().last().unwrap_or("no reason given").trim();
    match status.code() {
        Some(255) => format!("unreachable over ssh: {last}"),
        Some(code) => format!("{doing} failed (status {code}): {last}"),
        None => format!("{doing} was killed by a signal"),
    }
}

/// Each file's SHA-256 on the host, `None` where it has none.
fn remote_sums(host: &Host, files: &[FileCopy]) -> Result<Vec<Option<String>>, String> {
    let mut script = String::new();
    for file in files {
        // One line per file: its sum, or `-` when it is not there.
        script.push_str(&format!(
            "sha256sum < {0} 2>/dev/null || echo -; ",
            quote(&file.remote.display().to_string())
        ));
    }
    let output = on_host(host, &script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    if !output.status.success() {
        return Err(failure(output.status, &output.stderr, "reading checksums"));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let sums: Vec<Option<String>> = text
        .lines()
        .map(|line| {
            let sum = line.split_whitespace().next().unwrap_or("-");
            (sum.len() == 64).then(|| sum.to_string())
        })
        .collect();
    if sums.len() != files.len() {
        return Err(format!(
            "its checksums came back as {} lines for {} files (no sha256sum there?)",
            sums.len(),
            files.len()
        ));
    }
    Ok(sums)
}

/// Streams one file to the host: into a temporary name beside its place,
/// then renamed, so a copy cut short never looks whole.
fn send(host: &Host, file: &FileCopy) -> Result<(), String> {
    let remote = file.remote.display().to_string();
    let partial = format!("{remote}.loralab-partial");
    let parent = file
        .remote
        .parent()
        .map_or_else(|| "/".to_string(), |p| p.display().to_string());
    let script = format!(
        "mkdir -p {} && cat > {partial} && mv -f {partial} {}",
        quote(&parent),
        quote(&remote),
        partial = quote(&partial),
    );
    let input = std::fs::File::open(&file.local)
        .map_err(|e| format!("cannot read {}: {e}", file.local.display()))?;
    let output = on_host(host, &script)
        .stdin(Stdio::from(input))
        .output()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failure(
            output.status,
            &output.stderr,
            &format!("writing {remote}"),
        ))
    }
}
