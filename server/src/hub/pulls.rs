//! Pulls the server runs in the background: one task per pull, its state
//! in a `watch` channel (pages read the latest, SSE streams follow it), and
//! the model registered in the catalog only once every file is in the
//! cache, so a failed pull leaves no model behind. Each pull is stored when
//! it starts and when it ends, so the list outlives a restart; one that was
//! running then is failed at the next start (pulling again resumes from
//! hf-hub's partial files).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use app::dto::{PullFile, PullView};
use tokio::sync::watch;

use super::{HubEvent, HubSettings, HubSpec};
use crate::store::{Store, StoreError};

/// How many finished pulls the models page keeps listing.
const KEEP_FINISHED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{running} is being pulled; wait for it to end before pulling {asked}")]
    Busy { running: String, asked: String },
    #[error("pull {0} does not exist (the last 20 finished pulls are kept)")]
    NotFound(u64),
    #[error("pull {id} of {spec} is {status}; only a failed pull can be {action}")]
    NotFailed {
        id: u64,
        spec: String,
        status: String,
        action: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a pull stored as running is failed when the server starts again.
pub const INTERRUPTED: &str =
    "the server stopped during this pull; pull again to resume from what was downloaded";

/// The running pulls and the last few finished ones.
pub struct Pulls {
    inner: Mutex<Inner>,
}

struct Inner {
    pulls: Vec<Arc<Pull>>,
}

pub struct Pull {
    pub id: u64,
    pub spec: HubSpec,
    state: watch::Sender<PullView>,
}

impl Pull {
    pub fn view(&self) -> PullView {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<PullView> {
        self.state.subscribe()
    }
}

impl Pulls {
    /// The pulls stored by earlier runs of the server, those it left
    /// running failed.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        store.fail_running_pulls(INTERRUPTED)?;
        let pulls = store
            .recent_pulls(KEEP_FINISHED)?
            .into_iter()
            .filter_map(|view| {
                let spec = HubSpec::parse(&view.spec).ok()?;
                let id = view.id;
                let (state, _) = watch::channel(view);
                Some(Arc::new(Pull { id, spec, state }))
            })
            .collect();
        Ok(Self {
            inner: Mutex::new(Inner { pulls }),
        })
    }

    /// Starts pulling `spec`, or returns the running pull of the same spec
    /// (`true`: joined). A different pull of the same repo is refused
    /// while one runs: they would share blobs.
    pub fn start(
        self: &Arc<Self>,
        store: Arc<Store>,
        spec: HubSpec,
    ) -> Result<(Arc<Pull>, bool), PullError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = inner
            .pulls
            .iter()
            .find(|p| p.spec.repo == spec.repo && p.view().status == "running")
        {
            if running.spec == spec {
                return Ok((running.clone(), true));
            }
            return Err(PullError::Busy {
                running: running.spec.to_string(),
                asked: spec.to_string(),
            });
        }
        let mut view = PullView {
            id: 0,
            spec: spec.to_string(),
            repo: spec.repo.clone(),
            revision: spec.revision().to_string(),
            status: "running".into(),
            commit: None,
            files: Vec::new(),
            done_bytes: 0,
            total_bytes: 0,
            bytes_per_sec: 0.0,
            from_cache: false,
            error: None,
            model_id: None,
            path: None,
            elapsed_seconds: 0.0,
        };
        view.id = store.insert_pull(&view)?;
        let id = view.id;
        let (state, _) = watch::channel(view);
        let pull = Arc::new(Pull { id, spec, state });
        inner.pulls.push(pull.clone());
        // Forget the oldest finished pulls beyond the few the page shows.
        let finished = inner
            .pulls
            .iter()
            .filter(|p| p.view().status != "running")
            .count();
        if finished > KEEP_FINISHED {
            let mut extra = finished - KEEP_FINISHED;
            inner.pulls.retain(|p| {
                let drop = extra > 0 && p.view().status != "running";
                extra -= usize::from(drop);
                !drop
            });
        }
        drop(inner);
        tokio::spawn(run(pull.clone(), store));
        Ok((pull, false))
    }

    /// Forgets failed pull `id` (the models page's Dismiss): the list and
    /// the store drop it. Running and done pulls stay; a done one says
    /// which model it registered.
    pub fn dismiss(&self, store: &Store, id: u64) -> Result<(), PullError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let pull = inner
            .pulls
            .iter()
            .find(|p| p.id == id)
            .ok_or(PullError::NotFound(id))?;
        failed_or_refuse(pull, "dismissed")?;
        store.delete_pull(id)?;
        inner.pulls.retain(|p| p.id != id);
        Ok(())
    }

    /// Pulls a failed pull's model again (Retry), in its place: what was
    /// downloaded before is kept by the cache, so only the rest is fetched.
    pub fn retry(
        self: &Arc<Self>,
        store: Arc<Store>,
        id: u64,
    ) -> Result<(Arc<Pull>, bool), PullError> {
        let failed = self.get(id).ok_or(PullError::NotFound(id))?;
        failed_or_refuse(&failed, "retried")?;
        let started = self.start(store.clone(), failed.spec.clone())?;
        self.dismiss(&store, id)?;
        Ok(started)
    }

    pub fn get(&self, id: u64) -> Option<Arc<Pull>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.pulls.iter().find(|p| p.id == id).cloned()
    }

    /// Newest first.
    pub fn list(&self) -> Vec<PullView> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.pulls.iter().rev().map(|p| p.view()).collect()
    }
}

fn failed_or_refuse(pull: &Pull, action: &'static str) -> Result<(), PullError> {
    let view = pull.view();
    if view.status == "failed" {
        return Ok(());
    }
    Err(PullError::NotFailed {
        id: pull.id,
        spec: view.spec,
        status: view.status,
        action,
    })
}

/// Parses the form's or the API's fields.
pub fn parse_request(repo: &str, revision: Option<&str>) -> Result<HubSpec, PullError> {
    if repo.trim().is_empty() {
        return Err(PullError::Invalid {
            field: "repo",
            message: "give a Hub repo id, such as HuggingFaceTB/SmolLM2-135M-Instruct".into(),
        });
    }
    HubSpec::parse_parts(repo, revision).map_err(|message| PullError::Invalid {
        field: if message.contains("revision") {
            "revision"
        } else {
            "repo"
        },
        message,
    })
}

async fn run(pull: Arc<Pull>, store: Arc<Store>) {
    let started = Instant::now();
    let state = pull.state.clone();
    let progress: super::ProgressFn = Arc::new(move |event| {
        state.send_modify(|view| {
            apply(view, event);
            view.elapsed_seconds = started.elapsed().as_secs_f64();
            let downloaded: u64 = view
                .files
                .iter()
                .filter(|f| !f.cached)
                .map(|f| f.done)
                .sum();
            view.bytes_per_sec = downloaded as f64 / view.elapsed_seconds.max(1e-3);
        });
    });
    let settings = HubSettings::from_env();
    let outcome = match super::pull(&settings, &pull.spec, progress).await {
        Ok(pulled) => {
            let (spec, store) = (pull.spec.clone(), store.clone());
            let registered = tokio::task::spawn_blocking(move || {
                crate::models::register_pulled(&store, &spec, &pulled).map(|m| (m, pulled))
            })
            .await;
            match registered {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(error)) => Err(format!("{}: {error}", pull.spec.repo)),
                Err(error) => Err(format!("{}: registering stopped: {error}", pull.spec.repo)),
            }
        }
        Err(error) => Err(error.to_string()),
    };
    pull.state.send_modify(|view| {
        view.elapsed_seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok((model, pulled)) => {
                view.status = "done".into();
                view.model_id = Some(model.id);
                view.path = Some(pulled.path.display().to_string());
                view.commit = Some(pulled.commit);
                view.from_cache = pulled.from_cache;
                view.done_bytes = view.total_bytes;
            }
            Err(error) => {
                tracing::warn!(pull = view.id, %error, "model pull failed");
                view.status = "failed".into();
                view.error = Some(error);
            }
        }
    });
    let view = pull.view();
    let saved = tokio::task::spawn_blocking(move || store.save_pull(&view))
        .await
        .map_err(anyhow::Error::from)
        .and_then(|saved| saved.map_err(anyhow::Error::from));
    if let Err(error) = saved {
        tracing::warn!(pull = pull.id, %error, "cannot store the pull's end");
    }
}

fn apply(view: &mut PullView, event: HubEvent) {
    match event {
        HubEvent::Plan { commit, files } => {
            view.commit = Some(commit);
            view.files = files
                .into_iter()
                .map(|f| PullFile {
                    done: if f.cached { f.size } else { 0 },
                    name: f.name,
                    size: f.size,
                    cached: f.cached,
                })
                .collect();
            view.from_cache = view.files.iter().all(|f| f.cached);
        }
        HubEvent::Bytes { file, bytes } => {
            if let Some(entry) = view.files.iter_mut().find(|f| f.name == file) {
                entry.done += bytes;
            }
        }
        HubEvent::FileDone { file } => {
            if let Some(entry) = view.files.iter_mut().find(|f| f.name == file) {
                entry.done = entry.size;
            }
        }
    }
    view.total_bytes = view.files.iter().map(|f| f.size).sum();
    view.done_bytes = view.files.iter().map(|f| f.done.min(f.size)).sum();
}
