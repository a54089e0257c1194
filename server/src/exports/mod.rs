//! Export jobs: a run's checkpoint (or the run's latest weights) fused into
//! its base as an HF or MLX folder, or written as a PEFT adapter, by a
//! `loralab export-worker` child process (the server never touches MLX).
//!
//! An export is checked and stored as `queued`, waits until the supervisor's
//! memory budget admits its estimate, then runs; its progress is a `watch`
//! channel (the API's SSE stream follows it) and its view is stored when it
//! starts and ends. The worker writes into `exports/.staging-<id>` and
//! renames it to `exports/<id>` when whole; whatever a killed worker left
//! there is removed by the server.

pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use app::dto::ExportView;
use engine::export::{
    usage, ExportDtype, ExportFormat, ExportOptions, ExportProgress, ExportReport, ExportRequest,
    ModelCard,
};
use engine::model_config::ModelConfig;
use engine::protocol::{ExportCommand, ExportEvent};
use tokio::sync::watch;

use crate::child::{self, WorkerOutput};
use crate::store::{best_checkpoint, Store, StoreError};
use crate::supervisor::Supervisor;

/// Lines of an export worker's stderr kept to explain a crash.
const TAIL_LINES: usize = 20;

/// Free disk kept beyond an export's estimated size.
const DISK_MARGIN_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("run {0} does not exist")]
    RunNotFound(i64),
    #[error("export {0} does not exist")]
    NotFound(i64),
    /// A bad request; `field` is the request field at fault.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> ExportError {
    ExportError::Invalid {
        field,
        message: message.into(),
    }
}

/// What a user asks for: a run's checkpoint in a format.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct NewExport {
    pub format: String,
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default)]
    pub bits: Option<u8>,
    /// gguf / gguf-lora: the tensor type (f16 default, q8_0, ...).
    #[serde(default)]
    pub quant: Option<String>,
    /// A checkpoint step; default the best checkpoint, else the latest weights.
    #[serde(default)]
    pub step: Option<i64>,
}

impl NewExport {
    pub fn options(&self) -> Result<ExportOptions, ExportError> {
        let format = ExportFormat::parse(&self.format).ok_or_else(|| {
            invalid(
                "format",
                format!(
                    "unknown format `{}` (choose hf, mlx, peft, gguf or gguf-lora)",
                    self.format
                ),
            )
        })?;
        let mut options = ExportOptions::new(format);
        if format == ExportFormat::Peft {
            // Adapters are small: keep them exact unless asked otherwise.
            options.dtype = ExportDtype::F32;
        }
        if let Some(dtype) = self.dtype.as_deref().filter(|d| !d.is_empty()) {
            options.dtype = ExportDtype::parse(dtype).ok_or_else(|| {
                invalid(
                    "dtype",
                    format!("unknown dtype `{dtype}` (choose bf16, f16 or f32)"),
                )
            })?;
        }
        if let Some(bits) = self.bits {
            options.bits = bits;
        }
        if let Some(quant) = self.quant.as_deref().filter(|q| !q.is_empty()) {
            options.quant = engine::export::GgufQuant::parse(quant).ok_or_else(|| {
                invalid(
                    "quant",
                    format!(
                        "unknown quant `{quant}` (choose {})",
                        engine::export::GgufQuant::names()
                    ),
                )
            })?;
        }
        options
            .check()
            .map_err(|(field, message)| invalid(field, message))?;
        Ok(options)
    }
}

/// One export in progress: its live view and how to cancel it.
struct Live {
    view: watch::Sender<ExportView>,
    cancel: watch::Sender<bool>,
}

#[derive(Clone)]
pub struct Exports {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    supervisor: Supervisor,
    dir: PathBuf,
    runs_dir: PathBuf,
    worker_exe: PathBuf,
    live: Mutex<HashMap<i64, Live>>,
}

impl Exports {
    /// Fails the exports a previous server left unfinished and removes
    /// their staging folders.
    pub fn start(
        store: Arc<Store>,
        supervisor: Supervisor,
        dir: PathBuf,
        runs_dir: PathBuf,
        worker_exe: PathBuf,
    ) -> Result<Self, ExportError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| ExportError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let reason = "the server stopped during the export; export again";
        for id in store.fail_unfinished_exports(reason)? {
            tracing::info!(
                export = id,
                "an export the server's stop cut short is failed"
            );
        }
        remove_staging(&dir);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                supervisor,
                dir,
                runs_dir,
                worker_exe,
                live: Mutex::default(),
            }),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Live>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The export's view: live while it runs, else as stored.
    pub fn view(&self, id: i64) -> Result<ExportView, ExportError> {
        if let Some(live) = self.live().get(&id) {
            return Ok(live.view.borrow().clone());
        }
        self.inner
            .store
            .export(id)?
            .ok_or(ExportError::NotFound(id))
    }

    /// Every export (or run `run_id`'s), newest first, live ones as they are now.
    pub fn list(&self, run_id: Option<i64>) -> Result<Vec<ExportView>, ExportError> {
        let mut views = self.inner.store.exports(run_id)?;
        let live = self.live();
        for view in &mut views {
            if let Some(current) = live.get(&view.id) {
                *view = current.view.borrow().clone();
            }
        }
        Ok(views)
    }

    /// Follows a running export; None once it has ended.
    pub fn subscribe(&self, id: i64) -> Option<watch::Receiver<ExportView>> {
        self.live().get(&id).map(|live| live.view.subscribe())
    }

    /// Asks a queued or running export to stop; false when it is not running.
    pub fn cancel(&self, id: i64) -> bool {
        match self.live().get(&id) {
            Some(live) => {
                let _ = live.cancel.send(true);
                true
            }
            None => false,
        }
    }

    /// Forgets a finished export and removes its folder.
    pub fn delete(&self, id: i64) -> Result<(), ExportError> {
        if self.live().contains_key(&id) {
            return Err(ExportError::Conflict(format!(
                "export {id} is still running; cancel it first"
            )));
        }
        if !self.inner.store.delete_export(id)? {
            return Err(ExportError::NotFound(id));
        }
        let folder = self.folder(id);
        if folder.exists() {
            std::fs::remove_dir_all(&folder).map_err(|e| {
                ExportError::Internal(format!("cannot remove {}: {e}", folder.display()))
            })?;
        }
        Ok(())
    }

    /// Where a finished export lives.
    pub fn folder(&self, id: i64) -> PathBuf {
        self.inner.dir.join(id.to_string())
    }

    /// Checks a run's export request, stores it and starts it in the
    /// background.
    pub fn create(&self, run_id: i64, new: &NewExport) -> Result<ExportView, ExportError> {
        let store = &self.inner.store;
        // Planned with a placeholder destination first: the id comes from
        // the row, which is only written once the request is sound.
        let planned = plan_run_export(store, &self.inner.runs_dir, run_id, new, PathBuf::new())?;
        check_disk(&self.inner.dir, planned.output_bytes)?;
        let options = planned.request.options;
        let gguf = matches!(options.format, ExportFormat::Gguf | ExportFormat::GgufLora);
        let mut view = ExportView {
            id: 0,
            run_id: Some(run_id),
            run_name: Some(planned.run_name.clone()),
            step: planned.step,
            model: planned.request.card.base_name.clone(),
            format: options.format.name().to_string(),
            dtype: options.dtype.name().to_string(),
            bits: (options.format == ExportFormat::Mlx).then_some(options.bits),
            quant: gguf.then(|| options.quant.name().to_string()),
            copied: None,
            requantized: None,
            status: "queued".into(),
            error: None,
            path: None,
            tensors_done: 0,
            tensors_total: 0,
            bytes_done: 0,
            bytes_total: 0,
            fused: None,
            files: Vec::new(),
            size_bytes: 0,
            usage: String::new(),
            created_at: String::new(),
            elapsed_seconds: 0.0,
        };
        let (id, created_at) = store.insert_export(&view)?;
        view.id = id;
        view.created_at = created_at;
        let mut request = planned.request;
        request.out = self.folder(id);
        request.staging = self.inner.dir.join(format!(".staging-{id}"));
        view.usage = usage(
            options.format,
            &request.out.display().to_string(),
            request
                .card
                .hub_repo
                .as_deref()
                .unwrap_or(&request.card.base_name),
        );
        store.save_export(&view)?;
        let (view_tx, _) = watch::channel(view.clone());
        let (cancel_tx, cancel_rx) = watch::channel(false);
        self.live().insert(
            id,
            Live {
                view: view_tx,
                cancel: cancel_tx,
            },
        );
        let exports = self.clone();
        let estimate = planned.memory_estimate;
        tokio::spawn(async move {
            exports.drive(id, request, estimate, cancel_rx).await;
        });
        Ok(view)
    }

    /// Changes a live export's view; its new state (None once it ended).
    fn update(&self, id: i64, change: impl FnOnce(&mut ExportView)) -> Option<ExportView> {
        let live = self.live();
        let view = &live.get(&id)?.view;
        view.send_modify(change);
        let current = view.borrow().clone();
        Some(current)
    }

    /// Runs export `id` to its end.
    async fn drive(
        &self,
        id: i64,
        request: ExportRequest,
        estimate: u64,
        mut cancel: watch::Receiver<bool>,
    ) {
        let started = Instant::now();
        // Wait for memory; a cancel while queued ends it here.
        while !self.inner.supervisor.try_admit_export(id, estimate) {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = cancel.changed() => {
                    self.finish(id, |v| v.status = "cancelled".into());
                    return;
                }
            }
        }
        if let Some(view) = self.update(id, |v| v.status = "running".into()) {
            if let Err(error) = self.inner.store.save_export(&view) {
                tracing::error!(%error, export = id, "storing an export");
            }
        }
        let outcome = self.run_worker(id, &request, &mut cancel, started).await;
        self.inner.supervisor.release_export(id);
        // A killed worker leaves its staging folder behind.
        if request.staging.exists() {
            let _ = std::fs::remove_dir_all(&request.staging);
        }
        self.finish(id, |v| {
            v.elapsed_seconds = started.elapsed().as_secs_f64();
            match outcome {
                Outcome::Done(report) => {
                    v.status = "done".into();
                    v.path = Some(request.out.display().to_string());
                    v.size_bytes = report.bytes;
                    let adapter_alone = matches!(
                        request.options.format,
                        ExportFormat::Peft | ExportFormat::GgufLora
                    );
                    v.fused = (!adapter_alone).then_some(report.fused);
                    if v.quant.is_some() {
                        v.copied = Some(report.copied);
                        v.requantized = Some(report.requantized);
                    }
                    v.files = report.files;
                    v.tensors_done = report.tensors;
                    v.tensors_total = report.tensors;
                    v.bytes_done = v.bytes_total;
                }
                Outcome::Cancelled => v.status = "cancelled".into(),
                Outcome::Failed(reason) => {
                    v.status = "failed".into();
                    v.error = Some(reason);
                }
            }
        });
    }

    /// Stores the final view and ends the live one.
    fn finish(&self, id: i64, change: impl FnOnce(&mut ExportView)) {
        if let Some(view) = self.update(id, change) {
            if let Err(error) = self.inner.store.save_export(&view) {
                tracing::error!(%error, export = id, "storing an export");
            }
        }
        self.live().remove(&id);
    }

    async fn run_worker(
        &self,
        id: i64,
        request: &ExportRequest,
        cancel: &mut watch::Receiver<bool>,
        started: Instant,
    ) -> Outcome {
        let spawned = child::spawn::<ExportCommand, ExportEvent>(
            child::WorkerSpec {
                command: child::loralab(&self.inner.worker_exe, "export-worker"),
                label: format!("export {id}"),
                stderr_prefix: String::new(),
                kill_on_drop: true,
            },
            child::LogTail::new(TAIL_LINES),
        );
        let (worker, mut input, mut output) = match spawned {
            Ok(parts) => parts,
            Err(error) => {
                return Outcome::Failed(format!("cannot start an export worker: {error}"))
            }
        };
        tracing::info!(export = id, pid = ?worker.id(), "export worker started");
        let command = ExportCommand::Export {
            request: Box::new(request.clone()),
        };
        if let Err(error) = input.send(&command).await {
            return Outcome::Failed(format!("cannot send the export worker its job: {error}"));
        }
        let ended = self
            .follow(id, &mut output, &mut input, cancel, started)
            .await;
        let exit = worker.wait().await;
        ended.unwrap_or_else(|| {
            let last = exit.last_lines(8);
            Outcome::Failed(if exit.signal == Some(9) {
                format!(
                    "the export worker was killed ({}); the machine may have run out of memory",
                    exit.description
                )
            } else if last.is_empty() {
                format!(
                    "the export worker ended ({}) without finishing",
                    exit.description
                )
            } else {
                format!(
                    "the export worker ended ({}) without finishing; its last words:\n{}",
                    exit.description,
                    last.join("\n")
                )
            })
        })
    }

    /// Reads the worker's events until it ends; None when it ended without
    /// saying how.
    async fn follow(
        &self,
        id: i64,
        output: &mut WorkerOutput<ExportEvent>,
        input: &mut child::WorkerInput<ExportCommand>,
        cancel: &mut watch::Receiver<bool>,
        started: Instant,
    ) -> Option<Outcome> {
        let mut cancel_sent = false;
        loop {
            tokio::select! {
                event = output.next() => match event? {
                    ExportEvent::Progress(p) => self.progress(id, p, started),
                    ExportEvent::Done(report) => return Some(Outcome::Done(report)),
                    ExportEvent::Cancelled => return Some(Outcome::Cancelled),
                    ExportEvent::Failed { reason } => return Some(Outcome::Failed(reason)),
                },
                _ = cancel.changed(), if !cancel_sent => {
                    cancel_sent = true;
                    if let Err(error) = input.send(&ExportCommand::Cancel).await {
                        tracing::warn!(%error, export = id, "cannot send Cancel");
                    }
                }
            }
        }
    }

    fn progress(&self, id: i64, p: ExportProgress, started: Instant) {
        self.update(id, |v| {
            v.tensors_done = p.tensors_done;
            v.tensors_total = p.tensors_total;
            v.bytes_done = p.bytes_done;
            v.bytes_total = p.bytes_total;
            v.elapsed_seconds = started.elapsed().as_secs_f64();
        });
    }
}

enum Outcome {
    Done(ExportReport),
    Cancelled,
    Failed(String),
}

/// A run's export, checked and resolved: what the worker gets and what the
/// server weighs.
pub struct PlannedExport {
    pub request: ExportRequest,
    pub run_name: String,
    pub step: Option<i64>,
    /// Peak memory of the export worker, in bytes.
    pub memory_estimate: u64,
    /// About how much it writes.
    pub output_bytes: u64,
}

/// Resolves run `run_id`'s export to `out` (staged beside it): the run's
/// base model, its checkpoint at `new.step` (default: the best one, else the
/// run's latest weights), the model card. Errors name the field at fault.
pub fn plan_run_export(
    store: &Store,
    runs_dir: &Path,
    run_id: i64,
    new: &NewExport,
    out: PathBuf,
) -> Result<PlannedExport, ExportError> {
    let options = new.options()?;
    let run = store.run(run_id)?.ok_or(ExportError::RunNotFound(run_id))?;
    let unregistered = || {
        invalid(
            "run",
            format!("run {run_id}'s model is no longer registered"),
        )
    };
    let model_name = run.model.clone().ok_or_else(unregistered)?;
    let model = store.model_by_name(&model_name)?.ok_or_else(unregistered)?;
    let run_dir = runs_dir.join(run_id.to_string());
    if !run_dir.join(engine::lora::ADAPTER_CONFIG_FILE).is_file() {
        return Err(ExportError::Conflict(format!(
            "run {run_id} has no adapter yet: it is written at the first checkpoint"
        )));
    }
    let checkpoints = store.checkpoints(run_id)?;
    let (step, weights) = match new.step {
        Some(step) => {
            let checkpoint = checkpoints.iter().find(|c| c.step == step).ok_or_else(|| {
                let steps: Vec<String> = checkpoints.iter().map(|c| c.step.to_string()).collect();
                invalid(
                    "step",
                    format!(
                        "run {run_id} has no checkpoint at step {step} (checkpoints: {})",
                        if steps.is_empty() {
                            "none".to_string()
                        } else {
                            steps.join(", ")
                        }
                    ),
                )
            })?;
            (Some(step), PathBuf::from(&checkpoint.path))
        }
        None => match best_checkpoint(&checkpoints) {
            Some(best) => (Some(best.step), PathBuf::from(&best.path)),
            None => (None, run_dir.join(engine::lora::ADAPTER_WEIGHTS_FILE)),
        },
    };
    let base = PathBuf::from(&model.location);
    let config = model_config(&base).map_err(|message| invalid("run", message))?;
    refuse_unwritable(&options, &config, &run.config)?;
    let adapter_bytes = weights.metadata().map(|m| m.len()).unwrap_or(0);
    let hub_repo = (model.source == "hub").then(|| hub_repo_of(&model.name));
    let card = model_card(&run, &model_name, hub_repo, step, store, run_id);
    Ok(PlannedExport {
        output_bytes: output_bytes(&options, model.parameters.unwrap_or(0), adapter_bytes),
        memory_estimate: memory_estimate(&config, adapter_bytes),
        run_name: run.name,
        step,
        request: ExportRequest {
            base,
            adapter_dir: Some(run_dir),
            adapter_weights: Some(weights),
            options,
            staging: engine::export::staging_for(&out),
            out,
            card,
        },
    })
}

/// Refuses an export that would not fit the disk holding `dir`.
pub fn check_disk(dir: &Path, needed: u64) -> Result<(), ExportError> {
    match free_bytes(dir) {
        Some(free) if free < needed + DISK_MARGIN_BYTES => Err(invalid(
            "disk",
            format!(
                "not enough disk space for the export: it needs about {}, {} is free in {}",
                human_bytes(needed),
                human_bytes(free),
                dir.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Removes staging folders (`.staging-*`) under the exports folder: at
/// start no worker can be writing them.
fn remove_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".staging-") {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed an unfinished export's staging folder")
                }
                Err(error) => {
                    tracing::warn!(%error, path = %entry.path().display(), "cannot remove a staging folder")
                }
            }
        }
    }
}

/// The base's architecture from its header or config.json (no MLX).
/// What the writer would refuse, refused here, before a job exists: an
/// architecture GGUF has no layout for, a DoRA adapter as a llama.cpp LoRA,
/// a full fine-tune as an adapter alone.
fn refuse_unwritable(
    options: &ExportOptions,
    config: &ModelConfig,
    run_config: &engine::config::TrainConfig,
) -> Result<(), ExportError> {
    let alone = matches!(options.format, ExportFormat::Peft | ExportFormat::GgufLora);
    if alone && run_config.fine_tune_type == engine::config::FineTuneType::Full {
        return Err(invalid(
            "format",
            format!(
                "a full fine-tune has no adapter to write alone (`{}`): export `hf`, `mlx` or `gguf`, whose weights are the trained ones",
                options.format.name()
            ),
        ));
    }
    let gguf = matches!(options.format, ExportFormat::Gguf | ExportFormat::GgufLora);
    if gguf && engine::export::gguf::architecture(&config.model_type).is_none() {
        return Err(invalid(
            "format",
            format!(
                "cannot write architecture `{}` as GGUF (writable: llama, mistral, qwen2, qwen3, phi3)",
                config.model_type
            ),
        ));
    }
    if options.format == ExportFormat::GgufLora
        && run_config.fine_tune_type == engine::config::FineTuneType::Dora
    {
        return Err(invalid(
            "format",
            "a DoRA adapter cannot be written as a GGUF LoRA adapter (llama.cpp has no DoRA): export `gguf` to fuse it instead",
        ));
    }
    Ok(())
}

fn model_config(path: &Path) -> Result<ModelConfig, String> {
    if path.is_dir() {
        engine::models::read_config(path).map_err(|e| format!("{e:#}"))
    } else {
        engine::gguf::inspect_gguf(path)
            .map(|(config, _)| config)
            .map_err(|e| e.to_string())
    }
}

/// Peak memory of an export: the largest matrix as f32 in about three
/// working copies (read, fused, converted), the adapter, and MLX's own.
fn memory_estimate(config: &ModelConfig, adapter_bytes: u64) -> u64 {
    let hidden = config.hidden_size as u64;
    let largest =
        (config.vocab_size as u64 * hidden).max(2 * config.intermediate_size as u64 * hidden);
    largest * 4 * 3 + adapter_bytes * 2 + (256 << 20)
}

/// About how many bytes the export writes.
fn output_bytes(options: &ExportOptions, parameters: u64, adapter_bytes: u64) -> u64 {
    let float = match options.dtype {
        ExportDtype::F32 => 4,
        ExportDtype::Bf16 | ExportDtype::F16 => 2,
    };
    match options.format {
        ExportFormat::Hf => parameters * float,
        // Packed bits plus a scale and a bias per group.
        ExportFormat::Mlx => {
            parameters * u64::from(options.bits) / 8
                + parameters / options.group_size as u64 * 2 * float
        }
        ExportFormat::Peft => adapter_bytes / 4 * float,
        // At most f32, the widest type a GGUF export writes.
        ExportFormat::Gguf => parameters * 4,
        ExportFormat::GgufLora => adapter_bytes,
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(dir).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn human_bytes(bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    if gb >= 1.0 {
        format!("{gb:.1} GB")
    } else {
        format!("{:.0} MB", bytes as f64 / 1e6)
    }
}

/// A pulled model is registered as `org/name[/file.gguf][@rev]`; PEFT and
/// the card want `org/name`.
pub fn hub_repo_of(name: &str) -> String {
    let name = name.split('@').next().unwrap_or(name);
    let mut parts = name.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(org), Some(repo)) => format!("{org}/{repo}"),
        _ => name.to_string(),
    }
}

fn model_card(
    run: &crate::store::RunRecord,
    model_name: &str,
    hub_repo: Option<String>,
    step: Option<i64>,
    store: &Store,
    run_id: i64,
) -> ModelCard {
    // The card names settings by their config keys.
    let config = serde_json::to_value(&run.config).unwrap_or_default();
    let setting = |key: &str| config.get(key).map(|v| v.to_string());
    let mut details = Vec::new();
    details.push(("run".into(), format!("{} (#{run_id})", run.name)));
    if let Some(step) = step {
        details.push(("checkpoint".into(), format!("step {step}")));
    }
    for key in [
        "fine_tune_type",
        "num_layers",
        "iters",
        "batch_size",
        "learning_rate",
        "max_seq_length",
    ] {
        if let Some(value) = setting(key) {
            details.push((key.to_string(), format!("`{}`", value.trim_matches('"'))));
        }
    }
    if let Some(lora) = config.get("lora_parameters") {
        details.push(("lora_parameters".into(), format!("`{lora}`")));
    }
    if let Ok((val, test)) = store.run_losses(run_id) {
        if let Some(val) = val {
            details.push(("validation loss".into(), format!("{val:.4}")));
        }
        if let Some(test) = test {
            details.push(("test loss".into(), format!("{test:.4}")));
        }
    }
    ModelCard {
        title: format!("{} (fine-tuned with Loralab)", run.name),
        base_name: model_name.to_string(),
        hub_repo,
        dataset: run.dataset.clone(),
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_lose_their_file_and_revision() {
        assert_eq!(hub_repo_of("org/name"), "org/name");
        assert_eq!(hub_repo_of("org/name/file.gguf@main"), "org/name");
        assert_eq!(hub_repo_of("org/name@v2"), "org/name");
    }
}
