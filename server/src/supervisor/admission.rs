//! Admission: which work may start beside what already runs. Trainings
//! and the inference worker each hold one of `max_concurrent` worker slots;
//! trainings, the inference worker and exports start side by side only
//! while their memory estimates add up within the budget. Something alone
//! always starts (its estimate was shown before launch), and an estimate
//! that is not known (a run queued before a restart, a model whose files
//! could not be read) runs alone.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// What a queued training may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RunAdmission {
    Start,
    /// It waits, and so do the runs queued after it (first in, first out,
    /// so a large run is not starved).
    Wait,
    /// It waits for the inference worker's slot or memory: the worker is
    /// asked to stop (training comes first).
    WaitForInference,
}

pub(super) struct Admission {
    max_concurrent: usize,
    memory_budget: Option<u64>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Memory estimates of runs queued or started by this server, in bytes.
    runs: HashMap<i64, u64>,
    /// The inference worker, while it runs: it holds one slot, and its
    /// memory estimate when its model could be read.
    inference: Option<Option<u64>>,
    /// Memory estimates of running exports, by id.
    exports: HashMap<i64, u64>,
}

impl Admission {
    pub(super) fn new(max_concurrent: usize, memory_budget: Option<u64>) -> Self {
        Self {
            max_concurrent,
            memory_budget,
            held: Mutex::default(),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the memory estimate of a queued run.
    pub(super) fn set_run_estimate(&self, id: i64, bytes: u64) {
        self.held().runs.insert(id, bytes);
    }

    /// Whether queued run `id` may start beside the runs `running`.
    pub(super) fn admit_run(&self, id: i64, running: &[i64]) -> RunAdmission {
        let held = self.held();
        let inference = held.inference;
        if running.len() + usize::from(inference.is_some()) >= self.max_concurrent {
            return if inference.is_some() {
                RunAdmission::WaitForInference
            } else {
                RunAdmission::Wait
            };
        }
        let mut beside = held.estimates_of(running);
        beside.extend(held.exports.values().map(|&bytes| Some(bytes)));
        let fits = |with_inference: bool| {
            let mut beside = beside.clone();
            if with_inference {
                beside.extend(inference);
            }
            beside.is_empty() || self.fits(held.estimates_of(&[id]).into_iter().chain(beside))
        };
        if fits(true) {
            RunAdmission::Start
        } else if inference.is_some() && fits(false) {
            RunAdmission::WaitForInference
        } else {
            RunAdmission::Wait
        }
    }

    /// Takes a slot for the inference worker that will hold `estimate`
    /// bytes, if one is free and the memory budget has room for it beside
    /// the runs `busy` (when none runs, it always does).
    pub(super) fn take_inference_slot(&self, estimate: Option<u64>, busy: &[i64]) -> bool {
        let mut held = self.held();
        if held.inference.is_some() {
            return true;
        }
        if busy.len() >= self.max_concurrent {
            return false;
        }
        let runs = held.estimates_of(busy);
        if !runs.is_empty() && !self.fits(runs.into_iter().chain([estimate])) {
            return false;
        }
        held.inference = Some(estimate);
        true
    }

    /// The inference worker loaded another model, which holds `estimate`.
    pub(super) fn set_inference_estimate(&self, estimate: Option<u64>) {
        if let Some(held) = self.held().inference.as_mut() {
            *held = estimate;
        }
    }

    pub(super) fn release_inference_slot(&self) {
        self.held().inference = None;
    }

    /// Admits export `id`, which needs `estimate` bytes, when the memory
    /// budget has room for it beside the runs `running`, the inference
    /// worker and other exports (alone, it always starts). Exports take no
    /// worker slot: they are short and mostly read and write files.
    pub(super) fn admit_export(&self, id: i64, estimate: u64, running: &[i64]) -> bool {
        let mut held = self.held();
        let mut beside = held.estimates_of(running);
        beside.extend(held.inference);
        beside.extend(held.exports.values().map(|&bytes| Some(bytes)));
        if !beside.is_empty() && !self.fits(beside.into_iter().chain([Some(estimate)])) {
            return false;
        }
        held.exports.insert(id, estimate);
        true
    }

    pub(super) fn release_export(&self, id: i64) {
        self.held().exports.remove(&id);
    }

    /// Whether these estimates add up within the memory budget: only when
    /// the budget and every estimate are known.
    fn fits(&self, estimates: impl IntoIterator<Item = Option<u64>>) -> bool {
        let Some(budget) = self.memory_budget else {
            return false;
        };
        let mut total = 0u64;
        for estimate in estimates {
            match estimate {
                Some(bytes) => total = total.saturating_add(bytes),
                None => return false,
            }
        }
        total <= budget
    }
}

impl Held {
    /// The memory estimates of runs `ids` (`None` where there is none).
    fn estimates_of(&self, ids: &[i64]) -> Vec<Option<u64>> {
        ids.iter().map(|id| self.runs.get(id).copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn with_runs(max_concurrent: usize, budget: u64, runs: &[(i64, u64)]) -> Admission {
        let admission = Admission::new(max_concurrent, Some(budget));
        for &(id, bytes) in runs {
            admission.set_run_estimate(id, bytes);
        }
        admission
    }

    #[test]
    fn runs_start_side_by_side_only_while_their_estimates_fit() {
        let admission = with_runs(4, 10 * GIB, &[(1, 6 * GIB), (2, 3 * GIB), (3, 2 * GIB)]);
        assert_eq!(admission.admit_run(1, &[]), RunAdmission::Start);
        assert_eq!(admission.admit_run(2, &[1]), RunAdmission::Start);
        assert_eq!(admission.admit_run(3, &[1, 2]), RunAdmission::Wait);
        // A run alone always starts, larger than the budget or not.
        let large = with_runs(4, GIB, &[(1, 6 * GIB)]);
        assert_eq!(large.admit_run(1, &[]), RunAdmission::Start);
    }

    #[test]
    fn a_run_without_an_estimate_or_without_a_budget_runs_alone() {
        let admission = with_runs(4, 10 * GIB, &[(1, GIB)]);
        assert_eq!(admission.admit_run(2, &[]), RunAdmission::Start);
        assert_eq!(admission.admit_run(2, &[1]), RunAdmission::Wait);
        assert_eq!(admission.admit_run(1, &[2]), RunAdmission::Wait);
        let unbudgeted = Admission::new(4, None);
        unbudgeted.set_run_estimate(1, 1);
        unbudgeted.set_run_estimate(2, 1);
        assert_eq!(unbudgeted.admit_run(2, &[1]), RunAdmission::Wait);
    }

    #[test]
    fn slots_bound_the_runs_and_the_inference_worker_together() {
        let admission = with_runs(2, 100 * GIB, &[(1, GIB), (2, GIB)]);
        assert!(admission.take_inference_slot(Some(GIB), &[1]));
        assert_eq!(admission.admit_run(2, &[1]), RunAdmission::WaitForInference);
        // Taking the slot again (the worker lives on) is no second slot.
        assert!(admission.take_inference_slot(Some(GIB), &[1]));
        admission.release_inference_slot();
        assert_eq!(admission.admit_run(2, &[1]), RunAdmission::Start);
        assert!(!admission.take_inference_slot(Some(GIB), &[1, 2]));
    }

    #[test]
    fn the_inference_worker_is_asked_to_stop_only_when_the_run_fits_without_it() {
        let admission = with_runs(4, 10 * GIB, &[(1, 5 * GIB), (2, 4 * GIB), (3, 6 * GIB)]);
        assert!(admission.take_inference_slot(Some(3 * GIB), &[1]));
        assert_eq!(admission.admit_run(2, &[1]), RunAdmission::WaitForInference);
        assert_eq!(admission.admit_run(3, &[1]), RunAdmission::Wait);
        // A model it loads later is weighed instead.
        admission.set_inference_estimate(Some(GIB));
        assert_eq!(admission.admit_run(2, &[1]), RunAdmission::Start);
        // An inference worker that does not fit beside the runs is refused.
        admission.release_inference_slot();
        assert!(!admission.take_inference_slot(Some(6 * GIB), &[1]));
        assert!(!admission.take_inference_slot(None, &[1]));
        assert!(admission.take_inference_slot(None, &[]));
    }

    #[test]
    fn exports_take_memory_but_no_slot() {
        let admission = with_runs(1, 10 * GIB, &[(1, 6 * GIB), (2, 3 * GIB)]);
        assert!(admission.admit_export(7, 2 * GIB, &[1]));
        assert!(!admission.admit_export(8, 3 * GIB, &[1]));
        assert_eq!(admission.admit_run(2, &[]), RunAdmission::Start);
        assert!(admission.admit_export(8, 3 * GIB, &[]));
        assert_eq!(admission.admit_run(1, &[]), RunAdmission::Wait);
        admission.release_export(7);
        admission.release_export(8);
        assert_eq!(admission.admit_run(1, &[]), RunAdmission::Start);
    }
}
