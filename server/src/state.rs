//! The state every request handler shares.

use std::sync::Arc;

use engine::device::DeviceInfo;

use crate::compare::ComparisonHub;
use crate::datasets::TokenizerCache;
use crate::inference::Inference;
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
    /// Tokenizers of registered models, for dataset previews.
    pub tokenizers: TokenizerCache,
    /// Datasets' token figures: stored, and those being computed.
    pub inspections: crate::inspections::Inspections,
    /// The inference worker behind comparisons and chat.
    pub inference: Inference,
    /// Comparisons being generated, and their live output.
    pub comparisons: Arc<ComparisonHub>,
    /// Models being pulled from the Hugging Face Hub.
    pub pulls: Arc<crate::hub::pulls::Pulls>,
    /// Exports of fine-tunes (fused models, PEFT adapters).
    pub exports: crate::exports::Exports,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// The machine's latest figures, the device and where they were read.
    pub fn system_view(&self) -> app::system_dto::SystemView {
        let monitor = self.supervisor.monitor();
        app::system_dto::SystemView {
            sample: (*monitor.latest()).clone(),
            device: self.device.description.clone(),
            root: monitor.root().display().to_string(),
            guard: crate::system::guard::describe(
                &engine::guard_config::GuardConfig::default(),
                &monitor.latest(),
            ),
        }
    }
}
