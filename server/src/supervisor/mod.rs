//! The job supervisor: a queue of runs, one `loralab worker` child process
//! per running run, every worker event persisted (run_events + runs, one
//! transaction each) and then fanned out to live listeners.

mod admission;
mod ranks;
mod settings;
mod worker_process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use engine::protocol::Event;
use tokio::sync::{broadcast, mpsc, watch, Notify};

pub use settings::SupervisorSettings;

use admission::{Admission, RunAdmission};

use crate::store::{RunUpdate, Store, StoreError, StoredEvent};
use crate::worker::EVENTS_JOURNAL;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("run {id} is {status}; {action}")]
    Conflict {
        id: i64,
        status: String,
        action: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A message to a run's driver task.
#[derive(Debug)]
enum Control {
    Stop,
    /// Go on with a run its guard paused, before the machine cooled.
    Resume,
}

#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    runs_dir: PathBuf,
    settings: SupervisorSettings,
    /// Runs with a live driver task, and how to reach it.
    active: Mutex<HashMap<i64, mpsc::UnboundedSender<Control>>>,
    events: broadcast::Sender<Arc<StoredEvent>>,
    updates: broadcast::Sender<RunUpdate>,
    shutdown: watch::Sender<bool>,
    /// Worker slots and memory estimates: of the runs, the inference
    /// worker (see `crate::inference`) and exports (see `crate::exports`).
    admission: Admission,
    /// Tells the inference manager that a queued run waits for its slot.
    inference_preempt: Notify,
    /// The machine's figures, which drivers store and guard runs with.
    monitor: crate::system::Monitor,
    /// Runs their guard holds now (the worker checkpointed and exited; the
    /// driver keeps the slot and starts a resuming worker when cool).
    paused: Mutex<HashMap<i64, app::system_dto::GuardPause>>,
}

impl Supervisor {
    /// Recovers from the previous server's end (runs it left running become
    /// `interrupted`; queued runs start again) and starts the queue. Must be
    /// called inside the Tokio runtime.
    pub fn start(
        store: Arc<Store>,
        runs_dir: PathBuf,
        settings: SupervisorSettings,
        monitor: crate::system::Monitor,
    ) -> Result<Self, SupervisorError> {
        let (events, _) = broadcast::channel(1024);
        let (updates, _) = broadcast::channel(256);
        let (shutdown, _) = watch::channel(false);
        let supervisor = Self {
            inner: Arc::new(Inner {
                store,
                runs_dir,
                admission: Admission::new(settings.max_concurrent, settings.memory_budget),
                settings,
                active: Mutex::new(HashMap::new()),
                events,
                updates,
                shutdown,
                inference_preempt: Notify::new(),
                monitor,
                paused: Mutex::default(),
            }),
        };
        for id in supervisor.inner.store.interrupt_orphans()? {
            supervisor.inner.import_journal(id);
            // Imported events may say `stopped`; the run is still only resumable.
            supervisor.inner.store.set_status(id, "interrupted", None)?;
            tracing::info!(run = id, "run interrupted by the previous server's end");
        }
        supervisor.kick();
        Ok(supervisor)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn monitor(&self) -> &crate::system::Monitor {
        &self.inner.monitor
    }

    /// The guard's pause of run `id`, while it holds.
    pub fn paused(&self, id: i64) -> Option<app::system_dto::GuardPause> {
        self.inner.paused().get(&id).cloned()
    }

    /// Marks the runs of a list that their guard holds.
    pub fn mark_paused(&self, runs: &mut [app::dto::RunSummary]) {
        let paused = self.inner.paused();
        for run in runs {
            run.paused = paused.contains_key(&run.id);
        }
    }

    /// The memory runs, exports and the inference worker share, when known.
    pub fn memory_budget(&self) -> Option<u64> {
        self.inner.settings.memory_budget
    }

    pub fn run_dir(&self, id: i64) -> PathBuf {
        self.inner.runs_dir.join(id.to_string())
    }

    /// Every stored event of every run, as it is committed.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.inner.events.subscribe()
    }

    /// Status and progress changes of runs.
    pub fn subscribe_updates(&self) -> broadcast::Receiver<RunUpdate> {
        self.inner.updates.subscribe()
    }

    /// Becomes true when the server shuts down; streams end then.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Starts queued runs while there is room.
    pub fn kick(&self) {
        let mut active = self.inner.active();
        let queued = match self.inner.store.queued_runs() {
            Ok(queued) => queued,
            Err(error) => {
                tracing::error!(%error, "reading the queue");
                return;
            }
        };
        for id in queued {
            if active.contains_key(&id) {
                continue;
            }
            let running: Vec<i64> = active.keys().copied().collect();
            match self.inner.admission.admit_run(id, &running) {
                RunAdmission::Start => {}
                RunAdmission::Wait => break,
                RunAdmission::WaitForInference => {
                    self.inner.inference_preempt.notify_one();
                    break;
                }
            }
            if let Err(error) = self.inner.store.set_status(id, "running", None) {
                tracing::error!(%error, run = id, "starting a run");
                continue;
            }
            self.inner.publish_update(id);
            let (control, receiver) = mpsc::unbounded_channel();
            active.insert(id, control);
            let supervisor = self.clone();
            tokio::spawn(async move {
                worker_process::drive(&supervisor, id, receiver).await;
                supervisor.inner.active().remove(&id);
                supervisor.inner.publish_update(id);
                supervisor.kick();
            });
        }
    }

    /// Takes a slot for the inference worker that will hold `estimate`
    /// bytes, if one is free and the memory budget has room for it beside
    /// the runs (when none runs, it always does).
    pub fn try_take_inference_slot(&self, estimate: Option<u64>) -> bool {
        let active = self.inner.active();
        // A run's final status is stored just before its driver lets go of
        // its slot; a run already stopped, done or failed is on its way out
        // and does not hold a user who saw it end.
        let busy: Vec<i64> = active
            .keys()
            .copied()
            .filter(|id| {
                self.inner.store.run_update(*id).is_ok_and(|run| {
                    run.is_some_and(|run| {
                        matches!(run.status.as_str(), "queued" | "running" | "stopping")
                    })
                })
            })
            .collect();
        self.inner.admission.take_inference_slot(estimate, &busy)
    }

    /// Admits export `id`, which needs `estimate` bytes, when the memory
    /// budget has room for it beside the runs, the inference worker and
    /// other exports (alone, it always starts).
    pub fn try_admit_export(&self, id: i64, estimate: u64) -> bool {
        let active = self.inner.active();
        let running: Vec<i64> = active.keys().copied().collect();
        self.inner.admission.admit_export(id, estimate, &running)
    }

    /// Export `id` ended: its memory goes back to queued runs.
    pub fn release_export(&self, id: i64) {
        self.inner.admission.release_export(id);
        self.kick();
    }

    /// The inference worker loaded another model, which holds `estimate`.
    pub fn set_inference_estimate(&self, estimate: Option<u64>) {
        self.inner.admission.set_inference_estimate(estimate);
    }

    /// The inference worker ended: its slot goes to queued runs.
    pub fn release_inference_slot(&self) {
        self.inner.admission.release_inference_slot();
        self.kick();
    }

    /// Resolves when a queued run waits for the inference worker's slot.
    pub async fn inference_preempted(&self) {
        self.inner.inference_preempt.notified().await;
    }

    /// Queues a new run (already inserted in the store) with its memory
    /// estimate in bytes, when one could be made.
    pub fn enqueue(&self, id: i64, estimate: Option<u64>) {
        if let Some(bytes) = estimate {
            self.inner.admission.set_run_estimate(id, bytes);
        }
        self.queue(id);
    }

    fn queue(&self, id: i64) {
        self.inner.publish_update(id);
        self.kick();
    }

    /// The run's status now; `NotFound` when there is no such run.
    fn status_of(&self, id: i64) -> Result<String, SupervisorError> {
        let run = self
            .inner
            .store
            .run_update(id)?
            .ok_or(SupervisorError::NotFound(id))?;
        Ok(run.status)
    }

    /// Stops a queued run at once, or asks a running one's worker to
    /// checkpoint and exit.
    pub fn stop(&self, id: i64) -> Result<(), SupervisorError> {
        match self.status_of(id)?.as_str() {
            "queued" => {
                self.inner.store.set_status(id, "stopped", None)?;
                self.inner.publish_update(id);
                Ok(())
            }
            "running" | "stopping" => {
                if let Some(control) = self.inner.active().get(&id) {
                    let _ = control.send(Control::Stop);
                }
                Ok(())
            }
            status => Err(SupervisorError::Conflict {
                id,
                status: status.to_string(),
                action: "only queued or running runs can be stopped",
            }),
        }
    }

    /// Queues a stopped, interrupted or failed run again; its worker resumes
    /// from the run folder's last checkpoint. A run its guard paused goes on
    /// at once, hot or not.
    pub fn resume(&self, id: i64) -> Result<(), SupervisorError> {
        if self.inner.paused().contains_key(&id) {
            if let Some(control) = self.inner.active().get(&id) {
                let _ = control.send(Control::Resume);
            }
            return Ok(());
        }
        match self.status_of(id)?.as_str() {
            "stopped" | "interrupted" | "failed" => {
                self.inner.store.set_status(id, "queued", None)?;
                self.queue(id);
                Ok(())
            }
            status => Err(SupervisorError::Conflict {
                id,
                status: status.to_string(),
                action: "only stopped, interrupted or failed runs can be resumed",
            }),
        }
    }

    /// Deletes a run that no worker is busy with, and its folder (adapters,
    /// checkpoints). A running run must be stopped first.
    pub fn delete(&self, id: i64) -> Result<(), SupervisorError> {
        let status = self.status_of(id)?;
        if !self.inner.store.delete_finished_run(id)? {
            return Err(SupervisorError::Conflict {
                id,
                status,
                action: "stop it before deleting it",
            });
        }
        let dir = self.run_dir(id);
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, "run {id} deleted but its folder {} stays", dir.display());
            }
        }
        Ok(())
    }
}

impl Inner {
    fn paused(&self) -> MutexGuard<'_, HashMap<i64, app::system_dto::GuardPause>> {
        self.paused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores and broadcasts an event of the server's own (a machine
    /// sample, a pause, a resume).
    fn record_server_event(&self, id: i64, step: usize, body: &serde_json::Value) {
        match self.store.record_server_event(id, Some(step as i64), body) {
            Ok(stored) => {
                let _ = self.events.send(Arc::new(stored));
            }
            Err(error) => tracing::error!(%error, run = id, "storing a server event"),
        }
    }

    fn active(&self) -> MutexGuard<'_, HashMap<i64, mpsc::UnboundedSender<Control>>> {
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish_update(&self, id: i64) {
        match self.store.run_update(id) {
            Ok(Some(update)) => {
                let _ = self.updates.send(update);
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, run = id, "reading a run"),
        }
    }

    /// Persists an event, then tells listeners (in that order, so a stream
    /// that reads history after subscribing never misses one).
    fn record(&self, id: i64, event: &Event) {
        match self.store.record_event(id, event) {
            Ok(stored) => {
                let _ = self.events.send(Arc::new(stored));
                if !matches!(
                    event,
                    Event::Eval { .. } | Event::Ranks { .. } | Event::Log { .. }
                ) {
                    self.publish_update(id);
                }
            }
            Err(error) => tracing::error!(%error, run = id, "storing a worker event"),
        }
    }

    /// Records the events of a worker's journal that the store lacks (they
    /// came while no server listened, or sat unread in the pipe when the
    /// server died), then removes the journal.
    fn import_journal(&self, id: i64) {
        let path = self.runs_dir.join(id.to_string()).join(EVENTS_JOURNAL);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let mut stored = match self.store.event_bodies(id) {
            Ok(bodies) => bodies,
            Err(error) => {
                tracing::error!(%error, run = id, "reading the run's events; journal kept");
                return;
            }
        };
        for line in text.lines() {
            match serde_json::from_str::<Event>(line) {
                // Stored bodies are the events re-encoded the same way.
                Ok(event) => match serde_json::to_value(&event) {
                    Ok(body) if stored.insert(body.to_string()) => self.record(id, &event),
                    _ => {}
                },
                // The last line of a worker killed mid-write.
                Err(error) => tracing::warn!(%error, path = %path.display(), "skipping a bad line"),
            }
        }
        self.forget_journal(id);
    }

    /// Removes run `id`'s journal once every event in it is stored.
    fn forget_journal(&self, id: i64) {
        let path = self.runs_dir.join(id.to_string()).join(EVENTS_JOURNAL);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, path = %path.display(), "cannot remove"),
        }
    }
}
