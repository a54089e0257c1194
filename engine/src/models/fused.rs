//! Softmax, log-sum-exp and causal attention written as plain elementwise
//! ops and reductions, for the training step.
//!
//! MLX's `Softmax` and `LogSumExp` primitives (and the CPU fallback of its
//! fused attention, which calls `Softmax`) run an exp compiled into libmlx
//! for baseline x86-64: scalar, with a call into libm for every fma, about
//! 14 ns per element. A LoRA step on SmolLM2 takes ~250 million of them
//! (attention scores, the 49k-wide logits, forward and backward). Written
//! out, the exps fall inside the compiled step's fused elementwise kernels,
//! which MLX builds at run time against `patches/mlx-jit-preamble.h`: AVX2,
//! a vectorized exp, memory-bound. Outside a compiled step these forms cost
//! an extra pass or two, so generation keeps the primitives. So does the
//! GPU, whose own kernels are fused already (and whose attention kernel
//! never holds the whole score matrix): see [`written_out`].

use std::sync::OnceLock;

use anyhow::Result;
use mlx_rs::{stop_gradient, Array, Device, DeviceType};

/// Whether the training step uses these forms: on the CPU only.
pub(crate) fn written_out() -> bool {
    static CPU: OnceLock<bool> = OnceLock::new();
    *CPU.get_or_init(|| !matches!(Device::default().get_type(), Ok(DeviceType::Gpu)))
}

/// Row maximum over the last axis, kept for broadcasting. A constant for
/// the gradient: softmax and log-sum-exp do not depend on the shift.
fn shift(x: &Array) -> Result<Array> {
    Ok(stop_gradient(x.max_axis(-1, true)?)?)
}

/// `log(sum(exp(x)))` over the last axis (which is dropped).
pub(crate) fn logsumexp_last(x: &Array) -> Result<Array> {
    if !written_out() {
        return Ok(x.logsumexp_axis(-1, false)?);
    }
    let m = shift(x)?;
    let sum = x.subtract(&m)?.exp()?.sum_axis(-1, true)?;
    Ok(sum.log()?.add(&m)?.squeeze_axes(&[-1])?)
}

/// Softmax over the last axis.
pub(crate) fn softmax_last(x: &Array) -> Result<Array> {
    let e = x.subtract(shift(x)?)?.exp()?;
    let sum = e.sum_axis(-1, true)?;
    Ok(e.divide(&sum)?)
}

/// Causal self-attention over a whole sequence: `q` is
/// `[batch, heads, length, head_dim]`, `k` and `v` are
/// `[batch, kv_heads, length, head_dim]` (grouped-query: each kv head serves
/// `heads / kv_heads` query heads, which share one matmul instead of copies
/// of the keys). Returns `[batch, heads, length, head_dim]`.
pub(crate) fn causal_attention(q: &Array, k: &Array, v: &Array, scale: f32) -> Result<Array> {
    let (b, heads, l, d) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    let kv_heads = k.dim(1);
    let group = heads / kv_heads;
    // [b, kv, group * l, d]: the group's queries stacked along the rows.
    let q = q
        .multiply(Array::from_f32(scale))?
        .reshape(&[b, kv_heads, group * l, d])?;
    let scores = q
        .matmul(k.swap_axes(-1, -2)?)?
        .reshape(&[b, kv_heads, group, l, l])?;
    let probs = softmax_last(&scores.add(causal_mask(l))?)?;
    let out = probs
        .reshape(&[b, kv_heads, group * l, l])?
        .matmul(v)?
        .reshape(&[b, heads, l, d])?;
    Ok(out)
}

/// `[length, length]`: 0 where a query may see a key (at or before it),
/// -inf after it.
fn causal_mask(length: i32) -> Array {
    let n = length as usize;
    let mask: Vec<f32> = (0..n * n)
        .map(|i| {
            if i % n <= i / n {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    Array::from_slice(&mask, &[length, length])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::{
        fast::{self, ScaledDotProductAttentionMask},
        ops::indexing::IndexOp,
        random,
    };

    fn max_abs_diff(a: &Array, b: &Array) -> f32 {
        a.subtract(b)
            .unwrap()
            .abs()
            .unwrap()
            .max(false)
            .unwrap()
            .try_item_exact::<f32>()
            .unwrap()
    }

    #[test]
    fn logsumexp_and_softmax_match_mlx_primitives() {
        let key = random::key(7).unwrap();
        let x = random::normal::<f32>(&[3, 5, 300], None, None, &key)
            .unwrap()
            .multiply(Array::from_f32(20.0))
            .unwrap();
        let ours = logsumexp_last(&x).unwrap();
        let theirs = x.logsumexp_axis(-1, false).unwrap();
        assert_eq!(ours.shape(), theirs.shape());
        assert!(max_abs_diff(&ours, &theirs) < 1e-4);
        let ours = softmax_last(&x).unwrap();
        let theirs = mlx_rs::ops::softmax_axis(&x, -1, None).unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-6);
    }

    #[test]
    fn causal_attention_matches_mlx_with_grouped_heads() {
        let key = random::key(3).unwrap();
        let (b, heads, kv_heads, l, d) = (2, 6, 2, 9, 8);
        let keys = random::split(&key, 3).unwrap();
        let q = random::normal::<f32>(&[b, heads, l, d], None, None, &keys.0).unwrap();
        let kv_key = random::split(&keys.1, 2).unwrap();
        let k = random::normal::<f32>(&[b, kv_heads, l, d], None, None, &kv_key.0).unwrap();
        let v = random::normal::<f32>(&[b, kv_heads, l, d], None, None, &kv_key.1).unwrap();
        let scale = (d as f32).powf(-0.5);
        let ours = causal_attention(&q, &k, &v, scale).unwrap();
        let theirs = fast::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            scale,
            ScaledDotProductAttentionMask::Causal,
            None,
        )
        .unwrap();
        assert_eq!(ours.shape(), &[b, heads, l, d]);
        assert!(max_abs_diff(&ours, &theirs) < 1e-5);
        // The first query sees only the first key: its output is v[0].
        let first = ours.index((.., .., 0, ..));
        let expected = Array::repeat_axis::<f32>(v.index((.., .., 0, ..)), 3, 1).unwrap();
        assert!(max_abs_diff(&first, &expected) < 1e-6);
    }
}
