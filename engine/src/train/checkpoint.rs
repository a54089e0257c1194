//! What a run folder holds so training can stop and resume exactly:
//! mlx-lm's adapter files plus the optimizer state and `trainer_state.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use mlx_rs::Array;
use serde::{Deserialize, Serialize};

use super::retention::{EarlyStopState, SavedCheckpoint};

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

/// `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Training steps completed.
    pub step: usize,
    /// Optimizer updates applied (differs from `step` with grad accumulation).
    pub optimizer_step: usize,
    /// Where the next step reads: epoch and index into that epoch's order.
    pub data_position: DataPosition,
    /// Number of training batches the order was built over.
    pub train_batches: usize,
    pub rng: RngState,
    pub trained_tokens: u64,
    /// The unfinished report window, so reported averages survive a resume.
    pub window: Window,
    /// The numbered checkpoints on disk (`keep_checkpoints` prunes them);
    /// `None` in a state written before Loralab listed them, whose files
    /// are then left alone.
    #[serde(default)]
    pub checkpoints: Option<Vec<SavedCheckpoint>>,
    #[serde(default)]
    pub early_stopping: EarlyStopState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: usize,
    pub index: usize,
}

/// All randomness is derived from `seed`: LoRA init from `seed`, the data
/// order from (seed, epoch), dropout masks from (seed, step, layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub next_step: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Window {
    pub loss_sum: f64,
    pub tokens: u64,
    pub steps: usize,
}

pub fn read_state(run_dir: &Path) -> Result<TrainerState> {
    let path = run_dir.join(TRAINER_STATE_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("cannot resume: cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

pub fn write_state(run_dir: &Path, state: &TrainerState) -> Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    write_atomically(&run_dir.join(TRAINER_STATE_FILE), |tmp| {
        std::fs::write(tmp, &text).map_err(Into::into)
    })
}

/// Writes arrays to `path` through a temporary file, so an interrupted
/// write never leaves a truncated checkpoint behind.
pub fn save_arrays(path: &Path, arrays: &[(String, Array)]) -> Result<()> {
    write_atomically(path, |tmp| {
        Array::save_safetensors(arrays.iter().map(|(k, v)| (k.as_str(), v)), None, tmp)
            .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))
    })
}

/// Copies a file through a temporary one (see `save_arrays`).
pub fn copy_file(from: &Path, to: &Path) -> Result<()> {
    write_atomically(to, |tmp| {
        std::fs::copy(from, tmp)
            .map(|_| ())
            .map_err(|e| anyhow!("cannot copy {} to {}: {e}", from.display(), tmp.display()))
    })
}

pub fn load_arrays(path: &Path) -> Result<HashMap<String, Array>> {
    Array::load_safetensors(path).map_err(|e| anyhow!("cannot load {}: {e}", path.display()))
}

fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // MLX insists on the `.safetensors` extension, so the marker goes in front.
    let tmp: PathBuf = path.with_file_name(format!(".tmp-{name}"));
    write(&tmp)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow!("cannot move {} to {}: {e}", tmp.display(), path.display()))
}
