//! Which MLX device computes, and how to describe it to a user.

use std::ffi::{c_char, CStr};

use mlx_rs::{Device, DeviceType};
use serde::{Deserialize, Serialize};

/// The device MLX computes on in this process, as shown in `/api/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cpu` or `gpu` (Metal on macOS, CUDA on Linux).
    pub kind: String,
    /// A human description, e.g. "CPU" or "GPU (CUDA, NVIDIA H100 80GB HBM3)".
    pub description: String,
    /// Bytes a new worker can have on this device when it was read: the
    /// GPU's free memory (CUDA), Metal's recommended working set (memory
    /// shared with the system), or the system's available memory (CPU).
    #[serde(default)]
    pub memory: Option<u64>,
    /// Whether the CPU's one-row float32 products (decoding's) run as
    /// BLAS matrix-vector products ([`crate::blas`]).
    #[serde(default)]
    pub one_row_products_via_gemv: bool,
}

impl DeviceInfo {
    /// Memory a new worker can have now. On the CPU it is read again, since
    /// other programs come and go; on a GPU it is the figure read with the
    /// rest (a process that does not load MLX cannot ask the GPU).
    pub fn memory_now(&self) -> Option<u64> {
        if self.kind == "cpu" {
            crate::memory::available_memory()
        } else {
            self.memory
        }
    }
}

/// Whether MLX computes on a GPU in this process.
pub fn is_gpu() -> bool {
    matches!(Device::default().get_type(), Ok(DeviceType::Gpu))
}

pub fn current() -> DeviceInfo {
    if !is_gpu() {
        return DeviceInfo {
            kind: "cpu".to_string(),
            description: "CPU".to_string(),
            memory: crate::memory::available_memory(),
            one_row_products_via_gemv: crate::blas::routes_one_row_products(),
        };
    }
    let backend = if cfg!(target_vendor = "apple") {
        "Metal"
    } else {
        "CUDA"
    };
    let properties = GpuProperties::read();
    let name = properties.as_ref().and_then(|p| p.text(c"device_name"));
    // CUDA reports free memory; Metal the working set it recommends, which
    // is the memory a process can use without the system swapping.
    let memory = properties.as_ref().and_then(|p| {
        [
            c"free_memory",
            c"max_recommended_working_set_size",
            c"total_memory",
            c"memory_size",
        ]
        .into_iter()
        .find_map(|key| p.size(key))
    });
    DeviceInfo {
        kind: "gpu".to_string(),
        description: match name {
            Some(name) => format!("GPU ({backend}, {name})"),
            None => format!("GPU ({backend})"),
        },
        memory,
        // The GPU's matmuls are its own kernels, not BLAS's.
        one_row_products_via_gemv: false,
    }
}

/// MLX's description of GPU 0. Its keys depend on the backend; mlx-rs does
/// not wrap it, so this reads it through mlx-c.
struct GpuProperties(mlx_sys::mlx_device_info);

impl GpuProperties {
    fn read() -> Option<Self> {
        // SAFETY: mlx-c's constructors and getters take and return plain
        // handles; each one made here is freed exactly once (the info by Drop).
        unsafe {
            let device = mlx_sys::mlx_device_new_type(mlx_sys::mlx_device_type__MLX_GPU, 0);
            let mut info = mlx_sys::mlx_device_info_new();
            let status = mlx_sys::mlx_device_info_get(&mut info, device);
            mlx_sys::mlx_device_free(device);
            let properties = Self(info);
            (status == 0).then_some(properties)
        }
    }

    fn size(&self, key: &CStr) -> Option<u64> {
        let mut value = 0usize;
        // SAFETY: the info handle is alive; a missing key or a string value
        // returns non-zero and leaves `value` alone.
        let status = unsafe { mlx_sys::mlx_device_info_get_size(&mut value, self.0, key.as_ptr()) };
        (status == 0).then_some(value as u64)
    }

    fn text(&self, key: &CStr) -> Option<String> {
        let mut value: *const c_char = std::ptr::null();
        // SAFETY: on success `value` points at a string the info owns; it is
        // copied before the info can be freed.
        unsafe {
            let status = mlx_sys::mlx_device_info_get_string(&mut value, self.0, key.as_ptr());
            (status == 0 && !value.is_null())
                .then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }
}

impl Drop for GpuProperties {
    fn drop(&mut self) {
        // SAFETY: made by `mlx_device_info_new` and freed only here.
        unsafe {
            mlx_sys::mlx_device_info_free(self.0);
        }
    }
}

/// MLX's CUDA backend compiles kernels at run time against CUDA's headers,
/// which it looks for under `CUDA_HOME`. Where set-up installed MLX's CUDA
/// build, it put the headers beside it and names that folder to the build
/// (`LORALAB_CUDA_HOME`, see scripts/setup.sh). A `CUDA_HOME` the user set
/// wins.
///
/// It sets a variable, so it must run first thing in `main`, before any
/// thread starts; child processes inherit it.
pub fn use_installed_cuda_headers() {
    let Some(headers) = option_env!("LORALAB_CUDA_HOME") else {
        return;
    };
    if std::env::var_os("CUDA_HOME").is_none() && std::path::Path::new(headers).is_dir() {
        std::env::set_var("CUDA_HOME", headers);
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
