//! One run's worker process: start it, feed it commands, persist what it
//! reports, keep its log tail, and decide how the run ended. Beside the
//! worker, the driver stores the machine's samples as the run's series and
//! runs its guard: too hot (or short of memory), the worker is stopped at a
//! checkpoint and the run holds, keeping its slot, until the machine is
//! cool again; then a new worker resumes it from that checkpoint.

use app::system_dto::{GuardPause, SystemSample};
use engine::config::TrainConfig;
use engine::protocol::{Command, Event};
use engine::train::checkpoint::TRAINER_STATE_FILE;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Control, Inner, Supervisor};
use crate::child::{self, LogTail};
use crate::system::guard;

/// Lines of worker stderr kept as the run's log tail.
const LOG_TAIL_LINES: usize = 50;
/// Lines of the tail quoted when a worker dies without saying why.
const CRASH_LINES: usize = 8;

/// Samples stored between two thinnings of the run's older samples.
const SAMPLES_PER_THINNING: u32 = 60;

/// How a worker of the run ended.
enum WorkerEnd {
    /// The run ended (done, stopped, failed): its status is stored.
    Finished,
    /// The guard stopped it at a checkpoint, for this reason.
    Paused(String),
}

/// One run's driver: its control channel, the machine's samples, and
/// where the run is.
struct Driver<'a> {
    supervisor: &'a Supervisor,
    id: i64,
    config: TrainConfig,
    control: mpsc::UnboundedReceiver<Control>,
    samples: watch::Receiver<std::sync::Arc<SystemSample>>,
    /// The last step the worker reported.
    step: usize,
    /// A user resumed the run while the guard held it: the guard lets it
    /// train until the machine has been cool once.
    overridden: bool,
    samples_since_thinning: u32,
}

/// Runs the worker of run `id` to its end, through any pauses.
pub(super) async fn drive(
    supervisor: &Supervisor,
    id: i64,
    control: mpsc::UnboundedReceiver<Control>,
) {
    let inner = &supervisor.inner;
    let fail = |reason: String| inner.record(id, &Event::Failed { reason });
    let run = match inner.store.run(id) {
        Ok(Some(run)) => run,
        Ok(None) => return,
        Err(error) => return fail(format!("cannot read the run: {error}")),
    };
    let config = run.config;
    let _training = inner.monitor.training();
    let mut samples = inner.monitor.subscribe();
    samples.mark_unchanged();
    let mut driver = Driver {
        supervisor,
        id,
        config,
        control,
        samples,
        step: usize::try_from(run.step).unwrap_or(0),
        overridden: false,
        samples_since_thinning: 0,
    };
    loop {
        match driver.run_worker().await {
            WorkerEnd::Finished => return,
            WorkerEnd::Paused(reason) => {
                if !driver.hold(reason).await {
                    return;
                }
            }
        }
    }
}

impl Driver<'_> {
    fn inner(&self) -> &Inner {
        &self.supervisor.inner
    }

    /// Stores `sample` as the run's, with the worker's resident memory.
    fn record_sample(&mut self, sample: &SystemSample, worker: Option<u32>) {
        let inner = &self.supervisor.inner;
        let mut sample = sample.clone();
        sample.sensors.clear();
        sample.worker_rss_bytes = worker.and_then(|pid| inner.monitor.process_rss(pid));
        let mut body = serde_json::to_value(&sample).unwrap_or_else(|_| json!({}));
        body["event"] = json!("system");
        body["step"] = json!(self.step);
        inner.record_server_event(self.id, self.step, &body);
        self.samples_since_thinning += 1;
        if self.samples_since_thinning >= SAMPLES_PER_THINNING {
            self.samples_since_thinning = 0;
            if let Err(error) = inner.store.thin_system_samples(self.id, sample.time) {
                tracing::warn!(%error, run = self.id, "thinning the run's samples");
            }
        }
    }

    /// Holds a run its guard paused: returns true to start a resuming
    /// worker (cool again, or a user's resume), false when it was stopped.
    async fn hold(&mut self, reason: String) -> bool {
        let (id, step) = (self.id, self.step);
        let since = self.samples.borrow().time;
        tracing::info!(run = id, step, %reason, "guard paused the run");
        let pause = GuardPause {
            step: step as u64,
            reason: reason.clone(),
            since,
            seconds: None,
        };
        self.inner().paused().insert(id, pause);
        self.inner().record_server_event(
            id,
            step,
            &json!({"event": "paused", "step": step, "reason": reason, "time": since}),
        );
        self.inner().publish_update(id);
        let mut samples_open = true;
        let resumed_by = loop {
            tokio::select! {
                message = self.control.recv() => match message {
                    Some(Control::Resume) => break Some("user"),
                    Some(Control::Stop) | None => break None,
                },
                changed = self.samples.changed(), if samples_open => {
                    if changed.is_err() {
                        // No more samples (the server is ending): only a stop or a resume ends the hold.
                        samples_open = false;
                        continue;
                    }
                    let sample = self.samples.borrow_and_update().clone();
                    self.record_sample(&sample, None);
                    if guard::may_resume(&self.config.thermal_guard, &sample) {
                        break Some("guard");
                    }
                },
            }
        };
        self.inner().paused().remove(&id);
        self.overridden = resumed_by == Some("user");
        let Some(by) = resumed_by else {
            // The checkpoint is there: the run is stopped as a worker stops it.
            self.inner().record(id, &Event::Stopped { step });
            return false;
        };
        let now = self.samples.borrow().time;
        self.inner().record_server_event(
            id,
            step,
            &json!({"event": "resumed", "step": step, "by": by, "time": now,
                    "paused_seconds": (now - since).max(0.0)}),
        );
        tracing::info!(run = id, step, by, "run resumes after a guard pause");
        true
    }

    /// Runs one worker process of the run to its end.
    async fn run_worker(&mut self) -> WorkerEnd {
        let supervisor = self.supervisor;
        let id = self.id;
        let inner = &supervisor.inner;
        let fail = |reason: String| {
            inner.record(id, &Event::Failed { reason });
            WorkerEnd::Finished
        };
        let config = self.config.clone();
        let run_dir = supervisor.run_dir(id);
        if let Err(error) = std::fs::create_dir_all(&run_dir) {
            return fail(format!("cannot create {}: {error}", run_dir.display()));
        }
        inner.import_journal(id);
        let resume = run_dir.join(TRAINER_STATE_FILE).is_file();
        let command = Command::Train {
            config: Box::new(config.clone()),
            run_dir: run_dir.display().to_string(),
            resume,
        };

        // A run on several ranks: rank 0 here, the others in `ranks`.
        let mut workers = match super::ranks::worker_commands(inner, &config, &run_dir).await {
            Ok(workers) => workers,
            Err(reason) => return fail(reason),
        };
        let rank_count = workers.len();
        let rank_zero = workers.remove(0);
        // With several ranks, each line of the log says whose it is.
        let rank_prefix = |rank: usize| {
            if rank_count > 1 {
                format!("[rank {rank}] ")
            } else {
                String::new()
            }
        };
        let store_inner = supervisor.inner.clone();
        let tail = LogTail::with_listener(LOG_TAIL_LINES, move |lines| {
            let text = lines.iter().cloned().collect::<Vec<_>>().join("\n");
            if let Err(error) = store_inner.store.set_log_tail(id, &text) {
                tracing::error!(%error, run = id, "storing the log tail");
            }
        });

        let oom_kills_before = crate::failure::OomKills::now();
        let spawned = child::spawn::<Command, Event>(
            child::WorkerSpec {
                command: rank_zero,
                label: format!("run {id}"),
                stderr_prefix: rank_prefix(0),
                // Left running when its driver is dropped (the server
                // ending): its stdin closing makes it checkpoint and exit.
                kill_on_drop: false,
            },
            tail.clone(),
        );
        let (mut worker, mut input, mut events) = match spawned {
            Ok(parts) => parts,
            Err(error) => return fail(format!("cannot start a worker process: {error}")),
        };
        let pid = worker.id();
        tracing::info!(run = id, resume, ?pid, "worker started");
        // The other ranks' stderr joins rank 0's in the run's log tail.
        let log_task = |rank: usize, stderr: tokio::process::ChildStderr| {
            tail.follow(stderr, rank_prefix(rank))
        };

        let mut line = serde_json::to_string(&command).unwrap_or_default();
        line.push('\n');
        if let Err(error) = input.send(&command).await {
            worker.start_kill();
            return fail(format!("cannot send the worker its command: {error}"));
        }
        let mut followers = None;
        if rank_count > 1 {
            match super::ranks::Followers::start(workers, &line, log_task).await {
                Ok(started) => followers = Some(started),
                Err(reason) => {
                    worker.start_kill();
                    return fail(reason);
                }
            }
        }
        let mut rank_failed = None;
        let mut rank_zero_failure = None;

        let mut ended = false;
        let mut stop_requested = false;
        let mut kill_at: Option<Instant> = None;
        let mut killed = false;
        // The guard's reason while the worker stops for it, and once it did.
        let mut pausing: Option<String> = None;
        let mut paused = false;
        // Samples are the run's from its `started` on: loading is not training.
        let mut started = false;
        let mut samples_open = true;
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(event) => {
                        started |= matches!(event, Event::Started { .. });
                        match &event {
                            Event::Started { start_step: step, .. }
                            | Event::Report { step, .. }
                            | Event::Checkpoint { step, .. }
                            | Event::Stopped { step } => self.step = *step,
                            _ => {}
                        }
                        // A stop the guard asked for holds the run rather than ending it.
                        if pausing.is_some() && !stop_requested && matches!(event, Event::Stopped { .. }) {
                            paused = true;
                            continue;
                        }
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
                    },
                    None => break,
                },
                changed = self.samples.changed(), if samples_open => {
                    if changed.is_err() {
                        // No more samples: the server is ending; the worker sees its input close.
                        samples_open = false;
                        continue;
                    }
                    let sample = self.samples.borrow_and_update().clone();
                    if !started {
                        continue;
                    }
                    self.record_sample(&sample, pid);
                    self.overridden &= !guard::may_resume(&config.thermal_guard, &sample);
                    if pausing.is_none() && !stop_requested && !ended && !self.overridden {
                        if let Some(reason) = guard::pause_reason(&config.thermal_guard, &sample) {
                            tracing::info!(run = id, %reason, "guard stops the worker at a checkpoint");
                            kill_at = Some(match input.send(&Command::Stop).await {
                                Ok(()) => Instant::now() + inner.settings.stop_grace,
                                Err(_) => Instant::now(),
                            });
                            pausing = Some(reason);
                        }
                    }
                },
                Some(Control::Stop) = self.control.recv(), if !stop_requested => {
                    stop_requested = true;
                    if let Err(error) = inner.store.set_status(id, "stopping", None) {
                        tracing::error!(%error, run = id, "marking a run stopping");
                    }
                    inner.publish_update(id);
                    if let Err(error) = input.send(&Command::Stop).await {
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
                    worker.start_kill();
                    killed = true;
                },
                _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() && !killed => {
                    tracing::warn!(run = id, "the worker did not stop within the grace period; killing it");
                    worker.start_kill();
                    killed = true;
                },
            }
        }
        let exit = worker.wait().await;
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
            return WorkerEnd::Finished;
        }
        if let (true, Some(reason)) = (paused, pausing) {
            return WorkerEnd::Paused(reason);
        }
        if stop_requested {
            if let Err(error) = inner.store.set_status(id, "stopped", None) {
                tracing::error!(%error, run = id, "marking a run stopped");
            }
            return WorkerEnd::Finished;
        }
        let description = &exit.description;
        if exit.signal == Some(9) {
            let oom_kills_after = crate::failure::OomKills::now();
            return fail(crate::failure::killed_worker(
                description,
                oom_kills_before,
                oom_kills_after,
            ));
        }
        // The tail as the other ranks left it too.
        let lines = tail.lines();
        let last = &lines[lines.len().saturating_sub(CRASH_LINES)..];
        let reason = if last.is_empty() {
            format!("the worker process ended ({description}) without reporting why")
        } else {
            format!(
                "the worker process ended ({description}) without finishing; its last words:\n{}",
                last.join("\n")
            )
        };
        fail(crate::failure::explain(reason))
    }
}

/// How long the other ranks get to end on their own after rank 0 did.
const RANKS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
