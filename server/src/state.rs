//! The state every request handler shares.

use std::sync::Arc;

use app::dto::{HealthInfo, RunSummary};
use engine::device::DeviceInfo;

use crate::setup::DataDir;
use crate::store::Store;
use crate::supervisor::Supervisor;

pub struct AppState {
    pub store: Arc<Store>,
    pub data_dir: DataDir,
    /// What a worker reported about MLX's device when the server started.
    pub device: DeviceInfo,
    /// The queue and the worker processes of runs.
    pub supervisor: Supervisor,
}

pub type SharedState = Arc<AppState>;

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
        self.store.list_runs().map_err(|error| {
            tracing::error!(%error, "listing runs");
            "the run list could not be read; see the server log".to_string()
        })
    }
}
