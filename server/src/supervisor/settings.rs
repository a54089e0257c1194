//! How the supervisor runs workers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// Trainings that run at once (1: CPU training takes every core).
    pub max_concurrent: usize,
    /// How long a worker may take to checkpoint after `Stop` before it is killed.
    pub stop_grace: Duration,
    /// The binary to run as `<exe> worker`.
    pub worker_exe: PathBuf,
}

impl SupervisorSettings {
    /// Defaults, overridden by `LORALAB_MAX_CONCURRENT_RUNS` and
    /// `LORALAB_STOP_GRACE_SECS` (tests shorten the grace period).
    pub fn from_env() -> Result<Self> {
        let number = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("{name} must be a whole number, got {text:?}")),
                Err(_) => Ok(default),
            }
        };
        Ok(Self {
            max_concurrent: number("LORALAB_MAX_CONCURRENT_RUNS", 1)?.max(1) as usize,
            stop_grace: Duration::from_secs(number("LORALAB_STOP_GRACE_SECS", 30)?),
            worker_exe: std::env::current_exe().context("cannot locate the loralab binary")?,
        })
    }
}
