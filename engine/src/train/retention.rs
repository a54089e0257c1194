//! `keep_checkpoints` and `early_stopping`: which numbered checkpoints stay
//! on disk, and when a run has stopped improving. Both rank checkpoints by
//! the validation loss the run reported for their weights, as the server's
//! "best" mark does (the lowest; the earliest on a tie).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::protocol::Event;

/// A numbered checkpoint on disk, with the validation loss of its weights
/// when an evaluation ran at its step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SavedCheckpoint {
    pub step: usize,
    pub val_loss: Option<f64>,
}

/// The numbered weights file of `step`, as mlx-lm names it.
pub fn numbered_file(run_dir: &Path, step: usize) -> PathBuf {
    run_dir.join(format!("{step:07}_adapters.safetensors"))
}

/// The step of a numbered weights file's name (`0000040_adapters.safetensors`).
fn numbered_step(file_name: &str) -> Option<usize> {
    let digits = file_name.strip_suffix("_adapters.safetensors")?;
    (digits.len() == 7 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Adds (or updates) the checkpoint of `saved.step`; a re-save without an
/// evaluation keeps the loss measured at that step.
pub fn record(list: &mut Vec<SavedCheckpoint>, saved: SavedCheckpoint) {
    match list.iter_mut().find(|c| c.step == saved.step) {
        Some(existing) => existing.val_loss = saved.val_loss.or(existing.val_loss),
        None => list.push(saved),
    }
    list.sort_by_key(|c| c.step);
}

/// Removes from `list` what `keep_checkpoints: keep` does not keep: all but
/// the `keep` lowest validation losses and the latest step (the one a
/// resume continues from). Returns the removed checkpoints.
pub fn prune(list: &mut Vec<SavedCheckpoint>, keep: usize) -> Vec<SavedCheckpoint> {
    let latest = list.iter().map(|c| c.step).max();
    let mut ranked: Vec<(f64, usize)> = list
        .iter()
        .filter_map(|c| c.val_loss.map(|loss| (loss, c.step)))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let best: Vec<usize> = ranked.into_iter().take(keep).map(|(_, s)| s).collect();
    let (kept, removed): (Vec<SavedCheckpoint>, Vec<SavedCheckpoint>) = list
        .iter()
        .partition(|c| Some(c.step) == latest || best.contains(&c.step));
    *list = kept;
    removed
}

/// Deletes the numbered checkpoint of `step`, saying so first (see
/// `Event::CheckpointRemoved`).
pub fn remove(run_dir: &Path, step: usize, emit: &mut dyn FnMut(Event)) -> Result<()> {
    let path = numbered_file(run_dir, step);
    emit(Event::CheckpointRemoved {
        step,
        path: path.display().to_string(),
    });
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow!("cannot delete {}: {error}", path.display()))
        }
        _ => Ok(()),
    }
}

/// On resume: makes the folder hold exactly `list`. A worker killed after
/// it wrote the trainer state but before it deleted what that state no
/// longer lists (or after it wrote a checkpoint newer than the state) left
/// files behind; a listed file that is gone is dropped from the list.
pub fn reconcile(
    run_dir: &Path,
    list: &mut Vec<SavedCheckpoint>,
    emit: &mut dyn FnMut(Event),
) -> Result<()> {
    let entries = std::fs::read_dir(run_dir)
        .map_err(|e| anyhow!("cannot read {}: {e}", run_dir.display()))?;
    let mut stray = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| anyhow!("cannot read {}: {e}", run_dir.display()))?;
        let name = entry.file_name();
        if let Some(step) = name.to_str().and_then(numbered_step) {
            if !list.iter().any(|c| c.step == step) {
                stray.push(step);
            }
        }
    }
    stray.sort_unstable();
    for step in stray {
        remove(run_dir, step, emit)?;
    }
    let (present, missing): (Vec<SavedCheckpoint>, Vec<SavedCheckpoint>) = list
        .iter()
        .partition(|c| numbered_file(run_dir, c.step).exists());
    for gone in missing {
        remove(run_dir, gone.step, emit)?;
    }
    *list = present;
    Ok(())
}

/// An evaluation early stopping compares against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    pub step: usize,
    pub val_loss: f64,
}

/// Early stopping's record, kept in `trainer_state.json` so a resumed run
/// stops where a straight one would.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct EarlyStopState {
    /// The lowest validation loss so far (the earliest on a tie).
    pub best: Option<Evaluated>,
    /// Evaluations in a row whose loss was not below the best by more
    /// than `min_delta`.
    pub evals_without_improvement: usize,
    /// The last step recorded (step 0 is evaluated again when a run
    /// stopped before its first update resumes).
    pub last_step: Option<usize>,
    /// The step the run stopped at, once it has.
    pub stopped_at: Option<usize>,
}

/// What one evaluation means for early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Its loss is the lowest so far: its weights must be a checkpoint.
    pub best: bool,
    /// `patience` evaluations without improvement: stop here.
    pub stop: bool,
}

impl EarlyStopState {
    pub fn record(
        &mut self,
        step: usize,
        val_loss: f64,
        patience: usize,
        min_delta: f64,
    ) -> Verdict {
        if self.last_step.is_some_and(|last| step <= last) {
            return Verdict::default();
        }
        self.last_step = Some(step);
        let improved = self
            .best
            .is_none_or(|best| val_loss < best.val_loss - min_delta);
        let lowest = self.best.is_none_or(|best| val_loss < best.val_loss);
        if lowest {
            self.best = Some(Evaluated { step, val_loss });
        }
        if improved {
            self.evals_without_improvement = 0;
        } else {
            self.evals_without_improvement += 1;
        }
        Verdict {
            best: lowest,
            stop: self.evals_without_improvement >= patience,
        }
    }
}

/// The reason a run that stopped early ends with.
pub fn early_stop_reason(step: usize, patience: usize) -> String {
    format!("stopped early at step {step}: no improvement in {patience} evaluations")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(step: usize, val_loss: Option<f64>) -> SavedCheckpoint {
        SavedCheckpoint { step, val_loss }
    }

    #[test]
    fn prune_keeps_the_best_and_the_latest() {
        let mut list = vec![
            saved(10, Some(2.0)),
            saved(20, Some(1.5)),
            saved(25, None),
            saved(30, Some(1.5)),
            saved(40, Some(3.0)),
            saved(45, None),
        ];
        let removed = prune(&mut list, 2);
        let steps = |l: &[SavedCheckpoint]| l.iter().map(|c| c.step).collect::<Vec<_>>();
        // 20 and 30 tie at 1.5 and are the two best; 45 is the latest.
        assert_eq!(steps(&list), [20, 30, 45]);
        assert_eq!(steps(&removed), [10, 25, 40]);
        let removed = prune(&mut list, 1);
        assert_eq!(steps(&list), [20, 45]);
        assert_eq!(steps(&removed), [30]);
    }

    #[test]
    fn record_keeps_a_step_s_measured_loss() {
        let mut list = vec![saved(10, Some(2.0))];
        record(&mut list, saved(10, None));
        record(&mut list, saved(5, None));
        assert_eq!(list, [saved(5, None), saved(10, Some(2.0))]);
    }

    #[test]
    fn numbered_names_round_trip() {
        let path = numbered_file(Path::new("/r"), 40);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "0000040_adapters.safetensors");
        assert_eq!(numbered_step(name), Some(40));
        assert_eq!(numbered_step("adapters.safetensors"), None);
        assert_eq!(numbered_step("000004x_adapters.safetensors"), None);
    }

    #[test]
    fn patience_counts_evaluations_without_enough_improvement() {
        let mut state = EarlyStopState::default();
        let verdicts: Vec<Verdict> = [(0, 3.0), (5, 2.0), (10, 1.95), (15, 2.5), (20, 1.9)]
            .into_iter()
            .map(|(step, loss)| state.record(step, loss, 3, 0.1))
            .collect();
        let best: Vec<bool> = verdicts.iter().map(|v| v.best).collect();
        let stop: Vec<bool> = verdicts.iter().map(|v| v.stop).collect();
        // 1.95 and 1.9 are new lows but not by more than 0.1 below 2.0 and
        // 1.95: three evaluations without improvement end it at step 20.
        assert_eq!(best, [true, true, true, false, true]);
        assert_eq!(stop, [false, false, false, false, true]);
        assert_eq!(
            state.best,
            Some(Evaluated {
                step: 20,
                val_loss: 1.9
            })
        );
        // An evaluation of a step already recorded changes nothing.
        assert_eq!(state.record(20, 0.1, 3, 0.1), Verdict::default());
        assert_eq!(state.evals_without_improvement, 3);
    }
}
