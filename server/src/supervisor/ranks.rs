//! The other ranks of a run with `gpus: N` (N > 1) or on a machine set.
//! Rank 0 is the run's worker like any run's, and its events drive the
//! run; ranks 1.. are workers given the same command, in the same run
//! folder, with mlx.launch's environment (`launch::local_rank_environments`
//! on this machine, `machines::ranks` over ssh for a machine set's hosts).
//! They emit nothing; their stderr joins the run's log behind `[rank N]`,
//! and the failure of any of them stops the run, naming it.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use engine::config::TrainConfig;

use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStderr, ChildStdin};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Every rank's worker command for a run, rank 0 first: one for most
/// runs, `gpus` of this machine, or one per host of its machine set (whose
/// dataset is copied to the hosts first: ssh, so off the async runtime).
pub(super) async fn worker_commands(
    inner: &Arc<super::Inner>,
    config: &TrainConfig,
    run_dir: &Path,
) -> Result<Vec<tokio::process::Command>, String> {
    let exe = inner.settings.worker_exe.clone();
    let commands = if let Some(set) = config.machine_set.clone() {
        let (inner, config, run_dir) = (inner.clone(), config.clone(), run_dir.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let data_dir = inner.runs_dir.parent().unwrap_or(Path::new("/"));
            crate::machines::ranks::worker_commands(
                &inner.store,
                &config,
                &set,
                data_dir,
                &exe,
                &run_dir,
            )
        })
        .await
        .map_err(|e| format!("setting up the machine set's ranks: {e}"))??
    } else if config.gpus > 1 {
        let backend = if inner.settings.on_gpu {
            "nccl"
        } else {
            "ring"
        };
        crate::launch::local_rank_environments(config.gpus, backend, run_dir)
            .map_err(|e| format!("cannot set up the run's {} ranks: {e:#}", config.gpus))?
            .into_iter()
            .map(|environment| {
                let mut command = std::process::Command::new(&exe);
                command
                    .arg("worker")
                    .envs(environment)
                    .env(crate::launch::BACKEND_ENV, backend);
                command
            })
            .collect()
    } else {
        let mut command = std::process::Command::new(&exe);
        command.arg("worker");
        vec![command]
    };
    Ok(commands
        .into_iter()
        .map(tokio::process::Command::from)
        .collect())
}

pub(super) struct Followers {
    ranks: Vec<Follower>,
    exits: mpsc::UnboundedReceiver<(usize, ExitStatus)>,
    /// Exits read while looking for a failure, kept for [`Self::finish`].
    seen: Vec<(usize, ExitStatus)>,
}

struct Follower {
    /// Sending (or dropping) it kills the rank.
    kill: Option<oneshot::Sender<()>>,
    waiter: JoinHandle<()>,
    log: JoinHandle<()>,
    /// Held open: a worker takes the end of its stdin as "stop".
    _stdin: ChildStdin,
}

impl Followers {
    /// Starts ranks `1..=workers.len()`, sends each `command` (one JSON
    /// line), and hands each one's stderr to `log` with its rank.
    pub(super) async fn start(
        workers: Vec<tokio::process::Command>,
        command: &str,
        log: impl Fn(usize, ChildStderr) -> JoinHandle<()>,
    ) -> Result<Self, String> {
        let (sender, exits) = mpsc::unbounded_channel();
        let mut followers = Self {
            ranks: Vec::new(),
            exits,
            seen: Vec::new(),
        };
        for (offset, mut worker) in workers.into_iter().enumerate() {
            let rank = offset + 1;
            let spawned = worker
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(error) => {
                    followers.finish(Duration::ZERO).await;
                    return Err(format!("cannot start rank {rank}: {error}"));
                }
            };
            let (Some(mut stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
                return Err(format!("rank {rank}'s worker has no pipes"));
            };
            let sent = stdin.write_all(command.as_bytes()).await;
            let log = log(rank, stderr);
            let (kill, killed) = oneshot::channel::<()>();
            let sender = sender.clone();
            let waiter = tokio::spawn(async move {
                let status = tokio::select! {
                    status = child.wait() => status,
                    _ = killed => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                if let Ok(status) = status {
                    let _ = sender.send((rank, status));
                }
            });
            followers.ranks.push(Follower {
                kill: Some(kill),
                waiter,
                log,
                _stdin: stdin,
            });
            if let Err(error) = sent {
                followers.finish(Duration::ZERO).await;
                return Err(format!("cannot send rank {rank} its command: {error}"));
            }
        }
        Ok(followers)
    }

    /// The next rank that ends without success (pending while none does).
    pub(super) async fn failure(&mut self) -> (usize, ExitStatus) {
        loop {
            match self.exits.recv().await {
                Some((rank, status)) => {
                    self.seen.push((rank, status));
                    if !status.success() {
                        return (rank, status);
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Gives the ranks `grace` to end on their own (after rank 0 has), then
    /// kills the rest. Returns the first failure that a signal caused, else
    /// the first failure: a rank killed from outside is why the others
    /// lost their peer.
    pub(super) async fn finish(mut self, grace: Duration) -> Option<(usize, ExitStatus)> {
        let deadline = tokio::time::Instant::now() + grace;
        while self.seen.len() < self.ranks.len() {
            match tokio::time::timeout_at(deadline, self.exits.recv()).await {
                Ok(Some(exit)) => self.seen.push(exit),
                Ok(None) | Err(_) => break,
            }
        }
        for follower in &mut self.ranks {
            if let Some(kill) = follower.kill.take() {
                let _ = kill.send(());
            }
        }
        for follower in self.ranks.drain(..) {
            let _ = follower.waiter.await;
            let _ = follower.log.await;
        }
        let failures: Vec<_> = self.seen.iter().filter(|(_, s)| !s.success()).collect();
        failures
            .iter()
            .find(|(_, s)| std::os::unix::process::ExitStatusExt::signal(s).is_some())
            .or(failures.first())
            .map(|&&exit| exit)
    }
}
