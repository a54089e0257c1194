//! Data shared by the pages, their server functions and the JSON API.

use serde::{Deserialize, Serialize};

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthInfo {
    pub status: String,
    pub version: String,
    /// `cpu` or `gpu`.
    pub device: String,
    /// e.g. "CPU" or "GPU (CUDA)".
    pub device_description: String,
}

/// A run as the runs list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub model: String,
    pub dataset: String,
    pub step: u64,
    pub total_steps: u64,
    pub latest_val_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub tokens_per_sec: Option<f64>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl RunSummary {
    /// Fraction of the steps done, 0..=1.
    pub fn progress(&self) -> f64 {
        if self.total_steps == 0 {
            0.0
        } else {
            (self.step as f64 / self.total_steps as f64).clamp(0.0, 1.0)
        }
    }
}
