//! One-row float32 products through BLAS's matrix-vector routine (Linux).
//!
//! MLX's CPU backend hands every float32 matmul to `cblas_sgemm`, the
//! one-row products of decoding included: at each generated token every
//! linear layer and the head compute `[1, K] x [K, N]`. OpenBLAS's gemm
//! copies ("packs") the whole weight into a buffer before multiplying, so
//! a one-row product reads the weight, writes a copy and reads that again.
//! Measured on this project's 2-core x86 machine, Debian's OpenBLAS 0.3.21:
//!
//! | `N x K` (SmolLM2-135M) | sgemm, M = 1 | sgemv |
//! |---|---:|---:|
//! | 1536 x 576 (gate, up) | 0.167 ms | 0.028 ms |
//! | 576 x 1536 (down) | 0.114 ms | 0.025 ms |
//! | 49152 x 576 (head) | 9.49 ms | 3.32 ms |
//!
//! and a profile of single-stream decoding spent 39% of its time in
//! `sgemm_incopy` (the packing). So the binary defines `cblas_sgemm` itself:
//! the build scripts export the symbol (`--export-dynamic-symbol`), and the
//! dynamic linker binds libmlx.so's calls to the executable's definition
//! ahead of the BLAS library's. One-row products go to `cblas_sgemv`;
//! every other call goes unchanged to the BLAS library's own `cblas_sgemm`.
//! The Python peer (mlx-lm) loads the same libmlx.so without this.

/// Whether libmlx.so's float32 matmuls reach [`cblas_sgemm`] here (the
/// symbol is exported from this executable), so one-row products run as
/// matrix-vector products.
pub fn routes_one_row_products() -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::bound_to_this_binary()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{c_int, c_void, CStr};
    use std::sync::OnceLock;

    const ROW_MAJOR: c_int = 101;
    const NO_TRANS: c_int = 111;
    const TRANS: c_int = 112;

    type Sgemm = unsafe extern "C" fn(
        c_int,
        c_int,
        c_int,
        c_int,
        c_int,
        c_int,
        f32,
        *const f32,
        c_int,
        *const f32,
        c_int,
        f32,
        *mut f32,
        c_int,
    );
    type Sgemv = unsafe extern "C" fn(
        c_int,
        c_int,
        c_int,
        c_int,
        f32,
        *const f32,
        c_int,
        *const f32,
        c_int,
        f32,
        *mut f32,
        c_int,
    );

    struct Blas {
        sgemm: Sgemm,
        sgemv: Sgemv,
    }

    /// The BLAS library's own routines: `sgemm` is the next definition
    /// after ours in the lookup order, `sgemv` the only one.
    fn blas() -> &'static Blas {
        static BLAS: OnceLock<Blas> = OnceLock::new();
        BLAS.get_or_init(|| {
            let find = |handle: *mut c_void, name: &CStr| {
                // SAFETY: dlsym with a valid pseudo-handle and a
                // NUL-terminated name.
                let symbol = unsafe { libc::dlsym(handle, name.as_ptr()) };
                assert!(
                    !symbol.is_null(),
                    "{name:?} is not in the BLAS library libmlx.so loads"
                );
                symbol
            };
            let sgemm = find(libc::RTLD_NEXT, c"cblas_sgemm");
            let sgemv = find(libc::RTLD_DEFAULT, c"cblas_sgemv");
            // SAFETY: both symbols are the CBLAS routines of these
            // signatures (cblas.h).
            unsafe {
                Blas {
                    sgemm: std::mem::transmute::<*mut c_void, Sgemm>(sgemm),
                    sgemv: std::mem::transmute::<*mut c_void, Sgemv>(sgemv),
                }
            }
        })
    }

    pub(super) fn bound_to_this_binary() -> bool {
        // SAFETY: dlsym with a valid pseudo-handle and a NUL-terminated name.
        let first = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"cblas_sgemm".as_ptr()) };
        first as usize == cblas_sgemm as Sgemm as usize
    }

    /// CBLAS's `cblas_sgemm`: `C = alpha op(A) op(B) + beta C`, with
    /// `op(A)` `M x K` and `op(B)` `K x N`.
    ///
    /// # Safety
    /// The CBLAS contract: the pointers and leading dimensions describe
    /// matrices of the given sizes.
    #[no_mangle]
    #[allow(clippy::too_many_arguments)]
    pub unsafe extern "C" fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    ) {
        let blas = blas();
        // Conjugate-transpose flags (meaningless for reals, unused by MLX)
        // go to sgemm as they came.
        let plain = |flag: c_int| flag == NO_TRANS || flag == TRANS;
        let one_row =
            order == ROW_MAJOR && m == 1 && n > 0 && k > 0 && plain(trans_a) && plain(trans_b);
        if !one_row {
            // SAFETY: the caller's arguments, passed on as they came.
            unsafe {
                (blas.sgemm)(
                    order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                )
            };
            return;
        }
        // The row of op(A): A's first row, or A's first column when A is
        // stored transposed (`K x M`, a stride of `lda`).
        let row_stride = if trans_a == NO_TRANS { 1 } else { lda };
        if beta == 0.0 {
            // BLAS leaves an output it must not read to the routine; MLX's
            // is uninitialised memory, so it is cleared before gemv scales it.
            // SAFETY: C's first row holds `n` floats.
            unsafe { std::ptr::write_bytes(c, 0, n as usize) };
        }
        // C's row = op(B)^T x: with B stored `N x K` (op(B) = B^T) that is
        // B x; with B stored `K x N` it is B^T x.
        let (trans, rows, columns) = if trans_b == TRANS {
            (NO_TRANS, n, k)
        } else {
            (TRANS, k, n)
        };
        // SAFETY: B is `rows x columns` with leading dimension `ldb`, the
        // row of op(A) has `k` floats `row_stride` apart, C's row `n`.
        unsafe {
            (blas.sgemv)(
                ROW_MAJOR, trans, rows, columns, alpha, b, ldb, a, row_stride, beta, c, 1,
            )
        };
    }
}
