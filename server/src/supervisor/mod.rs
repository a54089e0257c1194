//! The job supervisor: a queue of runs, one `loralab worker` child process
//! per running run, every worker event persisted (run_events + runs, one
//! transaction each) and then fanned out to live listeners.

mod settings;
mod worker_process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::protocol::Event;
use tokio::sync::{broadcast, mpsc, watch, Notify};

pub use settings::SupervisorSettings;

use crate::store::{RunUpdate, Store, StoreError, StoredEvent};
use crate::worker::UNDELIVERED_FILE;

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
    /// Memory estimates of runs queued or started by this server, in bytes
    /// (runs queued before a restart have none and run alone).
    estimates: Mutex<HashMap<i64, u64>>,
    /// The inference worker (see `crate::inference`) holds one slot.
    inference_slot: AtomicBool,
    /// Tells the inference manager that a queued run waits for its slot.
    inference_preempt: Notify,
}

impl Supervisor {
    /// Recovers from the previous server's end (runs it left running become
    /// `interrupted`; queued runs start again) and starts the queue. Must be
    /// called inside the Tokio runtime.
    pub fn start(
        store: Arc<Store>,
        runs_dir: PathBuf,
        settings: SupervisorSettings,
    ) -> Result<Self, SupervisorError> {
        let (events, _) = broadcast::channel(1024);
        let (updates, _) = broadcast::channel(256);
        let (shutdown, _) = watch::channel(false);
        let supervisor = Self {
            inner: Arc::new(Inner {
                store,
                runs_dir,
                settings,
                active: Mutex::new(HashMap::new()),
                estimates: Mutex::new(HashMap::new()),
                events,
                updates,
                shutdown,
                inference_slot: AtomicBool::new(false),
                inference_preempt: Notify::new(),
            }),
        };
        for id in supervisor.inner.store.interrupt_orphans()? {
            supervisor.inner.import_undelivered(id);
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
        let inference = usize::from(self.inner.inference_slot.load(Ordering::SeqCst));
        for id in queued {
            if active.contains_key(&id) {
                continue;
            }
            if active.len() + inference >= self.inner.settings.max_concurrent {
                if inference > 0 {
                    self.inner.inference_preempt.notify_one();
                }
                break;
            }
            // First in, first out: a run that does not fit holds back the
            // ones queued after it, so that a large run is not starved.
            if !active.is_empty() && !self.inner.fits_beside(id, active.keys()) {
                break;
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

    /// Takes a slot for the inference worker, if one is free.
    pub fn try_take_inference_slot(&self) -> bool {
        let active = self.inner.active();
        if self.inner.inference_slot.load(Ordering::SeqCst) {
            return true;
        }
        // A run's final status is stored just before its driver lets go of
        // its slot; a run already stopped, done or failed is on its way out
        // and does not hold a user who saw it end.
        let busy = active
            .keys()
            .filter(|id| {
                self.inner.store.run_update(**id).is_ok_and(|run| {
                    run.is_some_and(|run| {
                        matches!(run.status.as_str(), "queued" | "running" | "stopping")
                    })
                })
            })
            .count();
        if busy >= self.inner.settings.max_concurrent {
            return false;
        }
        self.inner.inference_slot.store(true, Ordering::SeqCst);
        true
    }

    /// The inference worker ended: its slot goes to queued runs.
    pub fn release_inference_slot(&self) {
        self.inner.inference_slot.store(false, Ordering::SeqCst);
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
            self.inner.estimates().insert(id, bytes);
        }
        self.queue(id);
    }

    fn queue(&self, id: i64) {
        self.inner.publish_update(id);
        self.kick();
    }

    /// Stops a queued run at once, or asks a running one's worker to
    /// checkpoint and exit.
    pub fn stop(&self, id: i64) -> Result<(), SupervisorError> {
        let run = self
            .inner
            .store
            .run_update(id)?
            .ok_or(SupervisorError::NotFound(id))?;
        match run.status.as_str() {
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
    /// from the run folder's last checkpoint.
    pub fn resume(&self, id: i64) -> Result<(), SupervisorError> {
        let run = self
            .inner
            .store
            .run_update(id)?
            .ok_or(SupervisorError::NotFound(id))?;
        match run.status.as_str() {
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
        let run = self
            .inner
            .store
            .run_update(id)?
            .ok_or(SupervisorError::NotFound(id))?;
        if !self.inner.store.delete_finished_run(id)? {
            return Err(SupervisorError::Conflict {
                id,
                status: run.status,
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
    fn estimates(&self) -> MutexGuard<'_, HashMap<i64, u64>> {
        self.estimates.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether run `id` fits in the memory budget beside the `running` ones:
    /// only when every estimate involved is known.
    fn fits_beside<'a>(&self, id: i64, running: impl Iterator<Item = &'a i64>) -> bool {
        let Some(budget) = self.settings.memory_budget else {
            return false;
        };
        let estimates = self.estimates();
        let mut total = match estimates.get(&id) {
            Some(bytes) => *bytes,
            None => return false,
        };
        for other in running {
            match estimates.get(other) {
                Some(bytes) => total += bytes,
                None => return false,
            }
        }
        total <= budget
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
                if !matches!(event, Event::Eval { .. } | Event::Log { .. }) {
                    self.publish_update(id);
                }
            }
            Err(error) => tracing::error!(%error, run = id, "storing a worker event"),
        }
    }

    /// Records what a worker wrote to `undelivered.jsonl` while no server
    /// listened, then removes the file.
    fn import_undelivered(&self, id: i64) {
        let path = self.runs_dir.join(id.to_string()).join(UNDELIVERED_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        for line in text.lines() {
            match serde_json::from_str::<Event>(line) {
                Ok(event) => self.record(id, &event),
                Err(error) => tracing::warn!(%error, path = %path.display(), "skipping a bad line"),
            }
        }
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(%error, path = %path.display(), "cannot remove");
        }
    }
}
