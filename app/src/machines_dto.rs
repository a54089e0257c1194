//! What the Machines page shows: registered machine sets (mlx.launch
//! hostfiles) and each host's last check.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineSetView {
    pub id: i64,
    pub name: String,
    /// The hostfile as it was registered (mlx.launch's JSON).
    pub hostfile: String,
    /// Each host's `ssh` name, in rank order.
    pub hosts: Vec<String>,
    pub created_at: String,
    pub checked_at: Option<String>,
    /// The last check, one entry per host; empty before the first.
    pub checks: Vec<HostCheck>,
}

impl MachineSetView {
    /// Checked, and every host passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|check| check.ok)
    }
}

/// One host's check over ssh: it answers, runs this Loralab (same version
/// at the same path), and how much memory it has free.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCheck {
    pub host: String,
    pub ok: bool,
    /// What `loralab --version` printed there.
    pub version: Option<String>,
    /// `MemAvailable` of the host's /proc/meminfo, when it has one.
    pub free_memory_bytes: Option<u64>,
    /// Why the check failed.
    pub reason: Option<String>,
}
