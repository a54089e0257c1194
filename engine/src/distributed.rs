//! MLX's distributed engine (`mx.distributed`), which mlx-rs does not wrap:
//! a process joins a group of ranks through mlx-c's `mlx_distributed_*`
//! (reached through mlx-sys, as `models::grad_checkpoint` does), and sums
//! arrays across them. The backends are MLX's: `ring` (TCP, any device;
//! reads `MLX_RANK` and `MLX_HOSTFILE` as `mlx.launch` sets them), `nccl`
//! (CUDA), `jaccl` (Thunderbolt RDMA), `mpi`.
//!
//! Like MLX's own `distributed::init`, the group is process-wide: [`init`]
//! joins it once, and [`world`] answers everywhere else (the trainer, the
//! evaluation), a group of one when the process was not started as a rank.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Result};
use mlx_rs::{Array, Dtype, Stream};

/// The backends MLX knows, in the order `any` tries them.
pub const BACKENDS: &[&str] = &["jaccl", "mpi", "ring", "nccl"];

/// mlx-lm's (and `mlx.nn.average_gradients`') bucket size: small gradients
/// travel concatenated, one all-reduce per ~32 MiB.
pub const BUCKET_BYTES: usize = 32 << 20;

/// This process's place among the ranks of a run.
pub struct World {
    group: Option<Group>,
}

struct Group {
    raw: mlx_sys::mlx_distributed_group,
    rank: usize,
    size: usize,
    /// The ring backend reduces on the CPU whatever the device; NCCL on the GPU.
    on_cpu: bool,
}

// SAFETY: the group is a handle on an immutable MLX object (a shared_ptr to
// its implementation), created once and never freed; MLX's collectives take
// it by value. Only the training thread issues collectives.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

static WORLD: OnceLock<World> = OnceLock::new();

/// The group this process joined with [`init`], or a group of one.
pub fn world() -> &'static World {
    WORLD.get_or_init(|| World { group: None })
}

/// Whether this MLX build has `backend`.
pub fn is_available(backend: &str) -> bool {
    let Ok(name) = CString::new(backend) else {
        return false;
    };
    // SAFETY: a valid C string for the duration of the call.
    unsafe { mlx_sys::mlx_distributed_is_available(name.as_ptr()) }
}

/// The backends of [`BACKENDS`] this MLX build has.
pub fn available_backends() -> Vec<&'static str> {
    BACKENDS
        .iter()
        .copied()
        .filter(|b| is_available(b))
        .collect()
}

/// A clear refusal for a backend this build lacks (checked before any rank
/// starts, and again by each rank).
pub fn check_backend(backend: &str) -> Result<()> {
    if !BACKENDS.contains(&backend) {
        bail!(
            "unknown distributed backend `{backend}`; MLX has {}",
            BACKENDS.join(", ")
        );
    }
    if !is_available(backend) {
        let have = available_backends();
        bail!(
            "this MLX build has no `{backend}` distributed backend (it has: {})",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        );
    }
    Ok(())
}

/// MLX's messages while [`init`] runs: mlx-c reports a failure through the
/// process's error handler, whose stash belongs to mlx-rs.
static INIT_ERROR: Mutex<Option<String>> = Mutex::new(None);

unsafe extern "C" fn keep_init_error(message: *const c_char, _data: *mut c_void) {
    // SAFETY: MLX passes a NUL-terminated message.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    if let Ok(mut slot) = INIT_ERROR.lock() {
        *slot = Some(text);
    }
}

unsafe extern "C" {
    /// mlx-rs's handler (`#[no_mangle]` in mlx-rs's `error.rs`), put back
    /// after [`init`] so every later error reaches mlx-rs as before.
    fn default_mlx_error_handler(message: *const c_char, data: *mut c_void);
}

/// Joins the group of ranks with `backend` (strict: a rank that cannot join
/// fails, it does not train alone). Call once, before any training.
pub fn init(backend: &str) -> Result<&'static World> {
    check_backend(backend)?;
    if WORLD.get().is_some() {
        bail!("the distributed group was already set up in this process");
    }
    let name = CString::new(backend)?;
    // SAFETY: the handler swap brackets one call on this thread; both
    // handlers are `extern "C"` functions that live as long as the process.
    let (status, raw) = unsafe {
        let mut raw = mlx_sys::mlx_distributed_group_new();
        mlx_sys::mlx_set_error_handler(Some(keep_init_error), std::ptr::null_mut(), None);
        let status = mlx_sys::mlx_distributed_init(&mut raw, true, name.as_ptr());
        mlx_sys::mlx_set_error_handler(Some(default_mlx_error_handler), std::ptr::null_mut(), None);
        (status, raw)
    };
    if status != 0 || raw.ctx.is_null() {
        let reason = INIT_ERROR
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or_else(|| "MLX gave no reason".into());
        bail!("cannot join the `{backend}` distributed group: {reason}");
    }
    // SAFETY: `raw` is the live group made above.
    let (rank, size) = unsafe {
        (
            mlx_sys::mlx_distributed_group_rank(raw),
            mlx_sys::mlx_distributed_group_size(raw),
        )
    };
    let group = Group {
        raw,
        rank: usize::try_from(rank)?,
        size: usize::try_from(size)?,
        on_cpu: backend != "nccl",
    };
    WORLD
        .set(World { group: Some(group) })
        .map_err(|_| anyhow!("the distributed group was set up twice"))?;
    Ok(world())
}

impl World {
    pub fn rank(&self) -> usize {
        self.group.as_ref().map_or(0, |g| g.rank)
    }

    pub fn size(&self) -> usize {
        self.group.as_ref().map_or(1, |g| g.size)
    }

    /// Rank 0 writes reports, checkpoints and the adapter for the run.
    pub fn is_leader(&self) -> bool {
        self.rank() == 0
    }

    /// `x` summed over the ranks (lazily, like any MLX op).
    pub fn all_sum(&self, x: &Array) -> Result<Array> {
        let Some(group) = &self.group else {
            return Ok(x.clone());
        };
        let stream = if group.on_cpu {
            Stream::cpu()
        } else {
            Stream::gpu()
        };
        // SAFETY: live handles; the result handle is owned by the `Array`.
        unsafe {
            let mut result = mlx_sys::mlx_array_new();
            let status = mlx_sys::mlx_distributed_all_sum(
                &mut result,
                x.as_ptr(),
                group.raw,
                stream.as_ptr(),
            );
            if status != 0 {
                mlx_sys::mlx_array_free(result);
                bail!("MLX could not build an all_sum across the ranks");
            }
            Ok(Array::from_ptr(result))
        }
    }

    /// Each array summed over the ranks, in buckets of about
    /// [`BUCKET_BYTES`]: consecutive arrays of one dtype are flattened,
    /// concatenated, reduced together and cut back into their shapes.
    pub fn all_sum_bucketed(&self, arrays: &[Array]) -> Result<Vec<Array>> {
        if self.group.is_none() {
            return Ok(arrays.to_vec());
        }
        let mut summed = Vec::with_capacity(arrays.len());
        let mut start = 0;
        while start < arrays.len() {
            let dtype = arrays[start].dtype();
            let (mut end, mut bytes) = (start, 0);
            while end < arrays.len() && arrays[end].dtype() == dtype && bytes < BUCKET_BYTES {
                bytes += arrays[end].nbytes();
                end += 1;
            }
            let bucket = &arrays[start..end];
            let flat = bucket
                .iter()
                .map(|a| a.reshape(&[-1]))
                .collect::<Result<Vec<_>, _>>()?;
            let reduced = self.all_sum(&mlx_rs::ops::concatenate(&flat, 0)?)?;
            let mut cuts = Vec::with_capacity(bucket.len());
            let mut offset = 0i32;
            for a in &bucket[..bucket.len() - 1] {
                offset += i32::try_from(a.size())?;
                cuts.push(offset);
            }
            for (part, original) in reduced.split_at_indices(&cuts, 0)?.iter().zip(bucket) {
                summed.push(part.reshape(original.shape())?);
            }
            start = end;
        }
        Ok(summed)
    }

    /// Host numbers summed over the ranks (evaluated now). f32 on the wire:
    /// every backend reduces it; sums of losses and token counts keep ~7
    /// significant digits, well inside what reports print.
    pub fn sum_values(&self, values: &[f64]) -> Result<Vec<f64>> {
        if self.group.is_none() {
            return Ok(values.to_vec());
        }
        let local: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let summed = self
            .all_sum(&Array::from_slice(&local, &[local.len() as i32]))?
            .as_dtype(Dtype::Float32)?;
        summed.eval()?;
        Ok(summed
            .as_slice::<f32>()
            .iter()
            .map(|&v| f64::from(v))
            .collect())
    }

    /// Every rank's `values` (the same count on each), by rank: each puts
    /// its own in its slot of a zero vector, and the sum over the ranks
    /// holds them all (MLX's all_gather needs a backend that has it; every
    /// backend sums). f32 on the wire, as [`Self::sum_values`].
    pub fn gather_values(&self, values: &[f64]) -> Result<Vec<Vec<f64>>> {
        let (rank, size, width) = (self.rank(), self.size(), values.len());
        let mut slots = vec![0.0; size * width];
        slots[rank * width..(rank + 1) * width].copy_from_slice(values);
        let summed = self.sum_values(&slots)?;
        Ok(summed.chunks(width.max(1)).map(<[f64]>::to_vec).collect())
    }

    /// Whether `flag` is set on any rank: every rank takes the same branch
    /// (a stop asked of one rank stops them all at the same step).
    pub fn any(&self, flag: bool) -> Result<bool> {
        if self.group.is_none() {
            return Ok(flag);
        }
        Ok(self.sum_values(&[if flag { 1.0 } else { 0.0 }])?[0] > 0.0)
    }
}
