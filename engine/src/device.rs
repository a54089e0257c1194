//! Which MLX device computes, and how to describe it to a user.

use mlx_rs::{Device, DeviceType};
use serde::{Deserialize, Serialize};

/// The device MLX computes on in this process, as shown in `/api/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cpu` or `gpu` (Metal on macOS, CUDA on Linux).
    pub kind: String,
    /// A human description, e.g. "CPU (OpenBLAS)" or "GPU (CUDA)".
    pub description: String,
}

pub fn current() -> DeviceInfo {
    let device = Device::default();
    let gpu = matches!(device.get_type(), Ok(DeviceType::Gpu));
    let backend = if !gpu {
        "CPU"
    } else if cfg!(target_vendor = "apple") {
        "GPU (Metal)"
    } else {
        "GPU (CUDA)"
    };
    DeviceInfo {
        kind: if gpu { "gpu" } else { "cpu" }.to_string(),
        description: backend.to_string(),
    }
}
