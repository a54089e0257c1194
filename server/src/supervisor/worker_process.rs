//! One run's worker process: start it, feed it commands, persist what it
//! reports, keep its log tail, and decide how the run ended.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use engine::config::TrainConfig;
use engine::protocol::{Command, Event};
use engine::train::checkpoint::TRAINER_STATE_FILE;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Control, Supervisor};

/// Lines of worker stderr kept as the run's log tail.
const LOG_TAIL_LINES: usize = 50;
/// Lines of the tail quoted when a worker dies without saying why.
const CRASH_LINES: usize = 8;

/// Runs the worker of run `id` to its end.
pub(super) async fn drive(
    supervisor: &Supervisor,
    id: i64,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let inner = &supervisor.inner;
    let fail = |reason: String| inner.record(id, &Event::Failed { reason });
    let run = match inner.store.run(id) {
        Ok(Some(run)) => run,
        Ok(None) => return,
        Err(error) => return fail(format!("cannot read the run: {error}")),
    };
    let config: TrainConfig = match serde_json::from_value(run.config.clone()) {
        Ok(config) => config,
        Err(error) => return fail(format!("the run's stored config is invalid: {error}")),
    };
    let run_dir = supervisor.run_dir(id);
    if let Err(error) = std::fs::create_dir_all(&run_dir) {
        return fail(format!("cannot create {}: {error}", run_dir.display()));
    }
    inner.import_journal(id);
    let resume = run_dir.join(TRAINER_STATE_FILE).is_file();
    let command = Command::Train {
        config: Box::new(config),
        run_dir: run_dir.display().to_string(),
        resume,
    };

    // A run on several ranks: rank 0 here, the others in `ranks`.
    let rank_count = run_config_ranks(&command);
    let backend = if inner.settings.on_gpu {
        "nccl"
    } else {
        "ring"
    };
    let environments = if rank_count > 1 {
        match crate::launch::local_rank_environments(rank_count, backend, &run_dir) {
            Ok(environments) => environments,
            Err(error) => {
                return fail(format!(
                    "cannot set up the run's {rank_count} ranks: {error:#}"
                ))
            }
        }
    } else {
        vec![Vec::new()]
    };
    let mut rank_zero = tokio::process::Command::new(&inner.settings.worker_exe);
    if rank_count > 1 {
        rank_zero
            .envs(environments[0].iter().map(|(k, v)| (k, v)))
            .env(crate::launch::BACKEND_ENV, backend);
    }

    let oom_kills_before = crate::failure::OomKills::now();
    let mut child = match rank_zero
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return fail(format!("cannot start a worker process: {error}")),
    };
    tracing::info!(run = id, resume, pid = ?child.id(), "worker started");
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.start_kill();
        return fail("the worker process has no pipes".into());
    };

    let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    // With several ranks, each line of the log says whose it is.
    let log_task = |rank: usize, stderr: tokio::process::ChildStderr| {
        let tail = tail.clone();
        let store_inner = supervisor.inner.clone();
        let prefix = if rank_count > 1 {
            format!("[rank {rank}] ")
        } else {
            String::new()
        };
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = format!("{prefix}{line}");
                let text = {
                    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if tail.len() == LOG_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                    tail.iter().cloned().collect::<Vec<_>>().join("\n")
                };
                if let Err(error) = store_inner.store.set_log_tail(id, &text) {
                    tracing::error!(%error, run = id, "storing the log tail");
                }
            }
        })
    };
    let tail_task = log_task(0, stderr);

    let mut line = serde_json::to_string(&command).unwrap_or_default();
    line.push('\n');
    if let Err(error) = send(&mut stdin, &line).await {
        let _ = child.start_kill();
        return fail(format!("cannot send the worker its command: {error}"));
    }
    let mut followers = None;
    if rank_count > 1 {
        match super::ranks::Followers::start(
            &inner.settings.worker_exe,
            &environments[1..],
            backend,
            &line,
            log_task,
        )
        .await
        {
            Ok(started) => followers = Some(started),
            Err(reason) => {
                let _ = child.start_kill();
                return fail(reason);
            }
        }
    }
    let mut rank_failed = None;
    let mut rank_zero_failure = None;

    let mut events = BufReader::new(stdout).lines();
    let mut ended = false;
    let mut stop_requested = false;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    loop {
        tokio::select! {
            line = events.next_line() => match line {
                Ok(Some(line)) => match serde_json::from_str::<Event>(&line) {
                    Ok(event) => {
                        ended |= matches!(
                            event,
                            Event::Done { .. } | Event::Stopped { .. } | Event::Failed { .. }
                        );
                        match event {
                            // Rank 0 failing may only be it losing a peer
                            // that was killed: decided once all ranks end.
                            Event::Failed { reason } if rank_count > 1 => {
                                rank_zero_failure = Some(reason);
                            }
                            event => inner.record(id, &event),
                        }
                    }
                    Err(error) => tracing::warn!(%error, run = id, line = %line, "worker wrote a non-event line"),
                },
                Ok(None) | Err(_) => break,
            },
            Some(Control::Stop) = control.recv(), if !stop_requested => {
                stop_requested = true;
                if let Err(error) = inner.store.set_status(id, "stopping", None) {
                    tracing::error!(%error, run = id, "marking a run stopping");
                }
                inner.publish_update(id);
                let stop = serde_json::to_string(&Command::Stop).unwrap_or_default() + "\n";
                if let Err(error) = send(&mut stdin, &stop).await {
                    tracing::warn!(%error, run = id, "cannot send Stop; killing the worker");
                    kill_at = Some(Instant::now());
                } else {
                    kill_at = Some(Instant::now() + inner.settings.stop_grace);
                }
            },
            failure = async {
                match &mut followers {
                    Some(followers) => followers.failure().await,
                    None => std::future::pending().await,
                }
            }, if rank_failed.is_none() => {
                // Rank 0 would wait on it in the next collective.
                rank_failed = Some(failure);
                let _ = child.start_kill();
                killed = true;
            },
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() && !killed => {
                tracing::warn!(run = id, "the worker did not stop within the grace period; killing it");
                let _ = child.start_kill();
                killed = true;
            },
        }
    }
    let status = child.wait().await;
    // Its stdout read to the end, every event of the journal is stored.
    inner.forget_journal(id);
    if let Some(followers) = followers {
        let late = followers.finish(RANKS_GRACE).await;
        // A rank killed from outside is why rank 0 lost its peer, even
        // when rank 0 said so first.
        let killed_from_outside =
            late.filter(|(_, s)| std::os::unix::process::ExitStatusExt::signal(s).is_some());
        rank_failed = rank_failed.or(killed_from_outside);
    }
    let _ = tail_task.await;
    if let Some((rank, status)) = rank_failed {
        return fail(format!(
            "rank {rank} of {rank_count} {}; the other ranks were stopped",
            crate::launch::describe(status)
        ));
    }
    if let Some(reason) = rank_zero_failure {
        return fail(format!("rank 0 of {rank_count} failed: {reason}"));
    }
    if ended {
        return;
    }
    if stop_requested {
        if let Err(error) = inner.store.set_status(id, "stopped", None) {
            tracing::error!(%error, run = id, "marking a run stopped");
        }
        return;
    }
    let exit = match &status {
        Ok(status) => match status.code() {
            Some(code) => format!("exit code {code}"),
            None => format!("{status}"),
        },
        Err(error) => format!("unknown status ({error})"),
    };
    let killed = status
        .as_ref()
        .is_ok_and(|status| std::os::unix::process::ExitStatusExt::signal(status) == Some(9));
    if killed {
        let oom_kills_after = crate::failure::OomKills::now();
        return fail(crate::failure::killed_worker(
            &exit,
            oom_kills_before,
            oom_kills_after,
        ));
    }
    let last: Vec<String> = {
        let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        let skip = tail.len().saturating_sub(CRASH_LINES);
        tail.iter().skip(skip).cloned().collect()
    };
    let reason = if last.is_empty() {
        format!("the worker process ended ({exit}) without reporting why")
    } else {
        format!(
            "the worker process ended ({exit}) without finishing; its last words:\n{}",
            last.join("\n")
        )
    };
    fail(crate::failure::explain(reason));
}

/// How long the other ranks get to end on their own after rank 0 did.
const RANKS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn run_config_ranks(command: &Command) -> usize {
    match command {
        Command::Train { config, .. } => config.gpus.max(1),
        Command::Stop => 1,
    }
}

async fn send(stdin: &mut tokio::process::ChildStdin, line: &str) -> std::io::Result<()> {
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}
