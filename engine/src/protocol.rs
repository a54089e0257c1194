//! The worker protocol: JSON lines over the worker's stdin (commands) and
//! stdout (events). Anything a worker prints on stderr is log text that the
//! server keeps as the run's log tail and uses to explain a crash.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// Server -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Train (or resume, when `run_dir` holds a checkpoint and `resume` is set).
    Train {
        config: Box<TrainConfig>,
        run_dir: String,
        resume: bool,
    },
    /// Save a checkpoint at the next step boundary, then exit.
    Stop,
}

/// Worker -> server. mlx-lm's report set, plus what a run's page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        total_steps: usize,
        start_step: usize,
        trainable_parameters: u64,
        total_parameters: u64,
        device: String,
        compute_dtype: String,
    },
    Report {
        step: usize,
        epoch: f64,
        train_loss: f64,
        learning_rate: f64,
        it_per_sec: f64,
        tokens_per_sec: f64,
        trained_tokens: u64,
        peak_memory_gb: f64,
    },
    Eval {
        step: usize,
        val_loss: f64,
        val_time_sec: f64,
    },
    Checkpoint {
        step: usize,
        path: String,
    },
    Log {
        message: String,
    },
    Stopped {
        step: usize,
    },
    Done {
        step: usize,
        test_loss: Option<f64>,
        test_perplexity: Option<f64>,
    },
    Failed {
        reason: String,
    },
}
