//! A machine set's check: each host over ssh (a host named as this
//! machine, as the launcher starts it, without): it answers, has this
//! Loralab at this path and of this version, and how much memory it has
//! free. Every failure says why, in words the owner can act on.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use app::machines_dto::HostCheck;

use crate::launch::{is_this_machine, quote, ssh_command, Host, Hostfile};

/// A host that has not answered by then fails its check (ssh's own
/// connect timeout is 5 s; this covers a login that hangs after it).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// What `loralab --version` prints for this build.
pub fn our_version() -> String {
    format!("loralab {}", env!("CARGO_PKG_VERSION"))
}

/// The script's exit status when there is no executable at the path.
const NO_PROGRAM: i32 = 3;
/// ... and when it is there but `--version` fails.
const VERSION_FAILED: i32 = 4;
/// ssh's own status for a connection or authentication failure.
const SSH_FAILED: i32 = 255;

/// Every host of `hostfile`, checked side by side, in its order.
pub fn check_hosts(hostfile: &Hostfile, program: &Path) -> Vec<HostCheck> {
    std::thread::scope(|scope| {
        let checks: Vec<_> = hostfile
            .hosts
            .iter()
            .map(|host| scope.spawn(move || check_host(host, program)))
            .collect();
        checks
            .into_iter()
            .zip(&hostfile.hosts)
            .map(|(check, host)| {
                check
                    .join()
                    .unwrap_or_else(|_| failed(host, "the check crashed".into()))
            })
            .collect()
    })
}

fn failed(host: &Host, reason: String) -> HostCheck {
    HostCheck {
        host: host.ssh.clone(),
        ok: false,
        version: None,
        free_memory_bytes: None,
        reason: Some(reason),
    }
}

/// The shell script run on the host: the program's version on the first
/// line, `MemAvailable` in kB on the second (Linux; none elsewhere).
fn script(program: &Path) -> String {
    format!(
        "P={}; [ -x \"$P\" ] || exit {NO_PROGRAM}; \"$P\" --version || exit {VERSION_FAILED}; \
         awk '/^MemAvailable:/ {{print $2}}' /proc/meminfo 2>/dev/null; exit 0",
        quote(&program.display().to_string())
    )
}

fn check_host(host: &Host, program: &Path) -> HostCheck {
    let local = is_this_machine(&host.ssh);
    let mut command = if local {
        let mut sh = Command::new("sh");
        sh.arg("-c");
        sh
    } else {
        ssh_command(&host.ssh)
    };
    command.arg(script(program));
    let (status, stdout, stderr) = match run_with_timeout(command, CHECK_TIMEOUT) {
        Ok(output) => output,
        Err(reason) => return failed(host, reason),
    };
    let stderr = stderr.trim();
    let last_words = stderr.lines().last().unwrap_or("no reason given").trim();
    match status {
        Some(0) => {}
        Some(SSH_FAILED) if !local => {
            return failed(host, format!("unreachable over ssh: {last_words}"))
        }
        Some(NO_PROGRAM) => {
            return failed(
                host,
                format!(
                    "no Loralab at {}: install this version ({}) at the same path",
                    program.display(),
                    our_version()
                ),
            )
        }
        Some(VERSION_FAILED) => {
            return failed(
                host,
                format!(
                    "`{} --version` failed there: {last_words}",
                    program.display()
                ),
            )
        }
        Some(code) => {
            return failed(
                host,
                format!("the check ended with status {code}: {last_words}"),
            )
        }
        None => return failed(host, "the check was killed by a signal".into()),
    }
    let mut lines = stdout.lines();
    let version = lines.next().unwrap_or_default().trim().to_string();
    let free_memory_bytes = lines
        .next()
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024);
    let ours = our_version();
    let reason = (version != ours).then(|| {
        format!(
            "Loralab there is `{version}`, this server is `{ours}`: install the same version at {}",
            program.display()
        )
    });
    HostCheck {
        host: host.ssh.clone(),
        ok: reason.is_none(),
        version: Some(version),
        free_memory_bytes,
        reason,
    }
}

/// Runs `command` to its end or for `limit` (then kills it): its exit
/// code, stdout and stderr.
fn run_with_timeout(
    mut command: Command,
    limit: Duration,
) -> Result<(Option<i32>, String, String), String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("the check has no pipes".into());
    };
    // Read beside the wait: a chatty login must not fill a pipe and stall.
    let readers = (
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        }),
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        }),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", limit.as_secs()));
            }
            Err(error) => return Err(format!("cannot wait for ssh: {error}")),
        }
    };
    let stdout = readers.0.join().unwrap_or_default();
    let stderr = readers.1.join().unwrap_or_default();
    Ok((status.code(), stdout, stderr))
}
