//! What the pages need from the server, as a trait the server implements.

use std::sync::Arc;

use crate::dto::{HealthInfo, RunSummary};

/// The server's state as pages see it. Errors are messages fit for a user.
pub trait Backend: Send + Sync + 'static {
    fn health(&self) -> HealthInfo;
    fn list_runs(&self) -> Result<Vec<RunSummary>, String>;
}

pub type SharedBackend = Arc<dyn Backend>;
