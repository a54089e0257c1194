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

/// MLX's CPU backend compiles fused elementwise kernels at run time and
/// caches them in `$TMPDIR/mlx/<version>/cpu`, under names that say what a
/// kernel computes but not how it was built. Another MLX program (mlx-lm,
/// say) leaves kernels there built from MLX's own preamble, which ours would
/// then reuse without `patches/mlx-jit-preamble.h`'s fast exp. So our
/// processes compile into a folder of their own, named after that preamble.
///
/// It sets `TMPDIR` (MLX reads nothing else), so it must run first thing in
/// `main`, before any thread starts; child processes inherit it.
pub fn use_own_kernel_cache() {
    let preamble = include_bytes!("../../patches/mlx-jit-preamble.h");
    // FNV-1a: a name that changes when the preamble does.
    let hash = preamble.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base
        .join("loralab")
        .join(format!("mlx-kernels-{:08x}", hash as u32));
    // Where the folder cannot be made, MLX's default stays: slower kernels
    // at worst, never a failure.
    if std::fs::create_dir_all(&dir).is_ok() {
        std::env::set_var("TMPDIR", &dir);
    }
}
