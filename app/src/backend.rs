//! What the pages need from the server, as a trait the server implements.

use std::sync::Arc;

use crate::dto::{
    DatasetDetail, DatasetQuery, DatasetSummary, HealthInfo, ModelSummary, NewRunForm, RunDetail,
    RunSummary,
};

/// The server's state as pages see it. Errors are messages fit for a user.
pub trait Backend: Send + Sync + 'static {
    fn health(&self) -> HealthInfo;
    fn list_runs(&self) -> Result<Vec<RunSummary>, String>;
    fn run_detail(&self, id: i64) -> Result<Option<RunDetail>, String>;
    fn list_models(&self) -> Result<Vec<ModelSummary>, String>;
    fn list_datasets(&self) -> Result<Vec<DatasetSummary>, String>;
    /// A dataset checked with the query's model and settings; `None` when
    /// there is no such dataset.
    fn dataset_detail(&self, id: i64, query: DatasetQuery)
        -> Result<Option<DatasetDetail>, String>;
    /// Refused while a queued or running run uses the dataset.
    fn delete_dataset(&self, id: i64) -> Result<(), String>;
    /// Validates the form and queues the run; errors name the field.
    fn create_run(&self, form: NewRunForm) -> Result<i64, String>;
    fn stop_run(&self, id: i64) -> Result<(), String>;
    fn resume_run(&self, id: i64) -> Result<(), String>;
    /// After a server function succeeds: where the browser goes next (a
    /// plain form post without JavaScript follows this redirect).
    fn redirect(&self, path: &str);
}

pub type SharedBackend = Arc<dyn Backend>;
