//! What the pages need from the server, as a trait the server implements.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::compare_dto::{
    Ballot, ChatSettingsForm, ChatView, CompareChoices, ComparisonEvaluations, ComparisonView,
    EvaluationView, ImportAdapterForm, NewChatForm, NewComparisonForm, RunEvaluations,
};
use crate::dto::{
    DatasetDetail, DatasetQuery, DatasetSummary, ExportView, HealthInfo, ModelSummary, NewRunForm,
    PullView, RunCheck, RunDetail, RunSummary,
};
use crate::run_comparison_dto::RunComparison;

/// The server's state as pages see it. Errors are messages fit for a user.
pub trait Backend: Send + Sync + 'static {
    fn health(&self) -> HealthInfo;
    fn list_runs(&self) -> Result<Vec<RunSummary>, String>;
    fn run_detail(&self, id: i64) -> Result<Option<RunDetail>, String>;
    /// The machine's latest figures (the System page).
    fn system(&self) -> crate::system_dto::SystemView;
    /// Runs side by side; `ids` as `?ids=` has them, comma-separated.
    /// Errors name the field (2 to 8 runs, ids that are no runs).
    fn compare_runs(&self, ids: String) -> Result<RunComparison, String>;
    fn list_models(&self) -> Result<Vec<ModelSummary>, String>;
    /// Registers a GGUF file or model folder on this machine; errors name
    /// the field.
    fn import_model(&self, name: Option<String>, path: String) -> Result<i64, String>;
    /// Forgets a model (its files stay); refused while a run uses it.
    fn delete_model(&self, id: i64) -> Result<(), String>;
    /// Starts pulling `repo` (`org/name[/file.gguf][@revision]`) from the
    /// Hugging Face Hub in the background, or joins the pull of the same
    /// model already running; returns the pull's id.
    fn start_pull(&self, repo: String, revision: Option<String>) -> Result<u64, String>;
    /// Pulls a failed pull's model again in its place; the new pull's id.
    fn retry_pull(&self, id: u64) -> Result<u64, String>;
    /// Forgets a failed pull.
    fn dismiss_pull(&self, id: u64) -> Result<(), String>;
    /// Pulls of this server's lifetime, newest first.
    fn list_pulls(&self) -> Vec<PullView>;
    fn list_datasets(&self) -> Result<Vec<DatasetSummary>, String>;
    /// A dataset checked with the query's model and settings; `None` when
    /// there is no such dataset.
    fn dataset_detail(&self, id: i64, query: DatasetQuery)
        -> Result<Option<DatasetDetail>, String>;
    /// Refused while a queued or running run uses the dataset.
    fn delete_dataset(&self, id: i64) -> Result<(), String>;
    /// Validates the form without starting anything: the config it would
    /// run and its memory estimate; errors name the field.
    fn check_run(&self, form: NewRunForm) -> Result<RunCheck, String>;
    /// Validates the form and queues the run; errors name the field.
    fn create_run(&self, form: NewRunForm) -> Result<i64, String>;
    fn stop_run(&self, id: i64) -> Result<(), String>;
    /// Refused while a worker is busy with the run.
    fn delete_run(&self, id: i64) -> Result<(), String>;
    /// The new-run form filled with an earlier run's settings ("clone");
    /// `None` when there is no such run.
    fn run_form(&self, id: i64) -> Result<Option<NewRunForm>, String>;
    fn resume_run(&self, id: i64) -> Result<(), String>;
    /// Exports (of run `run_id` only, when given), newest first.
    fn list_exports(&self, run_id: Option<i64>) -> Result<Vec<ExportView>, String>;
    /// One export as it is now; `None` when there is no such export.
    fn export(&self, id: i64) -> Result<Option<ExportView>, String>;
    /// After a server function succeeds: where the browser goes next (a
    /// plain form post without JavaScript follows this redirect).
    fn redirect(&self, path: &str);

    /// Models, adapters, datasets and recent comparisons for the compare form.
    fn compare_choices(&self) -> Result<CompareChoices, String>;
    /// Validates the form, saves the comparison and starts generating it.
    fn create_comparison(&self, form: NewComparisonForm) -> Result<i64, String>;
    /// Resolves when comparison `id` has finished generating (at once when
    /// it is not generating), so a no-JS form post can show the outputs.
    fn wait_comparison(&self, id: i64) -> BoxFuture<'_, ()>;
    fn comparison(&self, id: i64) -> Result<Option<ComparisonView>, String>;
    /// Prompt `prompt`'s outputs, shuffled and unlabelled.
    fn ballot(&self, id: i64, prompt: usize) -> Result<Option<Ballot>, String>;
    fn vote(&self, id: i64, prompt: usize, output: i64) -> Result<(), String>;
    fn import_adapter(&self, form: ImportAdapterForm) -> Result<(), String>;
    fn create_chat(&self, form: NewChatForm) -> Result<i64, String>;
    fn chat(&self, id: i64) -> Result<Option<ChatView>, String>;
    /// The newest chats, newest first, to reopen.
    fn recent_chats(&self) -> Result<Vec<ChatView>, String>;
    fn set_chat_settings(&self, id: i64, form: ChatSettingsForm) -> Result<(), String>;
    /// Sends a message and waits for the whole reply.
    fn send_chat(&self, id: i64, message: String) -> BoxFuture<'_, Result<(), String>>;

    /// The run page's evaluations; `None` when there is no such run.
    fn run_evaluations(&self, id: i64) -> Result<Option<RunEvaluations>, String>;
    /// Evaluates a run's checkpoint (`step`, default its best) on a split
    /// of its dataset (default test) and waits for the result.
    fn evaluate_run(
        &self,
        id: i64,
        split: Option<String>,
        step: Option<i64>,
    ) -> BoxFuture<'_, Result<EvaluationView, String>>;
    /// Each column's stored loss on a dataset split (nothing computed).
    fn comparison_evaluations(
        &self,
        id: i64,
        dataset: String,
        split: String,
    ) -> Result<ComparisonEvaluations, String>;
    /// Evaluates every column on a dataset split and waits.
    fn evaluate_comparison(
        &self,
        id: i64,
        dataset: String,
        split: String,
    ) -> BoxFuture<'_, Result<ComparisonEvaluations, String>>;
    /// Stops a comparison being generated and waits until it has ended;
    /// false when it was not running.
    fn cancel_comparison(&self, id: i64) -> BoxFuture<'_, Result<bool, String>>;

    /// Registered machine sets (the Machines page), by name.
    fn machine_sets(&self) -> Result<Vec<crate::machines_dto::MachineSetView>, String>;
    /// Registers a machine set from an mlx.launch hostfile; errors name
    /// the field (and the host entry).
    fn register_machine_set(&self, name: String, hostfile: String) -> Result<i64, String>;
    fn delete_machine_set(&self, id: i64) -> Result<(), String>;
    /// Checks every host of the set over ssh and stores the results.
    fn check_machine_set(&self, id: i64) -> BoxFuture<'_, Result<(), String>>;
}

/// A boxed future borrowing the backend, for the few calls that wait on
/// generation.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub type SharedBackend = Arc<dyn Backend>;
