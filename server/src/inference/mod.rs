//! The inference worker's manager: starts `loralab inference-worker` on the
//! first request, keeps it (and its loaded base model) between requests,
//! sends generations and evaluations one at a time, relays cancels to the
//! request in flight, and stops it after an idle period or when a queued
//! training needs its slot.
//!
//! Memory budget: the worker holds a whole base model, as a training
//! worker does, so it takes one of the supervisor's `max_concurrent` slots
//! while it lives. With the default of one slot, a generation asked for
//! while a training runs is refused (the training is not interrupted), and
//! a training queued while the worker idles stops the worker at once.

pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use engine::device::DeviceInfo;
use engine::protocol::{
    BatchRowPrompt, EvalSettings, GenerationSettings, InferenceCommand, InferenceEvent,
    InferencePrompt,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::child::{self, LogTail, WorkerInput, WorkerOutput};
use crate::supervisor::Supervisor;

/// Lines of the worker's stderr kept to explain a crash.
const LOG_TAIL_LINES: usize = 20;

/// Outputs decoded together by default (`LORALAB_INFERENCE_BATCH`).
const DEFAULT_BATCH_ROWS: usize = 128;

#[derive(Debug, Clone)]
pub struct InferenceSettings {
    /// How long an unused worker keeps its model loaded.
    pub idle_timeout: Duration,
    /// The binary to run as `<exe> inference-worker`.
    pub worker_exe: PathBuf,
    /// `cpu` or `gpu`: the format the worker holds weights in, for its
    /// memory estimate.
    pub device: String,
    /// Most outputs of a comparison generated together in one batch (1:
    /// one after another).
    pub batch_rows: usize,
}

impl InferenceSettings {
    /// Defaults, overridden by `LORALAB_INFERENCE_IDLE_SECS` (300).
    pub fn from_env(device: &DeviceInfo) -> Result<Self> {
        let idle = match std::env::var("LORALAB_INFERENCE_IDLE_SECS") {
            Ok(text) => text.trim().parse::<u64>().map_err(|_| {
                anyhow!("LORALAB_INFERENCE_IDLE_SECS must be a whole number, got {text:?}")
            })?,
            Err(_) => 300,
        };
        let batch_rows = match std::env::var("LORALAB_INFERENCE_BATCH") {
            Ok(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&rows| rows >= 1)
                .ok_or_else(|| {
                    anyhow!("LORALAB_INFERENCE_BATCH must be a whole number from 1, got {text:?}")
                })?,
            Err(_) => DEFAULT_BATCH_ROWS,
        };
        Ok(Self {
            idle_timeout: Duration::from_secs(idle),
            worker_exe: std::env::current_exe().context("cannot locate the loralab binary")?,
            device: device.kind.clone(),
            batch_rows,
        })
    }
}

/// What the worker did over the server's life (`GET /api/inference`).
/// `base_loads` staying at 1 across many generations with different
/// adapters is the proof that swapping adapters does not reload the base.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InferenceStats {
    pub running: bool,
    pub model: Option<String>,
    pub adapter: Option<String>,
    pub workers_started: u64,
    pub base_loads: u64,
    pub adapter_loads: u64,
    pub generations: u64,
    pub evaluations: u64,
}

/// A finished generation and a finished evaluation, as the worker
/// reports them.
pub use engine::protocol::{Evaluated, Finished};

/// An evaluation to run: an adapter (or none) on one split of a dataset,
/// read and batched with a run's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalJob {
    /// An mlx-lm adapter folder; `None` for the bare base.
    pub adapter: Option<String>,
    /// A checkpoint's weights file used in place of the folder's own.
    pub adapter_weights: Option<String>,
    /// The dataset folder (or single JSONL file).
    pub dataset: String,
    /// `train`, `valid` or `test`.
    pub split: String,
    pub settings: EvalSettings,
}

/// Asked by a request between tokens or batches: once it reads true, the
/// worker is told to stop that request.
#[derive(Debug, Clone)]
pub struct CancelToken(watch::Receiver<bool>);

impl CancelToken {
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled; never when the token can no longer be.
    async fn cancelled(&mut self) {
        if self.0.wait_for(|cancelled| *cancelled).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A cancellable piece of work under a key (`chat:7`, `compare:3`): while
/// it lives, [`Inference::cancel`] with the key reaches its token.
pub struct Cancellable {
    inner: Arc<Inner>,
    key: String,
    token: CancelToken,
}

impl Cancellable {
    pub fn token(&self) -> CancelToken {
        self.token.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        let mut cancels = lock(&self.inner.cancels);
        // A newer registration under the same key keeps its own entry.
        if cancels
            .get(&self.key)
            .is_some_and(|sender| sender.subscribe().same_channel(&self.token.0))
        {
            cancels.remove(&self.key);
        }
    }
}

/// What a batched generation reports on its way; rows are named by their
/// index in the request.
#[derive(Debug, Clone, PartialEq)]
pub enum RowUpdate<'a> {
    /// These rows start decoding now, together.
    Started(&'a [usize]),
    Text {
        row: usize,
        text: &'a str,
    },
    Finished {
        row: usize,
        result: Finished,
    },
    /// The row could not be generated; the others go on.
    Failed {
        row: usize,
        reason: String,
    },
}

/// What a request produces on its way.
enum Update<'a> {
    Text(&'a str),
    Progress { batches: usize, total: usize },
    Row(RowUpdate<'a>),
}

/// What a request ends with.
enum Outcome {
    Finished(Finished),
    Evaluated(Evaluated),
    /// Every row of a batched generation ended (each reported on its way).
    Batch,
}

/// What a request asks the worker to do.
enum Job {
    Generate {
        adapter: Option<String>,
        prompt: InferencePrompt,
        settings: GenerationSettings,
    },
    GenerateBatch {
        rows: Vec<BatchRowPrompt>,
        settings: GenerationSettings,
        max_rows: usize,
    },
    Evaluate(EvalJob),
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// No slot is free: trainings use them all.
    #[error("{0}")]
    Busy(String),
    /// The request failed (bad adapter, bad settings) or the worker died.
    #[error("{0}")]
    Failed(String),
}

#[derive(Clone)]
pub struct Inference {
    inner: Arc<Inner>,
}

struct Inner {
    settings: InferenceSettings,
    supervisor: Supervisor,
    /// The worker, when one runs. Held for a whole request, so requests
    /// queue here one after another.
    worker: tokio::sync::Mutex<Option<Worker>>,
    stats: Mutex<InferenceStats>,
    last_used: Mutex<Instant>,
    next_request: AtomicU64,
    /// A queued training asked for the slot.
    preempt: AtomicBool,
    /// Work that can be cancelled now, by key.
    cancels: Mutex<HashMap<String, watch::Sender<bool>>>,
}

struct Worker {
    process: child::Worker,
    input: WorkerInput<InferenceCommand>,
    events: WorkerOutput<InferenceEvent>,
    tail: LogTail,
    model: Option<String>,
    base_loads_seen: u64,
    adapter_loads_seen: u64,
}

impl Inference {
    /// Starts the idle/preemption watcher. Must be called inside Tokio.
    pub fn start(supervisor: Supervisor, settings: InferenceSettings) -> Self {
        let inference = Self {
            inner: Arc::new(Inner {
                settings,
                supervisor,
                worker: tokio::sync::Mutex::new(None),
                stats: Mutex::new(InferenceStats::default()),
                last_used: Mutex::new(Instant::now()),
                next_request: AtomicU64::new(1),
                preempt: AtomicBool::new(false),
                cancels: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(watch(inference.inner.clone()));
        inference
    }

    pub fn stats(&self) -> InferenceStats {
        lock(&self.inner.stats).clone()
    }

    /// Most outputs a batched generation decodes together.
    pub fn batch_rows(&self) -> usize {
        self.inner.settings.batch_rows
    }

    /// Registers work under `key` that [`Self::cancel`] can stop, until
    /// the returned guard is dropped. A second registration under the same
    /// key takes the key over.
    pub fn cancellable(&self, key: &str) -> Cancellable {
        let (sender, receiver) = watch::channel(false);
        lock(&self.inner.cancels).insert(key.to_string(), sender);
        Cancellable {
            inner: self.inner.clone(),
            key: key.to_string(),
            token: CancelToken(receiver),
        }
    }

    /// Cancels the work registered under `key`; false when there is none.
    pub fn cancel(&self, key: &str) -> bool {
        match lock(&self.inner.cancels).get(key) {
            Some(sender) => {
                sender.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Generates with the base model at `model` (a GGUF file or an HF
    /// folder) and `adapter` (an mlx-lm adapter folder, or none), calling
    /// `on_text` with each piece of text as it comes.
    pub async fn generate(
        &self,
        model: &str,
        adapter: Option<&str>,
        prompt: InferencePrompt,
        settings: GenerationSettings,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Finished, InferenceError> {
        self.generate_cancellable(model, adapter, prompt, settings, on_text, None)
            .await
    }

    /// [`Self::generate`] that stops between two tokens once `cancel`
    /// fires: the result then has what was generated, with finish reason
    /// `cancelled`.
    pub async fn generate_cancellable(
        &self,
        model: &str,
        adapter: Option<&str>,
        prompt: InferencePrompt,
        settings: GenerationSettings,
        on_text: &mut (dyn FnMut(&str) + Send),
        cancel: Option<CancelToken>,
    ) -> Result<Finished, InferenceError> {
        let job = Job::Generate {
            adapter: adapter.map(str::to_string),
            prompt,
            settings,
        };
        let mut on_update = |update: Update<'_>| {
            if let Update::Text(text) = update {
                on_text(text);
            }
        };
        match self.run(model, job, &mut on_update, cancel).await? {
            Outcome::Finished(finished) => Ok(finished),
            Outcome::Evaluated(_) | Outcome::Batch => Err(InferenceError::Failed(
                "the inference worker answered a generation with something else".into(),
            )),
        }
    }

    /// Generates every row of `rows` (a prompt with an adapter folder or
    /// none) with the base model at `model`, up to `max_rows` decoded
    /// together (1: one after another); each row's progress goes to
    /// `on_update`. Once `cancel` fires, every row stops between two steps
    /// and keeps its text (finish reason `cancelled`), and the rows not
    /// started end with none.
    pub async fn generate_batch(
        &self,
        model: &str,
        rows: Vec<BatchRowPrompt>,
        settings: GenerationSettings,
        max_rows: usize,
        on_update: &mut (dyn FnMut(RowUpdate<'_>) + Send),
        cancel: Option<CancelToken>,
    ) -> Result<(), InferenceError> {
        let job = Job::GenerateBatch {
            rows,
            settings,
            max_rows,
        };
        let mut on_update = |update: Update<'_>| {
            if let Update::Row(row) = update {
                on_update(row);
            }
        };
        match self.run(model, job, &mut on_update, cancel).await? {
            Outcome::Batch => Ok(()),
            Outcome::Finished(_) | Outcome::Evaluated(_) => Err(InferenceError::Failed(
                "the inference worker answered a batched generation with something else".into(),
            )),
        }
    }

    /// Evaluates `job` on the base model at `model`, calling `on_progress`
    /// with (batches done, batches in all) after each batch.
    pub async fn evaluate(
        &self,
        model: &str,
        job: EvalJob,
        on_progress: &mut (dyn FnMut(usize, usize) + Send),
        cancel: Option<CancelToken>,
    ) -> Result<Evaluated, InferenceError> {
        let mut on_update = |update: Update<'_>| {
            if let Update::Progress { batches, total } = update {
                on_progress(batches, total);
            }
        };
        match self
            .run(model, Job::Evaluate(job), &mut on_update, cancel)
            .await?
        {
            Outcome::Evaluated(evaluated) => Ok(evaluated),
            Outcome::Finished(_) | Outcome::Batch => Err(InferenceError::Failed(
                "the inference worker answered an evaluation with a generation".into(),
            )),
        }
    }

    /// Runs one request on the worker, starting it when none runs.
    async fn run(
        &self,
        model: &str,
        job: Job,
        on_update: &mut (dyn FnMut(Update<'_>) + Send),
        cancel: Option<CancelToken>,
    ) -> Result<Outcome, InferenceError> {
        let inner = &self.inner;
        let mut guard = inner.worker.lock().await;
        *lock(&inner.last_used) = Instant::now();
        if guard.is_none() {
            let estimate = estimate_inference(&inner.settings.device, model);
            if !inner.supervisor.try_take_inference_slot(estimate) {
                return Err(InferenceError::Busy(
                    "the trainings running take every worker slot (LORALAB_MAX_CONCURRENT_RUNS) \
                     or the memory budget (LORALAB_MEMORY_BUDGET_MB) has no room for this model \
                     beside them; wait for them to finish or raise the limit"
                        .into(),
                ));
            }
            match spawn(&inner.settings) {
                Ok(worker) => {
                    let mut stats = lock(&inner.stats);
                    stats.workers_started += 1;
                    stats.running = true;
                    *guard = Some(worker);
                }
                Err(error) => {
                    inner.supervisor.release_inference_slot();
                    return Err(InferenceError::Failed(format!("{error:#}")));
                }
            }
        }
        let outcome = {
            let worker = guard.as_mut().expect("started above");
            if worker
                .model
                .as_deref()
                .is_some_and(|loaded| loaded != model)
            {
                let estimate = estimate_inference(&inner.settings.device, model);
                inner.supervisor.set_inference_estimate(estimate);
            }
            request(inner, worker, model, job, on_update, cancel).await
        };
        *lock(&inner.last_used) = Instant::now();
        match outcome {
            Ok(result) => {
                match &result {
                    Ok(Outcome::Finished(_)) => lock(&inner.stats).generations += 1,
                    Ok(Outcome::Evaluated(_)) => lock(&inner.stats).evaluations += 1,
                    // Each row was counted as it finished.
                    Ok(Outcome::Batch) | Err(_) => {}
                }
                result
            }
            // The worker is gone or unusable: forget it and free its slot.
            Err(error) => {
                let worker = guard.take();
                let tail = worker
                    .as_ref()
                    .map(|w| w.tail.lines().join("\n"))
                    .unwrap_or_default();
                if let Some(worker) = worker {
                    stop(worker).await;
                }
                self.worker_ended();
                let mut reason = format!("the inference worker failed: {error:#}");
                if !tail.is_empty() {
                    reason.push_str("; its last words:\n");
                    reason.push_str(&tail);
                }
                Err(InferenceError::Failed(reason))
            }
        }
    }

    fn worker_ended(&self) {
        {
            let mut stats = lock(&self.inner.stats);
            stats.running = false;
            stats.model = None;
            stats.adapter = None;
        }
        self.inner.supervisor.release_inference_slot();
    }
}

/// Runs one request on a live worker. The outer error means the worker
/// itself broke; the inner one that only this request failed.
/// What the worker holds with `model` loaded; `None` (it then never runs
/// beside a training) when the model's files cannot be read.
fn estimate_inference(device: &str, model: &str) -> Option<u64> {
    crate::estimate::estimate_inference(device, std::path::Path::new(model))
        .map_err(|error| tracing::warn!(%error, "no memory estimate for the inference worker"))
        .ok()
}

async fn request(
    inner: &Inner,
    worker: &mut Worker,
    model: &str,
    job: Job,
    on_update: &mut (dyn FnMut(Update<'_>) + Send),
    mut cancel: Option<CancelToken>,
) -> Result<Result<Outcome, InferenceError>> {
    if worker.model.as_deref() != Some(model) {
        send(
            &mut worker.input,
            &InferenceCommand::Load {
                model: model.to_string(),
            },
        )
        .await?;
        loop {
            match next_event(worker).await? {
                InferenceEvent::Loaded { base_loads, .. } => {
                    let mut stats = lock(&inner.stats);
                    stats.base_loads += base_loads.saturating_sub(worker.base_loads_seen);
                    worker.base_loads_seen = base_loads;
                    stats.model = Some(model.to_string());
                    stats.adapter = None;
                    worker.model = Some(model.to_string());
                    break;
                }
                InferenceEvent::Error {
                    request: None,
                    reason,
                } => {
                    worker.model = None;
                    return Ok(Err(InferenceError::Failed(reason)));
                }
                other => tracing::warn!(?other, "unexpected inference event while loading"),
            }
        }
    }
    let id = inner.next_request.fetch_add(1, Ordering::SeqCst);
    let command = match job {
        Job::Generate {
            adapter,
            prompt,
            settings,
        } => InferenceCommand::Generate {
            request: id,
            adapter,
            prompt,
            settings,
        },
        Job::GenerateBatch {
            rows,
            settings,
            max_rows,
        } => InferenceCommand::GenerateBatch {
            request: id,
            rows,
            settings,
            max_rows,
        },
        Job::Evaluate(job) => InferenceCommand::Evaluate {
            request: id,
            adapter: job.adapter,
            adapter_weights: job.adapter_weights,
            dataset: job.dataset,
            split: job.split,
            settings: job.settings,
        },
    };
    send(&mut worker.input, &command).await?;
    let mut cancel_sent = false;
    let mut adapter_set = false;
    loop {
        let event = tokio::select! {
            event = next_event(worker) => event?,
            () = async {
                match cancel.as_mut() {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            }, if !cancel_sent => {
                // The worker reads its input while it works; it stops at
                // the next token or batch and answers as usual.
                send(&mut worker.input, &InferenceCommand::Cancel { request: id }).await?;
                cancel_sent = true;
                continue;
            }
        };
        match event {
            InferenceEvent::AdapterSet {
                request,
                adapter,
                adapter_loads,
                ..
            } if request == id => {
                let mut stats = lock(&inner.stats);
                stats.adapter_loads += adapter_loads.saturating_sub(worker.adapter_loads_seen);
                worker.adapter_loads_seen = adapter_loads;
                stats.adapter = adapter;
                adapter_set = true;
            }
            InferenceEvent::Text { request, text } if request == id => {
                on_update(Update::Text(&text))
            }
            InferenceEvent::AdaptersLoaded {
                request,
                adapter_loads,
                ..
            } if request == id => {
                let mut stats = lock(&inner.stats);
                stats.adapter_loads += adapter_loads.saturating_sub(worker.adapter_loads_seen);
                worker.adapter_loads_seen = adapter_loads;
            }
            InferenceEvent::RowsStarted { request, rows } if request == id => {
                on_update(Update::Row(RowUpdate::Started(&rows)))
            }
            InferenceEvent::RowText { request, row, text } if request == id => {
                on_update(Update::Row(RowUpdate::Text { row, text: &text }))
            }
            InferenceEvent::RowFinished {
                request,
                row,
                result,
            } if request == id => {
                lock(&inner.stats).generations += 1;
                on_update(Update::Row(RowUpdate::Finished { row, result }))
            }
            InferenceEvent::RowFailed {
                request,
                row,
                reason,
            } if request == id => on_update(Update::Row(RowUpdate::Failed { row, reason })),
            InferenceEvent::BatchFinished {
                request, adapter, ..
            } if request == id => {
                lock(&inner.stats).adapter = adapter;
                return Ok(Ok(Outcome::Batch));
            }
            InferenceEvent::EvalProgress {
                request,
                batches,
                total,
            } if request == id => on_update(Update::Progress { batches, total }),
            InferenceEvent::Finished { request, result } if request == id => {
                return Ok(Ok(Outcome::Finished(result)))
            }
            InferenceEvent::Evaluated { request, result } if request == id => {
                return Ok(Ok(Outcome::Evaluated(result)))
            }
            InferenceEvent::Error { request, reason } if request == Some(id) => {
                // A failed swap leaves the bare base in place; a failure
                // after it (a bad dataset) leaves the adapter.
                if !adapter_set {
                    lock(&inner.stats).adapter = None;
                }
                return Ok(Err(InferenceError::Failed(reason)));
            }
            other => tracing::warn!(?other, "unexpected inference event"),
        }
    }
}

fn spawn(settings: &InferenceSettings) -> Result<Worker> {
    let tail = LogTail::with_listener(LOG_TAIL_LINES, |lines| {
        if let Some(line) = lines.back() {
            tracing::debug!(target: "inference_worker", "{line}");
        }
    });
    let (process, input, events) = child::spawn(
        child::WorkerSpec {
            command: child::loralab(&settings.worker_exe, "inference-worker"),
            label: "inference".into(),
            stderr_prefix: String::new(),
            kill_on_drop: true,
        },
        tail.clone(),
    )
    .context("cannot start the inference worker")?;
    tracing::info!(pid = ?process.id(), "inference worker started");
    Ok(Worker {
        process,
        input,
        events,
        tail,
        model: None,
        base_loads_seen: 0,
        adapter_loads_seen: 0,
    })
}

async fn send(input: &mut WorkerInput<InferenceCommand>, command: &InferenceCommand) -> Result<()> {
    input
        .send(command)
        .await
        .context("cannot write to the inference worker")
}

async fn next_event(worker: &mut Worker) -> Result<InferenceEvent> {
    worker
        .events
        .next()
        .await
        .ok_or_else(|| anyhow!("the inference worker exited"))
}

async fn stop(mut worker: Worker) {
    let _ = send(&mut worker.input, &InferenceCommand::Shutdown).await;
    drop(worker.input);
    worker.process.wait_or_kill(Duration::from_secs(5)).await;
    tracing::info!("inference worker stopped");
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stops an idle worker after the idle timeout, or at once when a queued
/// training wants its slot (as soon as the current request ends).
async fn watch(inner: Arc<Inner>) {
    let tick =
        (inner.settings.idle_timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut shutdown = inner.supervisor.shutdown_signal();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = inner.supervisor.inference_preempted() => {
                inner.preempt.store(true, Ordering::SeqCst);
            }
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            // The worker sees its input close when the server exits.
            return;
        }
        let Ok(mut guard) = inner.worker.try_lock() else {
            continue; // busy: check again after the request
        };
        if guard.is_none() {
            inner.preempt.store(false, Ordering::SeqCst);
            continue;
        }
        let idle = lock(&inner.last_used).elapsed() >= inner.settings.idle_timeout;
        let preempted = inner.preempt.swap(false, Ordering::SeqCst);
        if idle || preempted {
            tracing::info!(idle, preempted, "stopping the inference worker");
            if let Some(worker) = guard.take() {
                stop(worker).await;
            }
            {
                let mut stats = lock(&inner.stats);
                stats.running = false;
                stats.model = None;
                stats.adapter = None;
            }
            inner.supervisor.release_inference_slot();
        }
    }
}
