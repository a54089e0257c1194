//! One-row float32 products go through BLAS's gemv in this binary
//! (engine::blas), and give what the product is: each case is checked
//! against the same product written as a broadcast multiply and a sum,
//! which MLX computes without BLAS.

use engine::blas::routes_one_row_products;
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{addmm, broadcast_to};
use mlx_rs::random::{key, normal};
use mlx_rs::Array;

const K: i32 = 576;
const N: i32 = 1536;

fn random(shape: &[i32], seed: u64) -> Array {
    normal::<f32>(shape, None, None, &key(seed).unwrap()).unwrap()
}

/// `x [1, K] . w [K, N]` without a matmul: `sum_k x[k] w[k, n]`.
fn reference(x: &Array, w: &Array) -> Array {
    let column = x.reshape(&[K, 1]).unwrap();
    let products = broadcast_to(&column, w.shape())
        .unwrap()
        .multiply(w)
        .unwrap();
    products.sum_axis(0, true).unwrap()
}

fn assert_close(name: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    let got = got.as_slice::<f32>();
    let want = want.as_slice::<f32>();
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(0.0f32, f32::max);
    // Sums of 576 products of unit normals (~24 in size): the two orders
    // of summation differ by a few float32 ulps of that.
    assert!(worst < 1e-4, "{name}: off by {worst} (relative)");
}

#[test]
fn one_row_products_reach_gemv_in_this_binary() {
    assert!(
        routes_one_row_products(),
        "libmlx.so's cblas_sgemm is not this binary's: the build script's --export-dynamic-symbol did not apply"
    );
}

#[test]
fn one_row_products_equal_the_sum_of_products() {
    let x = random(&[1, K], 1);
    let w = random(&[K, N], 2);
    let want = reference(&x, &w);

    // B stored K x N (no transpose).
    assert_close("x w", &x.matmul(&w).unwrap(), &want);
    // B stored N x K, as linear layers keep their weights.
    let w_rows = random(&[N, K], 3);
    assert_close(
        "x w^T",
        &x.matmul(w_rows.t()).unwrap(),
        &reference(&x, &w_rows.t()),
    );
    // A stored K x 1 and read as its transpose.
    let x_column = random(&[K, 1], 4);
    assert_close(
        "(x^T)^T w",
        &x_column.t().matmul(&w).unwrap(),
        &reference(&x_column.t(), &w),
    );
    // alpha and beta, onto an existing output.
    let c = random(&[1, N], 5);
    let scaled = addmm(&c, &x, &w, 0.5, 2.0).unwrap();
    let want_scaled = want
        .multiply(Array::from_f32(0.5))
        .unwrap()
        .add(c.multiply(Array::from_f32(2.0)).unwrap())
        .unwrap();
    assert_close("0.5 x w + 2 c", &scaled, &want_scaled);
    // A batch of one-row products (decoding attention's q k^T per head).
    let xs = random(&[3, 1, K], 6);
    let ws = random(&[3, K, N], 7);
    let batched = xs.matmul(&ws).unwrap();
    for i in 0..3 {
        let x_i = xs.index(i);
        let w_i = ws.index(i);
        assert_close(
            &format!("batch row {i}"),
            &batched.index(i),
            &reference(&x_i, &w_i),
        );
    }
    // Two rows still take BLAS's gemm, and agree with the one-row path.
    let two = mlx_rs::ops::concatenate(&[&x, &random(&[1, K], 8)], 0).unwrap();
    assert_close(
        "row 0 of a two-row product",
        &two.matmul(&w).unwrap().index(0..1),
        &want,
    );
}
