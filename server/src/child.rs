//! A worker child process of this binary (`loralab <subcommand>`) speaking
//! JSON lines: commands of type `C` on its stdin, events of type `E` on its
//! stdout, free text on stderr kept as a tail of the last lines. Killed
//! when dropped, so a task that gives up on a worker leaves no orphan.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

/// The running process.
pub struct Worker {
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
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
    /// What the log says the worker is (`export 3`, `run 7`).
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

/// Starts `exe subcommand` with piped stdio. `tail_lines` lines of stderr
/// are kept; `on_stderr` sees the whole tail after each new line.
pub fn spawn<C: Serialize, E: DeserializeOwned>(
    exe: &Path,
    subcommand: &str,
    label: String,
    tail_lines: usize,
    on_stderr: impl Fn(&VecDeque<String>) + Send + 'static,
) -> std::io::Result<(Worker, WorkerInput<C>, WorkerOutput<E>)> {
    let mut child = tokio::process::Command::new(exe)
        .arg(subcommand)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let missing = || std::io::Error::other("the worker process has no pipes");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let tail_task = {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == tail_lines {
                    tail.pop_front();
                }
                tail.push_back(line);
                on_stderr(&tail);
            }
        })
    };
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
            label,
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
    /// events are logged and skipped.
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

    /// Waits for the process to end and for its stderr to be read.
    pub async fn wait(mut self) -> WorkerExit {
        let status = self.child.wait().await;
        let _ = (&mut self.tail_task).await;
        let tail = self
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        WorkerExit {
            description: describe(&status),
            signal: status
                .as_ref()
                .ok()
                .and_then(std::os::unix::process::ExitStatusExt::signal),
            tail,
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
