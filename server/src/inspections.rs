//! Dataset inspections with a model's tokenizer, computed once: tokenizing
//! every example takes seconds for a large dataset, and the dataset page,
//! the memory estimate of every run creation and the form's Check all ask
//! for the same figures. An inspection is stored (SQLite) under the dataset
//! folder and what the figures depend on, with the files' sizes and times:
//! an upload that replaces the files, or an edit by hand, makes it stale.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use engine::config::TrainConfig;
use engine::data::{FormatKeys, Inspection, Progress, Split};
use engine::tokenizer::TokenizerBundle;
use serde_json::json;

use crate::datasets::TokenizerCache;
use crate::store::{ModelSummary, Store};

/// Inspections of this server: those stored, and those being computed now,
/// which every asker for the same figures shares (a page that asks again
/// sees how far one is instead of starting another).
pub struct Inspections {
    store: Arc<Store>,
    running: Arc<Running>,
}

type Running = Mutex<HashMap<JobKey, Arc<Job>>>;

/// The dataset folder, the settings and the files' signature.
type JobKey = (String, String, String);

/// An inspection being computed on a thread of its own.
struct Job {
    state: Mutex<JobState>,
    changed: Condvar,
}

#[derive(Clone)]
enum JobState {
    Running(Progress),
    Finished(Result<Inspection, String>),
}

/// What [`Inspections::inspect_or_progress`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Inspected {
    Ready(Inspection),
    /// Still tokenizing, this far.
    Running(Progress),
}

impl Inspections {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            running: Arc::default(),
        }
    }

    /// `dir_or_file` inspected with `model`'s tokenizer and the settings of
    /// `cfg` that change the figures, with previews of the first
    /// `preview_limit` training examples: from the store when it holds one
    /// for these files, else computed and stored. Blocks until then (call it
    /// off the async runtime).
    pub fn inspect(
        &self,
        tokenizers: &TokenizerCache,
        model: &ModelSummary,
        dir_or_file: &Path,
        cfg: &TrainConfig,
        preview_limit: usize,
    ) -> anyhow::Result<Inspection> {
        match self.ask(tokenizers, model, dir_or_file, cfg, preview_limit, None)? {
            Inspected::Ready(inspection) => Ok(inspection),
            Inspected::Running(_) => anyhow::bail!("the dataset inspection did not finish"),
        }
    }

    /// [`Self::inspect`], waiting at most `patience` for a computation:
    /// a small dataset is ready at once, a large one answers how far its
    /// tokenization is while it goes on.
    pub fn inspect_or_progress(
        &self,
        tokenizers: &TokenizerCache,
        model: &ModelSummary,
        dir_or_file: &Path,
        cfg: &TrainConfig,
        preview_limit: usize,
        patience: Duration,
    ) -> anyhow::Result<Inspected> {
        self.ask(
            tokenizers,
            model,
            dir_or_file,
            cfg,
            preview_limit,
            Some(patience),
        )
    }

    fn ask(
        &self,
        tokenizers: &TokenizerCache,
        model: &ModelSummary,
        dir_or_file: &Path,
        cfg: &TrainConfig,
        preview_limit: usize,
        patience: Option<Duration>,
    ) -> anyhow::Result<Inspected> {
        let directory = dir_or_file.display().to_string();
        let settings = settings_key(model, cfg, preview_limit);
        let files = files_signature(dir_or_file);
        if let Some(json) = self.store.inspection(&directory, &settings, &files)? {
            if let Ok(inspection) = serde_json::from_str(&json) {
                return Ok(Inspected::Ready(inspection));
            }
            // Written by another version: computed again below.
        }
        let key = (directory, settings, files);
        let job = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get(&key) {
                Some(job) => job.clone(),
                None => {
                    let tokenizer = tokenizers.get(model)?;
                    let job = Arc::new(Job {
                        state: Mutex::new(JobState::Running(Progress::default())),
                        changed: Condvar::new(),
                    });
                    running.insert(key.clone(), job.clone());
                    let task = Task {
                        store: self.store.clone(),
                        running: self.running.clone(),
                        key,
                        dir_or_file: dir_or_file.to_path_buf(),
                        cfg: cfg.clone(),
                        preview_limit,
                        tokenizer,
                        job: job.clone(),
                    };
                    std::thread::Builder::new()
                        .name("dataset-inspection".into())
                        .spawn(move || task.run())
                        .context("cannot start a dataset inspection")?;
                    job
                }
            }
        };
        match job.wait(patience) {
            JobState::Running(progress) => Ok(Inspected::Running(progress)),
            JobState::Finished(result) => result.map(Inspected::Ready).map_err(anyhow::Error::msg),
        }
    }
}

impl Job {
    fn set(&self, state: JobState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        self.changed.notify_all();
    }

    /// The state once finished, or after `patience` (`None`: no limit).
    fn wait(&self, patience: Option<Duration>) -> JobState {
        let deadline = patience.map(|patience| Instant::now() + patience);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if matches!(*state, JobState::Finished(_)) {
                return state.clone();
            }
            state = match deadline {
                None => self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return state.clone();
                    }
                    self.changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

/// One computation, on its own thread: tokenize, store, tell the askers.
struct Task {
    store: Arc<Store>,
    running: Arc<Running>,
    key: JobKey,
    dir_or_file: PathBuf,
    cfg: TrainConfig,
    preview_limit: usize,
    tokenizer: Arc<TokenizerBundle>,
    job: Arc<Job>,
}

impl Task {
    fn run(self) {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.compute()))
            .unwrap_or_else(|_| Err("the dataset inspection failed unexpectedly".to_string()));
        // Out of the list first: an asker from now on finds the stored figures.
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        self.job.set(JobState::Finished(result));
    }

    fn compute(&self) -> Result<Inspection, String> {
        let inspection = engine::data::inspect_with_progress(
            &self.dir_or_file,
            &FormatKeys::default(),
            &self.tokenizer,
            &self.cfg,
            (Split::Train, self.preview_limit),
            &mut |progress| self.job.set(JobState::Running(progress)),
        );
        let (directory, settings, files) = &self.key;
        // The files may have changed while they were read: such figures are
        // not stored under the new files' signature.
        if files_signature(&self.dir_or_file) == *files {
            let json = serde_json::to_string(&inspection)
                .map_err(|error| format!("cannot store the inspection: {error}"))?;
            self.store
                .save_inspection(directory, settings, files, &json)
                .map_err(|error| format!("cannot store the inspection: {error}"))?;
        }
        Ok(inspection)
    }
}

/// What an inspection's figures depend on besides the files: the
/// tokenizer (and chat template) of the model, as its file is now, and the
/// settings `engine::data` reads.
fn settings_key(model: &ModelSummary, cfg: &TrainConfig, preview_limit: usize) -> String {
    json!({
        "tokenizer": model.location,
        "tokenizer_file": signature_of(Path::new(&model.location)),
        "max_seq_length": cfg.max_seq_length,
        "mask_prompt": cfg.mask_prompt,
        "split_fraction": cfg.split_fraction,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "previews": preview_limit,
    })
    .to_string()
}

/// Sizes and modification times of the dataset's files.
fn files_signature(dir_or_file: &Path) -> String {
    if dir_or_file.is_dir() {
        Split::ALL
            .iter()
            .map(|split| {
                let name = split.file_name();
                format!("{name}:{}", signature_of(&dir_or_file.join(name)))
            })
            .collect::<Vec<_>>()
            .join(";")
    } else {
        signature_of(dir_or_file)
    }
}

/// `size:mtime_ns` of a file, or of a folder's `tokenizer.json` and
/// `tokenizer_config.json` (a model folder); `-` when missing.
fn signature_of(path: &Path) -> String {
    let one = |path: &Path| match std::fs::metadata(path) {
        Ok(meta) => {
            let modified = meta
                .modified()
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |elapsed| elapsed.as_nanos());
            format!("{}:{modified}", meta.len())
        }
        Err(_) => "-".to_string(),
    };
    if path.is_dir() {
        ["tokenizer.json", "tokenizer_config.json"]
            .iter()
            .map(|name| one(&path.join(name)))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        one(path)
    }
}
