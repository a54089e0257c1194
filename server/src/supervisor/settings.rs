//! How the supervisor runs workers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// Workers (trainings and the inference worker) that run at once, at
    /// most. 1 on the CPU: a training there takes every core, so a second
    /// one would only halve both. 4 on a GPU, where the memory budget
    /// decides.
    pub max_concurrent: usize,
    /// Bytes the runs' memory estimates may add up to before a queued run
    /// waits for another to end (a run alone always starts: its own estimate
    /// was shown before launch). `None`: unknown, one run at a time.
    pub memory_budget: Option<u64>,
    /// How long a worker may take to checkpoint after `Stop` before it is killed.
    pub stop_grace: Duration,
    /// The binary to run as `<exe> worker`.
    pub worker_exe: PathBuf,
    /// Runs on several ranks use NCCL between GPUs, else the ring backend.
    pub on_gpu: bool,
}

impl SupervisorSettings {
    /// Defaults for the device, overridden by `LORALAB_MAX_CONCURRENT_RUNS`,
    /// `LORALAB_MEMORY_BUDGET_MB` (default: the memory the device had
    /// available when the server started) and `LORALAB_STOP_GRACE_SECS` (tests shorten the grace
    /// period).
    pub fn from_env(device: &engine::device::DeviceInfo) -> Result<Self> {
        let number = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("{name} must be a whole number, got {text:?}")),
                Err(_) => Ok(default),
            }
        };
        let default_concurrent = if device.kind == "gpu" { 4 } else { 1 };
        let memory_budget = match std::env::var("LORALAB_MEMORY_BUDGET_MB") {
            Ok(_) => Some(number("LORALAB_MEMORY_BUDGET_MB", 0)? * 1024 * 1024),
            Err(_) => device.memory,
        };
        Ok(Self {
            max_concurrent: number("LORALAB_MAX_CONCURRENT_RUNS", default_concurrent)?.max(1)
                as usize,
            memory_budget,
            stop_grace: Duration::from_secs(number("LORALAB_STOP_GRACE_SECS", 30)?),
            worker_exe: std::env::current_exe().context("cannot locate the loralab binary")?,
            on_gpu: device.kind == "gpu",
        })
    }
}
