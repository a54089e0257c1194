//! A worker child process (`loralab <subcommand>`, here or over ssh) speaking
//! JSON lines: commands of type `C` on its stdin, events of type `E` on its
//! stdout, free text on stderr kept as a tail of the last lines. Training
//! workers (`supervisor/worker_process.rs`), the inference worker
//! (`inference/`) and export workers (`exports/`) all start this way.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

/// How to start a worker.
pub struct WorkerSpec {
    /// The process: [`loralab`]'s, with a rank's environment where it is
    /// one (`MLX_RANK`, ...), or ssh starting it on a machine set's host.
    pub command: tokio::process::Command,
    /// What the log says the worker is (`export 3`, `run 7`).
    pub label: String,
    /// Put before each of its stderr lines in the tail (`[rank 0] `).
    pub stderr_prefix: String,
    /// Whether dropping its [`Worker`] kills it, so that a task giving up
    /// on it leaves no orphan. A training worker is not killed: the end
    /// of its stdin makes it checkpoint and exit.
    pub kill_on_drop: bool,
}

/// Told of each new stderr line, with all the lines kept.
type LineListener = dyn Fn(&VecDeque<String>) + Send + Sync;

/// The last lines of one or more workers' stderr, and who is told of each
/// new one. Clones share the lines.
#[derive(Clone)]
pub struct LogTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    capacity: usize,
    on_line: Arc<LineListener>,
}

impl LogTail {
    pub fn new(capacity: usize) -> Self {
        Self::with_listener(capacity, |_| {})
    }

    /// A tail whose `on_line` sees all its lines after each new one.
    pub fn with_listener(
        capacity: usize,
        on_line: impl Fn(&VecDeque<String>) + Send + Sync + 'static,
    ) -> Self {
        Self {
            lines: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
            on_line: Arc::new(on_line),
        }
    }

    /// Reads `stderr` to its end into the tail, each line behind `prefix`.
    pub fn follow(
        &self,
        stderr: impl AsyncRead + Unpin + Send + 'static,
        prefix: String,
    ) -> JoinHandle<()> {
        let tail = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = tail.lock();
                if kept.len() == tail.capacity {
                    kept.pop_front();
                }
                kept.push_back(format!("{prefix}{line}"));
                (tail.on_line)(&kept);
            }
        })
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running process.
pub struct Worker {
    child: Child,
    tail: LogTail,
    tail_task: JoinHandle<()>,
}

/// Where commands go.
pub struct WorkerInput<C> {
    stdin: ChildStdin,
    _commands: PhantomData<fn(C)>,
}

/// Where events come from.
pub struct WorkerOutput<E> {
    lines: Lines<BufReader<ChildStdout>>,
    label: String,
    _events: PhantomData<fn() -> E>,
}

/// How a worker ended.
pub struct WorkerExit {
    /// "exit code 1", "signal: 9 (SIGKILL)", ...
    pub description: String,
    pub signal: Option<i32>,
    /// The last lines of its stderr.
    pub tail: Vec<String>,
}

/// `exe <subcommand>`: a worker of this binary on this machine.
pub fn loralab(exe: &Path, subcommand: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(exe);
    command.arg(subcommand);
    command
}

/// Starts `spec`'s worker with piped stdio, its stderr read into `tail`.
pub fn spawn<C: Serialize, E: DeserializeOwned>(
    mut spec: WorkerSpec,
    tail: LogTail,
) -> std::io::Result<(Worker, WorkerInput<C>, WorkerOutput<E>)> {
    let mut child = spec
        .command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(spec.kill_on_drop)
        .spawn()?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.start_kill();
        return Err(std::io::Error::other("the worker process has no pipes"));
    };
    let tail_task = tail.follow(stderr, spec.stderr_prefix);
    Ok((
        Worker {
            child,
            tail,
            tail_task,
        },
        WorkerInput {
            stdin,
            _commands: PhantomData,
        },
        WorkerOutput {
            lines: BufReader::new(stdout).lines(),
            label: spec.label,
            _events: PhantomData,
        },
    ))
}

impl<C: Serialize> WorkerInput<C> {
    /// Writes one command line and flushes it.
    pub async fn send(&mut self, command: &C) -> std::io::Result<()> {
        let mut line = serde_json::to_string(command).map_err(std::io::Error::other)?;
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await
    }
}

impl<E: DeserializeOwned> WorkerOutput<E> {
    /// The next event; None once stdout is closed. Lines that are not
    /// events are logged and skipped. Cancel-safe: a line is parsed as
    /// soon as it is read.
    pub async fn next(&mut self) -> Option<E> {
        loop {
            let line = self.lines.next_line().await.ok()??;
            match serde_json::from_str(&line) {
                Ok(event) => return Some(event),
                Err(error) => {
                    tracing::warn!(%error, worker = %self.label, %line, "worker wrote a non-event line")
                }
            }
        }
    }
}

impl Worker {
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGKILL; [`Self::wait`] then reports it.
    pub fn start_kill(&mut self) {
        let _ = self.child.start_kill();
    }

    /// Waits for the process to end and for its stderr to be read.
    pub async fn wait(mut self) -> WorkerExit {
        let status = self.child.wait().await;
        self.exit(status).await
    }

    /// [`Self::wait`], killing the process if it has not ended within
    /// `grace`.
    pub async fn wait_or_kill(mut self, grace: Duration) -> WorkerExit {
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                let _ = self.child.start_kill();
                self.child.wait().await
            }
        };
        self.exit(status).await
    }

    async fn exit(self, status: std::io::Result<ExitStatus>) -> WorkerExit {
        let _ = self.tail_task.await;
        WorkerExit {
            description: describe(&status),
            signal: status
                .as_ref()
                .ok()
                .and_then(std::os::unix::process::ExitStatusExt::signal),
            tail: self.tail.lines(),
        }
    }
}

fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => match status.code() {
            Some(code) => format!("exit code {code}"),
            None => format!("{status}"),
        },
        Err(error) => format!("unknown status ({error})"),
    }
}

impl WorkerExit {
    /// The last `n` lines of stderr.
    pub fn last_lines(&self, n: usize) -> &[String] {
        &self.tail[self.tail.len().saturating_sub(n)..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tail_keeps_the_last_lines_of_every_stream_behind_their_prefix() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let tail = {
            let sizes = sizes.clone();
            LogTail::with_listener(2, move |lines| sizes.lock().unwrap().push(lines.len()))
        };
        tail.follow(&b"one\ntwo\n"[..], "[rank 0] ".into())
            .await
            .unwrap();
        tail.follow(&b"three\n"[..], "[rank 1] ".into())
            .await
            .unwrap();
        assert_eq!(tail.lines(), ["[rank 0] two", "[rank 1] three"]);
        assert_eq!(*sizes.lock().unwrap(), [1, 2, 2]);
    }
}
