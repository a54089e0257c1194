//! The pages' view of the server (`app::Backend`): reads from the store,
//! actions through the supervisor, and new runs through the same validation
//! as `POST /api/runs`, so the form and the API cannot drift apart.

use app::dto::{
    CheckpointInfo, DatasetDetail, DatasetQuery, DatasetSummary, ExportView, HealthInfo,
    ModelSummary, NewRunForm, RunCheck, RunDetail, RunSummary,
};
use engine::config::TrainConfig;

use app::backend::BoxFuture;
use app::compare_dto::{
    Ballot, ChatSettingsForm, ChatView, CompareChoices, ComparisonEvaluations, ComparisonView,
    EvaluationView, ImportAdapterForm, NewChatForm, NewComparisonForm, RunEvaluations,
};
use app::run_comparison_dto::RunComparison;

use crate::api::runs::{create_run, validate_run, RunRequest};
use crate::api::ApiError;
use crate::compare::CompareRequest;
use crate::datasets::DatasetError;
use crate::state::AppState;

/// Store and supervisor errors are logged in full; pages get a short text.
fn user_error(context: &str, error: impl std::fmt::Display) -> String {
    tracing::error!(%error, "{context}");
    format!("{context} failed; see the server log")
}

/// A module's error as a page shows it: a refusal's own words; an internal
/// error (what the API answers 500 to) as [`user_error`]'s short text.
fn page_error<E: Into<ApiError>>(context: &'static str) -> impl Fn(E) -> String {
    move |error| match error.into() {
        ApiError::Internal(error) => user_error(context, format!("{error:#}")),
        refusal => refusal.to_string(),
    }
}

/// A chat's error as a page shows it: as [`page_error`], but a failed reply
/// says why (the API logs it instead: it may name files of this machine).
fn chat_error(context: &'static str) -> impl Fn(crate::chat::ChatError) -> String {
    move |error| match error {
        crate::chat::ChatError::Generation(reason) => reason,
        other => page_error(context)(other),
    }
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
/// shows how far it is (and reloads itself until the figures are there):
/// `LORALAB_DATASET_PAGE_WAIT_MS`, default 1500.
fn dataset_page_patience() -> std::time::Duration {
    static PATIENCE: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();
    *PATIENCE.get_or_init(|| {
        let millis = std::env::var("LORALAB_DATASET_PAGE_WAIT_MS")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(1500);
        std::time::Duration::from_millis(millis)
    })
}

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
            ranks: run.config.gpus.max(1),
            rank_rows: Vec::new(),
        };
        let curves = crate::run_comparison::run_curves(&self.store, id).map_err(read)?;
        detail.train = curves.train;
        detail.valid = curves.valid;
        detail.test_loss = curves.test_loss;
        detail.last_event_seq = curves.last_event_seq;
        detail.clock_seconds = curves.clock_seconds;
        // The machine's samples and the guard's pauses are events of their own.
        let mut last_ranks = None;
        for stored in self.store.events_since(id, 0).map_err(read)? {
            if stored.kind == crate::rank_figures::EVENT_KIND {
                last_ranks = Some(stored);
                continue;
            }
            crate::system::read_run_event(&mut detail.system, &stored);
        }
        let places =
            crate::rank_figures::places(&self.store, &run.config, self.device.kind == "gpu");
        detail.ranks = places.len().max(1);
        detail.rank_rows = crate::rank_figures::rank_rows(places, last_ranks.as_ref());
        let latest = self.supervisor.monitor().latest();
        detail.system.guard = crate::system::guard::describe(&run.config.thermal_guard, &latest);
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
        crate::run_comparison::compare_runs(self, &ids).map_err(page_error("comparing the runs"))
    }

    fn list_models(&self) -> Result<Vec<ModelSummary>, String> {
        self.store
            .list_models()
            .map_err(|error| user_error("reading the models", error))
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
                Some(dataset_page_patience()),
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
        let request = self.run_request(form)?;
        // The model's files are read and, the first time, the whole
        // dataset is tokenized.
        let (run, memory) = cpu_bound(|| {
            let run = validate_run(self, request).map_err(page_error("checking the run"))?;
            let memory = run.memory_estimate(self);
            Ok::<_, String>((run, memory))
        })?;
        Ok(RunCheck {
            config_yaml: serde_yaml_ng::to_string(&run.config).unwrap_or_default(),
            memory,
        })
    }

    fn create_run(&self, form: NewRunForm) -> Result<i64, String> {
        let request = self.run_request(form)?;
        cpu_bound(|| create_run(self, request)).map_err(page_error("starting the run"))
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
        Ok(run.map(|run| {
            NewRunForm::from_config(
                run.id,
                &run.name,
                run.model.unwrap_or_default(),
                run.dataset.unwrap_or_default(),
                &run.config,
            )
        }))
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
            adapters: crate::compare::adapter_choices(self)
                .map_err(page_error("reading the adapters"))?,
            datasets: self.list_datasets()?,
            recent: self
                .store
                .list_comparisons()
                .map_err(|error| user_error("reading the comparisons", error))?,
        })
    }

    fn create_comparison(&self, form: NewComparisonForm) -> Result<i64, String> {
        let request =
            CompareRequest::from_form(form).map_err(page_error("starting the comparison"))?;
        crate::compare::create_comparison(self, &request)
            .map_err(page_error("starting the comparison"))
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
            crate::compare::view::ballot(&record, prompt, crate::compare::shuffle_seed())
        }))
    }

    fn vote(&self, id: i64, prompt: usize, output: i64) -> Result<(), String> {
        let vote = crate::compare::VoteRequest { prompt, output };
        crate::compare::cast_vote(self, id, &vote).map_err(page_error("saving the vote"))
    }

    fn import_adapter(&self, form: ImportAdapterForm) -> Result<(), String> {
        crate::compare::import_adapter(self, &form.name, &form.path, form.model.as_deref())
            .map(|_| ())
            .map_err(page_error("importing the adapter"))
    }

    fn create_chat(&self, form: NewChatForm) -> Result<i64, String> {
        let settings = crate::chat::ReplySettings::default()
            .with_typed(form.temperature.as_deref(), form.max_tokens.as_deref())
            .map_err(chat_error("starting the chat"))?;
        crate::chat::create_chat(
            self,
            &form.model,
            &form.adapter,
            form.system.as_deref(),
            settings,
        )
        .map_err(chat_error("starting the chat"))
    }

    fn set_chat_settings(&self, id: i64, form: ChatSettingsForm) -> Result<(), String> {
        crate::chat::update_settings(self, id, &form).map_err(chat_error("changing the chat"))
    }

    fn chat(&self, id: i64) -> Result<Option<ChatView>, String> {
        crate::chat::chat_view(self, id).map_err(chat_error("reading the chat"))
    }

    fn recent_chats(&self) -> Result<Vec<ChatView>, String> {
        crate::chat::recent_chats(self).map_err(chat_error("reading the chats"))
    }

    fn send_chat(&self, id: i64, message: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            crate::chat::send_message(self, id, &message, &mut |_: &str| {})
                .await
                .map(|_| ())
                .map_err(chat_error("sending the message"))
        })
    }

    fn run_evaluations(&self, id: i64) -> Result<Option<RunEvaluations>, String> {
        crate::evaluations::run_evaluations(self, id).map_err(page_error("reading the evaluations"))
    }

    fn machine_sets(&self) -> Result<Vec<app::machines_dto::MachineSetView>, String> {
        crate::machines::list(&self.store).map_err(page_error("reading the machine sets"))
    }

    fn register_machine_set(&self, name: String, hostfile: String) -> Result<i64, String> {
        crate::machines::register(&self.store, &name, &hostfile)
            .map_err(page_error("registering the machine set"))
    }

    fn delete_machine_set(&self, id: i64) -> Result<(), String> {
        crate::machines::delete(&self.store, id).map_err(page_error("deleting the machine set"))
    }

    fn check_machine_set(&self, id: i64) -> BoxFuture<'_, Result<(), String>> {
        let store = self.store.clone();
        Box::pin(async move {
            let program = std::env::current_exe()
                .map_err(|e| user_error("finding this program's path", e))?;
            tokio::task::spawn_blocking(move || {
                crate::machines::check_and_store(&store, id, &program).map(|_| ())
            })
            .await
            .map_err(|e| user_error("checking the machine set", e))?
            .map_err(page_error("checking the machine set"))
        })
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
                .map_err(page_error("evaluating the run"))
        })
    }

    fn comparison_evaluations(
        &self,
        id: i64,
        dataset: String,
        split: String,
    ) -> Result<ComparisonEvaluations, String> {
        cpu_bound(|| crate::evaluations::comparison_evaluations(self, id, &dataset, &split))
            .map_err(page_error("reading the evaluations"))
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
                .map_err(page_error("evaluating the comparison"))
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
    /// The new-run form as a request: its fields over the chosen preset or,
    /// for a clone, over the original run's config.
    fn run_request(&self, form: NewRunForm) -> Result<RunRequest, String> {
        let cloned = match form.clone_of.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => Some(self.cloned_config(id)?),
            None => None,
        };
        Ok(RunRequest {
            config: form.train_config(cloned)?,
            name: form
                .name
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_string),
            model: form.model,
            dataset: form.dataset,
            force: form.force.as_deref() == Some("true"),
        })
    }

    /// A stored run's config for a clone: every setting but the paths
    /// Loralab sets from the chosen model and dataset.
    fn cloned_config(&self, id: &str) -> Result<TrainConfig, String> {
        let id: i64 = id
            .parse()
            .map_err(|_| format!("clone_of: {id:?} is not a run id"))?;
        let run = self
            .store
            .run(id)
            .map_err(|error| user_error("reading the run", error))?
            .ok_or_else(|| format!("clone_of: run {id} no longer exists"))?;
        let fresh = TrainConfig::default();
        Ok(TrainConfig {
            model: fresh.model,
            data: fresh.data,
            adapter_path: fresh.adapter_path,
            resume_adapter_file: fresh.resume_adapter_file,
            ..run.config
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatError;
    use crate::compare::CompareError;

    #[test]
    fn pages_show_refusals_but_not_internal_errors() {
        let compare = page_error("starting the comparison");
        assert_eq!(
            compare(CompareError::invalid("prompt", "is empty")),
            "prompt: is empty"
        );
        assert_eq!(
            compare(CompareError::Internal(anyhow::anyhow!(
                "disk I/O error in /srv/db"
            ))),
            "starting the comparison failed; see the server log"
        );
        let chat = chat_error("sending the message");
        assert_eq!(
            chat(ChatError::Generation(
                "the adapter does not fit the model".into()
            )),
            "the adapter does not fit the model"
        );
        assert_eq!(
            chat(ChatError::Internal(anyhow::anyhow!("database is locked"))),
            "sending the message failed; see the server log"
        );
    }
}
