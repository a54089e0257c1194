//! `make bench-matmul`: the time of a 1024x1024 f32 matmul on MLX's device.
//! With the wheel's reference BLAS this takes ~0.6 s on a 2-core x86_64;
//! with OpenBLAS (what scripts/setup.sh links in) it should be ~10x less.

use std::time::Instant;

use mlx_rs::{random, transforms::eval};

fn main() {
    const N: i32 = 1024;
    const REPEATS: usize = 10;
    let device = engine::device::current();
    let a = random::normal::<f32>(&[N, N], None, None, None).expect("random a");
    let b = random::normal::<f32>(&[N, N], None, None, None).expect("random b");
    eval([&a, &b]).expect("eval inputs");
    // The first product pays for thread pools and kernel set-up.
    eval([&a.matmul(&b).expect("warm-up")]).expect("eval warm-up");

    let mut times = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let start = Instant::now();
        let c = a.matmul(&b).expect("matmul");
        eval([&c]).expect("eval matmul");
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[REPEATS / 2];
    let gflops = 2.0 * f64::from(N).powi(3) / median / 1e9;
    println!(
        "matmul 1024x1024 f32 on {}: median {:.4} s, best {:.4} s over {REPEATS} runs ({gflops:.1} GFLOP/s)",
        device.description, median, times[0]
    );
}
