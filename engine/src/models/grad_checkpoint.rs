//! Gradient checkpointing through MLX's `checkpoint` transform, which mlx-rs
//! does not wrap. A function run under it leaves only its inputs in the
//! graph for the backward pass, which runs the function again to rebuild
//! its intermediates. Training with `grad_checkpoint` (mlx-lm's option) runs
//! each decoder layer so: activation memory stops growing with the number
//! of layers, for about one more forward pass of compute.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Result};
use mlx_rs::Array;

type Function = Box<dyn FnMut(&[Array]) -> Result<Vec<Array>>>;

thread_local! {
    /// Why the last call of a checkpointed function failed: MLX only learns
    /// that it did. MLX calls it on the thread that builds the graph.
    static FAILURE: RefCell<Option<anyhow::Error>> = const { RefCell::new(None) };
}

/// `function(inputs)`, with the intermediates it computes recomputed in the
/// backward pass instead of kept. Gradients flow to every input, so what
/// should be differentiated (the adapter parameters) must be an input, not
/// captured. `function` is `'static`: MLX keeps it for the backward pass.
pub(crate) fn checkpointed(
    inputs: &[Array],
    function: impl FnMut(&[Array]) -> Result<Vec<Array>> + 'static,
) -> Result<Vec<Array>> {
    let payload = Box::into_raw(Box::new(Box::new(function) as Function)).cast::<c_void>();
    // SAFETY: every handle made here is freed exactly once below. The
    // payload belongs to the closure from here on: MLX frees it through
    // `drop_function` when its last copy (kept by the graph) goes.
    unsafe {
        let plain = mlx_sys::mlx_closure_new_func_payload(
            Some(call_function),
            payload,
            Some(drop_function),
        );
        let mut wrapped = mlx_sys::mlx_closure_new();
        let status = mlx_sys::mlx_checkpoint(&mut wrapped, plain);
        mlx_sys::mlx_closure_free(plain);
        if status != 0 {
            mlx_sys::mlx_closure_free(wrapped);
            return Err(anyhow!("MLX could not checkpoint a layer"));
        }
        let pointers: Vec<mlx_sys::mlx_array> = inputs.iter().map(Array::as_ptr).collect();
        let arguments = mlx_sys::mlx_vector_array_new_data(pointers.as_ptr(), pointers.len());
        let mut results = mlx_sys::mlx_vector_array_new();
        let status = mlx_sys::mlx_closure_apply(&mut results, wrapped, arguments);
        let outcome = if status == 0 {
            Ok(arrays_of(results))
        } else {
            Err(FAILURE
                .take()
                .unwrap_or_else(|| anyhow!("a checkpointed layer failed in MLX")))
        };
        mlx_sys::mlx_vector_array_free(arguments);
        mlx_sys::mlx_vector_array_free(results);
        mlx_sys::mlx_closure_free(wrapped);
        outcome
    }
}

/// Copies of the arrays in an MLX vector (each shares its data).
///
/// # Safety
/// `vector` must be a live vector handle.
unsafe fn arrays_of(vector: mlx_sys::mlx_vector_array) -> Vec<Array> {
    // SAFETY: the caller vouches for `vector`; each array handle made here
    // is owned by the `Array` that wraps it.
    unsafe {
        (0..mlx_sys::mlx_vector_array_size(vector))
            .map(|index| {
                let mut array = mlx_sys::mlx_array_new();
                mlx_sys::mlx_vector_array_get(&mut array, vector, index);
                Array::from_ptr(array)
            })
            .collect()
    }
}

/// MLX's entry into a checkpointed function: the forward pass, and again
/// the backward pass.
unsafe extern "C" fn call_function(
    results: *mut mlx_sys::mlx_vector_array,
    arguments: mlx_sys::mlx_vector_array,
    payload: *mut c_void,
) -> c_int {
    // SAFETY: `payload` is the `Function` boxed by `checkpointed`, alive
    // until `drop_function`; MLX passes live vector handles.
    let function = unsafe { &mut *payload.cast::<Function>() };
    let arguments = unsafe { arrays_of(arguments) };
    let outcome = catch_unwind(AssertUnwindSafe(|| function(&arguments)))
        .unwrap_or_else(|_| Err(anyhow!("a checkpointed layer panicked")));
    match outcome {
        Ok(outputs) => {
            let pointers: Vec<mlx_sys::mlx_array> = outputs.iter().map(Array::as_ptr).collect();
            // SAFETY: the vector copies the arrays (sharing their data)
            // before `outputs` drops its handles.
            unsafe {
                mlx_sys::mlx_vector_array_set_data(results, pointers.as_ptr(), pointers.len())
            }
        }
        Err(error) => {
            FAILURE.set(Some(error));
            1
        }
    }
}

unsafe extern "C" fn drop_function(payload: *mut c_void) {
    // SAFETY: MLX calls this once, when the last copy of the closure goes.
    drop(unsafe { Box::from_raw(payload.cast::<Function>()) });
}
