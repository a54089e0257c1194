//! The pages' view of the server (`app::Backend`): reads from the store,
//! actions through the supervisor, and new runs through the same validation
//! as `POST /api/runs`, so the form and the API cannot drift apart.

use app::dto::{
    CheckpointInfo, DatasetDetail, DatasetQuery, DatasetSummary, ExportView, HealthInfo,
    ModelSummary, NewRunForm, RunCheck, RunDetail, RunSummary,
};
use serde_json::{json, Map, Value};

use app::backend::BoxFuture;
use app::compare_dto::{
    Ballot, ChatSettingsForm, ChatView, CompareChoices, ComparisonEvaluations, ComparisonView,
    EvaluationView, ImportAdapterForm, NewChatForm, NewComparisonForm, RunEvaluations,
};
use app::run_comparison_dto::RunComparison;

use crate::api::runs::{create_run, validate_run};
use crate::compare::CompareRequest;
use crate::datasets::DatasetError;
use crate::state::AppState;

/// Store and supervisor errors are logged in full; pages get a short text.
fn user_error(context: &str, error: impl std::fmt::Display) -> String {
    tracing::error!(%error, "{context}");
    format!("{context} failed; see the server log")
}

/// Runs CPU work (tokenizing a dataset) without stalling the other tasks of
/// a multi-threaded runtime's worker; a single-threaded runtime (some tests)
/// cannot hand its tasks over, so there it just runs.
fn cpu_bound<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// How long the dataset page waits for a first tokenization before it
/// shows how far it is (and reloads itself until the figures are there).
const PAGE_PATIENCE: std::time::Duration = std::time::Duration::from_millis(1500);

impl app::Backend for AppState {
    fn health(&self) -> HealthInfo {
        HealthInfo {
            status: "ok".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            device: self.device.kind.clone(),
            device_description: self.device.description.clone(),
        }
    }

    fn list_runs(&self) -> Result<Vec<RunSummary>, String> {
        let mut runs = self
            .store
            .list_runs()
            .map_err(|error| user_error("reading the runs", error))?;
        self.supervisor.mark_paused(&mut runs);
        Ok(runs)
    }

    fn run_detail(&self, id: i64) -> Result<Option<RunDetail>, String> {
        let read = |error| user_error("reading the run", error);
        let Some(summary) = self
            .store
            .list_runs()
            .map_err(read)?
            .into_iter()
            .find(|run| run.id == id)
        else {
            return Ok(None);
        };
        let Some(run) = self.store.run(id).map_err(read)? else {
            return Ok(None);
        };
        let mut detail = RunDetail {
            summary,
            config_yaml: serde_yaml_ng::to_string(&run.config).unwrap_or_default(),
            failure: run.failure,
            finish_reason: run.finish_reason,
            log_tail: run.log_tail.lines().map(str::to_string).collect(),
            checkpoints: Vec::new(),
            train: Vec::new(),
            valid: Vec::new(),
            test_loss: None,
            started_at: run.started_at,
            finished_at: run.finished_at,
            last_event_seq: 0,
            clock_seconds: 0.0,
            exports: self.list_exports(Some(id))?,
            system: Default::default(),
            ranks: run
                .config
                .get("gpus")
                .and_then(|g| g.as_u64())
                .unwrap_or(1)
                .max(1) as usize,
        };
        let curves = crate::run_comparison::run_curves(&self.store, id).map_err(read)?;
        detail.train = curves.train;
        detail.valid = curves.valid;
        detail.test_loss = curves.test_loss;
        detail.last_event_seq = curves.last_event_seq;
        detail.clock_seconds = curves.clock_seconds;
        // The machine's samples and the guard's pauses are events of their own.
        for stored in self.store.events_since(id, 0).map_err(read)? {
            crate::system::read_run_event(&mut detail.system, &stored);
        }
        let latest = self.supervisor.monitor().latest();
        let guard = serde_json::from_value::<engine::config::TrainConfig>(run.config.clone())
            .map(|config| config.thermal_guard)
            .unwrap_or_default();
        detail.system.guard = crate::system::guard::describe(&guard, &latest);
        detail.system.now = (*latest).clone();
        detail.system.paused = self.supervisor.paused(id).map(|mut pause| {
            pause.seconds = Some((latest.time - pause.since).max(0.0));
            pause
        });
        let checkpoints = self.store.checkpoints(id).map_err(read)?;
        let best = crate::store::best_checkpoint(&checkpoints).map(|best| best.step);
        detail.checkpoints = checkpoints
            .into_iter()
            .map(|checkpoint| CheckpointInfo {
                step: checkpoint.step as u64,
                best: best == Some(checkpoint.step),
                val_loss: checkpoint.val_loss,
                path: checkpoint.path,
            })
            .collect();
        Ok(Some(detail))
    }

    fn system(&self) -> app::system_dto::SystemView {
        self.system_view()
    }

    fn compare_runs(&self, ids: String) -> Result<RunComparison, String> {
        let ids = crate::run_comparison::parse_ids([ids.as_str()]).map_err(|e| e.to_string())?;
        crate::run_comparison::compare_runs(self, &ids).map_err(|error| match error {
            crate::api::ApiError::Internal(error) => user_error("comparing the runs", error),
            refusal => refusal.to_string(),
        })
    }

    fn list_models(&self) -> Result<Vec<ModelSummary>, String> {
        let models = self
            .store
            .list_models()
            .map_err(|error| user_error("reading the models", error))?;
        Ok(models
            .into_iter()
            .map(|model| ModelSummary {
                id: model.id,
                name: model.name,
                source: model.source,
                location: model.location,
                architecture: model.architecture,
                parameters: model.parameters,
                quantization: model.quantization,
                size_bytes: model.size_bytes,
                builtin: model.builtin,
            })
            .collect())
    }

    fn list_datasets(&self) -> Result<Vec<DatasetSummary>, String> {
        let datasets = self
            .store
            .list_datasets()
            .map_err(|error| user_error("reading the datasets", error))?;
        Ok(datasets.into_iter().map(crate::datasets::summary).collect())
    }

    fn import_model(&self, name: Option<String>, path: String) -> Result<i64, String> {
        cpu_bound(|| crate::models::import(&self.store, name.as_deref(), &path))
            .map(|model| model.id)
            .map_err(|error| match error {
                crate::models::ModelError::Internal(error) => {
                    user_error("importing the model", error)
                }
                refused => refused.to_string(),
            })
    }

    fn delete_model(&self, id: i64) -> Result<(), String> {
        crate::models::delete(&self.store, id).map_err(|error| match error {
            crate::models::ModelError::Internal(error) => user_error("deleting the model", error),
            refused => refused.to_string(),
        })
    }

    fn start_pull(&self, repo: String, revision: Option<String>) -> Result<u64, String> {
        let spec = crate::hub::pulls::parse_request(&repo, revision.as_deref())
            .map_err(|error| error.to_string())?;
        self.pulls
            .start(self.store.clone(), spec)
            .map(|(pull, _joined)| pull.id)
            .map_err(|error| error.to_string())
    }

    fn retry_pull(&self, id: u64) -> Result<u64, String> {
        self.pulls
            .retry(self.store.clone(), id)
            .map(|(pull, _joined)| pull.id)
            .map_err(|e| e.to_string())
    }

    fn dismiss_pull(&self, id: u64) -> Result<(), String> {
        self.pulls
            .dismiss(&self.store, id)
            .map_err(|e| e.to_string())
    }

    fn list_pulls(&self) -> Vec<app::dto::PullView> {
        self.pulls.list()
    }

    fn dataset_detail(
        &self,
        id: i64,
        query: DatasetQuery,
    ) -> Result<Option<DatasetDetail>, String> {
        cpu_bound(|| {
            crate::datasets::inspect(
                &self.store,
                &self.inspections,
                &self.tokenizers,
                id,
                query,
                Some(PAGE_PATIENCE),
            )
        })
        .map_err(|error| match error {
            DatasetError::Internal(error) => user_error("checking the dataset", error),
            refused => refused.to_string(),
        })
    }

    fn delete_dataset(&self, id: i64) -> Result<(), String> {
        crate::datasets::delete_dataset(&self.store, &self.data_dir.datasets(), id).map_err(
            |error| match error {
                DatasetError::Internal(error) => user_error("deleting the dataset", error),
                refused => refused.to_string(),
            },
        )
    }

    fn check_run(&self, form: NewRunForm) -> Result<RunCheck, String> {
        let request = form_request(form, |id| self.cloned_config(id))?;
        let run = validate_run(self, request).map_err(|error| error.to_string())?;
        let memory =
            crate::estimate::estimate_run(self, &run.model, &run.architecture, &run.config);
        Ok(RunCheck {
            config_yaml: serde_yaml_ng::to_string(&run.config).unwrap_or_default(),
            memory,
        })
    }

    fn create_run(&self, form: NewRunForm) -> Result<i64, String> {
        let request = form_request(form, |id| self.cloned_config(id))?;
        create_run(self, request).map_err(|error| error.to_string())
    }

    fn stop_run(&self, id: i64) -> Result<(), String> {
        self.supervisor.stop(id).map_err(|error| error.to_string())
    }

    fn delete_run(&self, id: i64) -> Result<(), String> {
        self.supervisor
            .delete(id)
            .map_err(|error| error.to_string())
    }

    fn run_form(&self, id: i64) -> Result<Option<NewRunForm>, String> {
        let run = self
            .store
            .run(id)
            .map_err(|error| user_error("reading the run", error))?;
        Ok(run.map(|run| clone_form(&run)))
    }

    fn resume_run(&self, id: i64) -> Result<(), String> {
        self.supervisor
            .resume(id)
            .map_err(|error| error.to_string())
    }

    fn list_exports(&self, run_id: Option<i64>) -> Result<Vec<ExportView>, String> {
        self.exports
            .list(run_id)
            .map_err(|error| user_error("reading the exports", error))
    }

    fn export(&self, id: i64) -> Result<Option<ExportView>, String> {
        match self.exports.view(id) {
            Ok(view) => Ok(Some(view)),
            Err(crate::exports::ExportError::NotFound(_)) => Ok(None),
            Err(error) => Err(user_error("reading the export", error)),
        }
    }

    fn redirect(&self, path: &str) {
        leptos_axum::redirect(path);
    }

    fn compare_choices(&self) -> Result<CompareChoices, String> {
        Ok(CompareChoices {
            models: self.list_models()?,
            adapters: crate::compare::adapter_choices(self).map_err(|e| e.to_string())?,
            datasets: self.list_datasets()?,
            recent: self
                .store
                .list_comparisons()
                .map_err(|error| user_error("reading the comparisons", error))?,
        })
    }

    fn create_comparison(&self, form: NewComparisonForm) -> Result<i64, String> {
        let request = CompareRequest::from_form(form).map_err(|e| e.to_string())?;
        crate::api::compare::create_comparison(self, &request).map_err(|e| e.to_string())
    }

    fn wait_comparison(&self, id: i64) -> BoxFuture<'_, ()> {
        Box::pin(self.comparisons.wait(id))
    }

    fn comparison(&self, id: i64) -> Result<Option<ComparisonView>, String> {
        let record = self
            .store
            .comparison(id)
            .map_err(|error| user_error("reading the comparison", error))?;
        Ok(record.as_ref().map(crate::compare::view::comparison_view))
    }

    fn ballot(&self, id: i64, prompt: usize) -> Result<Option<Ballot>, String> {
        let record = self
            .store
            .comparison(id)
            .map_err(|error| user_error("reading the comparison", error))?;
        Ok(record.and_then(|record| {
            crate::compare::view::ballot(&record, prompt, crate::api::compare::shuffle_seed())
        }))
    }

    fn vote(&self, id: i64, prompt: usize, output: i64) -> Result<(), String> {
        let vote = crate::api::compare::VoteRequest { prompt, output };
        crate::api::compare::cast_vote(self, id, &vote).map_err(|e| e.to_string())
    }

    fn import_adapter(&self, form: ImportAdapterForm) -> Result<(), String> {
        crate::compare::import_adapter(self, &form.name, &form.path, form.model.as_deref())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn create_chat(&self, form: NewChatForm) -> Result<i64, String> {
        let settings = crate::chat::ReplySettings::default()
            .with_typed(form.temperature.as_deref(), form.max_tokens.as_deref())
            .map_err(|e| e.to_string())?;
        crate::chat::create_chat(
            self,
            &form.model,
            &form.adapter,
            form.system.as_deref(),
            settings,
        )
        .map_err(|e| e.to_string())
    }

    fn set_chat_settings(&self, id: i64, form: ChatSettingsForm) -> Result<(), String> {
        crate::chat::update_settings(self, id, &form).map_err(|e| e.to_string())
    }

    fn chat(&self, id: i64) -> Result<Option<ChatView>, String> {
        crate::chat::chat_view(self, id).map_err(|e| e.to_string())
    }

    fn recent_chats(&self) -> Result<Vec<ChatView>, String> {
        crate::chat::recent_chats(self).map_err(|e| e.to_string())
    }

    fn send_chat(&self, id: i64, message: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            crate::chat::send_message(self, id, &message, &mut |_: &str| {})
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn run_evaluations(&self, id: i64) -> Result<Option<RunEvaluations>, String> {
        crate::evaluations::run_evaluations(self, id).map_err(|e| e.to_string())
    }

    fn evaluate_run(
        &self,
        id: i64,
        split: Option<String>,
        step: Option<i64>,
    ) -> BoxFuture<'_, Result<EvaluationView, String>> {
        Box::pin(async move {
            crate::evaluations::evaluate_run(self, id, split.as_deref(), step)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn comparison_evaluations(
        &self,
        id: i64,
        dataset: String,
        split: String,
    ) -> Result<ComparisonEvaluations, String> {
        cpu_bound(|| crate::evaluations::comparison_evaluations(self, id, &dataset, &split))
            .map_err(|e| e.to_string())
    }

    fn evaluate_comparison(
        &self,
        id: i64,
        dataset: String,
        split: String,
    ) -> BoxFuture<'_, Result<ComparisonEvaluations, String>> {
        Box::pin(async move {
            crate::evaluations::evaluate_comparison(self, id, &dataset, &split)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn cancel_comparison(&self, id: i64) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let cancelled = crate::compare::cancel(self, id);
            if cancelled {
                self.comparisons.wait(id).await;
            }
            Ok(cancelled)
        })
    }
}

impl AppState {
    /// A stored run's config as a request body for a clone: every key but
    /// those Loralab sets from the chosen model and dataset.
    fn cloned_config(&self, id: &str) -> Result<Map<String, Value>, String> {
        let id: i64 = id
            .parse()
            .map_err(|_| format!("clone_of: {id:?} is not a run id"))?;
        let run = self
            .store
            .run(id)
            .map_err(|error| user_error("reading the run", error))?
            .ok_or_else(|| format!("clone_of: run {id} no longer exists"))?;
        let Value::Object(mut config) = run.config else {
            return Err(format!(
                "clone_of: run {id}'s stored config is not an object"
            ));
        };
        for key in crate::api::runs::MANAGED_KEYS.iter().chain(&["model"]) {
            config.remove(*key);
        }
        Ok(config)
    }
}

/// The new-run form as a `POST /api/runs` body: the preset's settings (or,
/// for a clone, the original run's whole config), then every filled-in field
/// over them. Fields are text (a plain HTML form), so each number is parsed
/// here and a bad one is named.
fn form_request(
    form: NewRunForm,
    cloned_config: impl Fn(&str) -> Result<Map<String, Value>, String>,
) -> Result<Value, String> {
    let preset = app::presets::preset(form.preset.as_deref()).ok_or_else(|| {
        format!(
            "preset: unknown preset {:?}",
            form.preset.unwrap_or_default()
        )
    })?;
    let base = match form.clone_of.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => Some(cloned_config(id)?),
        None => None,
    };
    let mut request = base.clone().unwrap_or_default();
    request.insert("model".into(), json!(form.model));
    request.insert("dataset".into(), json!(form.dataset));
    if let Some(name) = form.name.filter(|name| !name.trim().is_empty()) {
        request.insert("name".into(), json!(name.trim()));
    }
    let mut rank = preset.rank;
    // An empty field keeps the clone's value, else takes the preset's.
    let mut set =
        |key: &str, field: Option<String>, default: Value, parse: fn(&str) -> Option<Value>| {
            let value = match field
                .as_deref()
                .map(str::trim)
                .filter(|text| !text.is_empty())
            {
                Some(text) => {
                    parse(text).ok_or_else(|| format!("{key}: {text:?} is not a valid number"))?
                }
                None => match request.get(key) {
                    Some(kept) if base.is_some() => kept.clone(),
                    _ => default,
                },
            };
            request.insert(key.to_string(), value);
            Ok::<(), String>(())
        };
    let whole = |text: &str| text.parse::<u64>().ok().map(Value::from);
    let signed = |text: &str| text.parse::<i64>().ok().map(Value::from);
    let real = |text: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Value::from)
    };
    set("iters", form.iters, json!(preset.iters), whole)?;
    set(
        "batch_size",
        form.batch_size,
        json!(preset.batch_size),
        whole,
    )?;
    set(
        "learning_rate",
        form.learning_rate,
        json!(preset.learning_rate),
        real,
    )?;
    set(
        "num_layers",
        form.num_layers,
        json!(preset.num_layers),
        signed,
    )?;
    set(
        "max_seq_length",
        form.max_seq_length,
        json!(preset.max_seq_length),
        whole,
    )?;
    set(
        "steps_per_eval",
        form.steps_per_eval,
        json!(preset.steps_per_eval),
        whole,
    )?;
    set(
        "save_every",
        form.save_every,
        json!(preset.save_every),
        whole,
    )?;
    set("seed", form.seed, json!(0), whole)?;
    set("gpus", form.gpus, json!(1), whole)?;
    if base.is_none() {
        request.insert("steps_per_report".into(), json!(preset.steps_per_report));
        request.insert("val_batches".into(), json!(preset.val_batches));
        request.insert("test".into(), json!(true));
    }
    if let Some(text) = form
        .rank
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
    {
        rank = text
            .parse()
            .map_err(|_| format!("rank: {text:?} is not a whole number"))?;
    }
    // A clone keeps its scale, dropout and target keys; a new run takes the
    // engine's defaults for all but the rank.
    let lora = match request.get("lora_parameters") {
        Some(Value::Object(kept)) => {
            let mut kept = kept.clone();
            kept.insert("rank".into(), json!(rank));
            Value::Object(kept)
        }
        _ => json!({ "rank": rank }),
    };
    request.insert("lora_parameters".into(), lora);
    let stopping = StoppingFields {
        patience: form.patience,
        min_delta: form.min_delta,
        keep_checkpoints: form.keep_checkpoints,
    };
    stopping_fields(&mut request, stopping, preset, base.is_some())?;
    let mask_prompt = form.mask_prompt.as_deref().unwrap_or("true") == "true";
    request.insert("mask_prompt".into(), json!(mask_prompt));
    if form.force.as_deref() == Some("true") {
        request.insert("force".into(), json!(true));
    }
    let grad_checkpoint = form.grad_checkpoint.as_deref() == Some("true");
    request.insert("grad_checkpoint".into(), json!(grad_checkpoint));
    // An unticked checkbox sends nothing: off (also for a clone of a run
    // that had it on); the key is left out while it is off anyway.
    let tensorboard = form.tensorboard.as_deref() == Some("true");
    if tensorboard || request.contains_key("tensorboard") {
        request.insert("tensorboard".into(), json!(tensorboard));
    }
    let mut guard = match request.remove("thermal_guard") {
        Some(Value::Object(kept)) => kept,
        _ => Map::new(),
    };
    match form.guard.as_deref() {
        Some("true") => guard.insert("enabled".into(), json!(true)),
        Some("false") => guard.insert("enabled".into(), json!(false)),
        _ => None,
    };
    for (field, key, text) in [
        ("guard_cpu_c", "cpu_pause_c", &form.guard_cpu_c),
        ("guard_gpu_c", "gpu_pause_c", &form.guard_gpu_c),
        ("guard_resume_c", "resume_below_c", &form.guard_resume_c),
    ] {
        if let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let degrees: f64 = text
                .parse()
                .map_err(|_| format!("{field}: {text:?} is not a number (°C)"))?;
            guard.insert(key.into(), json!(degrees));
        }
    }
    if !guard.is_empty() {
        request.insert("thermal_guard".into(), Value::Object(guard));
    }
    let kept_group_size = request
        .remove("quantize")
        .and_then(|quantize| quantize.get("group_size").cloned());
    request.remove("fine_tune_type");
    match form.fine_tune.as_deref().unwrap_or("lora") {
        "lora" => {}
        "dora" => {
            request.insert("fine_tune_type".into(), json!("dora"));
        }
        "full" => {
            request.insert("fine_tune_type".into(), json!("full"));
        }
        "qlora" => {
            let bits: u8 = form
                .bits
                .as_deref()
                .unwrap_or("4")
                .parse()
                .map_err(|_| "bits: must be 4 or 8".to_string())?;
            if bits != 4 && bits != 8 {
                return Err("bits: must be 4 or 8".into());
            }
            let mut quantize = json!({ "bits": bits });
            if let Some(group_size) = kept_group_size {
                quantize["group_size"] = group_size;
            }
            request.insert("quantize".into(), quantize);
        }
        other => {
            return Err(format!(
                "fine_tune: unknown type {other:?} (lora, qlora, dora or full)"
            ))
        }
    }
    Ok(Value::Object(request))
}

/// `early_stopping` and `keep_checkpoints` from the form, where 0 turns
/// each off (the key is left out). An empty field keeps a clone's value
/// (off when the original had none), else takes the preset's.
struct StoppingFields {
    patience: Option<String>,
    min_delta: Option<String>,
    keep_checkpoints: Option<String>,
}

fn stopping_fields(
    request: &mut Map<String, Value>,
    form: StoppingFields,
    preset: &app::presets::Preset,
    cloned: bool,
) -> Result<(), String> {
    let filled = |field: &Option<String>| {
        field
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_string)
    };
    let kept = |key: &str, inner: Option<&str>| {
        let value = request.get(key).filter(|_| cloned)?;
        match inner {
            Some(inner) => value.get(inner).cloned(),
            None => Some(value.clone()),
        }
    };
    let whole =
        |key: &str, field: &Option<String>, kept: Option<Value>, preset: u64| match filled(field) {
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| format!("{key}: {text:?} is not a whole number")),
            None if cloned => Ok(kept.and_then(|value| value.as_u64()).unwrap_or(0)),
            None => Ok(preset),
        };
    let patience = whole(
        "early_stopping.patience",
        &form.patience,
        kept("early_stopping", Some("patience")),
        preset.patience,
    )?;
    let min_delta = match filled(&form.min_delta) {
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
            .ok_or_else(|| format!("early_stopping.min_delta: {text:?} is not a valid number"))?,
        None if cloned => kept("early_stopping", Some("min_delta"))
            .and_then(|value| value.as_f64())
            .unwrap_or(0.0),
        None => preset.min_delta,
    };
    let keep = whole(
        "keep_checkpoints",
        &form.keep_checkpoints,
        kept("keep_checkpoints", None),
        preset.keep_checkpoints,
    )?;
    request.remove("early_stopping");
    if patience > 0 {
        request.insert(
            "early_stopping".into(),
            json!({ "patience": patience, "min_delta": min_delta }),
        );
    }
    request.remove("keep_checkpoints");
    if keep > 0 {
        request.insert("keep_checkpoints".into(), json!(keep));
    }
    Ok(())
}

/// An earlier run's settings as the new-run form shows them: every field
/// filled, so the preset does not matter.
fn clone_form(run: &crate::store::RunRecord) -> NewRunForm {
    let config = &run.config;
    let text = |key: &str| {
        config.get(key).and_then(|value| match value {
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        })
    };
    let bits = config
        .pointer("/quantize/bits")
        .map(|bits| bits.to_string());
    NewRunForm {
        name: Some(format!("{} (copy)", run.name)),
        model: run.model.clone().unwrap_or_default(),
        dataset: run.dataset.clone().unwrap_or_default(),
        preset: None,
        fine_tune: Some(
            match (config.get("fine_tune_type").and_then(Value::as_str), &bits) {
                (Some("dora"), _) => "dora",
                (Some("full"), _) => "full",
                (_, Some(_)) => "qlora",
                _ => "lora",
            }
            .to_string(),
        ),
        bits,
        iters: text("iters"),
        batch_size: text("batch_size"),
        learning_rate: text("learning_rate"),
        rank: config
            .pointer("/lora_parameters/rank")
            .map(|rank| rank.to_string()),
        num_layers: text("num_layers"),
        max_seq_length: text("max_seq_length"),
        mask_prompt: text("mask_prompt"),
        // 0: off, as the original had it.
        patience: Some(
            config
                .pointer("/early_stopping/patience")
                .map_or("0".into(), |value| value.to_string()),
        ),
        min_delta: Some(
            config
                .pointer("/early_stopping/min_delta")
                .map_or("0".into(), |value| value.to_string()),
        ),
        keep_checkpoints: Some(text("keep_checkpoints").unwrap_or_else(|| "0".into())),
        grad_checkpoint: text("grad_checkpoint"),
        tensorboard: text("tensorboard"),
        steps_per_eval: text("steps_per_eval"),
        save_every: text("save_every"),
        seed: text("seed"),
        gpus: text("gpus"),
        clone_of: Some(run.id.to_string()),
        force: None,
        guard: config
            .pointer("/thermal_guard/enabled")
            .map(|enabled| enabled.to_string()),
        guard_cpu_c: config
            .pointer("/thermal_guard/cpu_pause_c")
            .map(|c| c.to_string()),
        guard_gpu_c: config
            .pointer("/thermal_guard/gpu_pause_c")
            .map(|c| c.to_string()),
        guard_resume_c: config
            .pointer("/thermal_guard/resume_below_c")
            .map(|c| c.to_string()),
    }
}
