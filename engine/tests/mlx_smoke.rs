//! Real MLX computations through mlx-rs: an op and a gradient, checked by value.

use mlx_rs::{array, transforms::value_and_grad, Array};

#[test]
fn matmul_computes_expected_values() {
    let a = array!([[1.0f32, 2.0], [3.0, 4.0]]);
    let b = array!([[5.0f32, 6.0], [7.0, 8.0]]);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.as_slice::<f32>(), &[19.0, 22.0, 43.0, 50.0]);
}

#[test]
fn value_and_grad_of_sum_of_squares() {
    // f(x) = sum(x^2) + 3 * sum(x) ; df/dx = 2x + 3
    let f = |inputs: &[Array]| -> Vec<Array> {
        let x = &inputs[0];
        let y = x.square().unwrap().sum(None).unwrap() + x.sum(None).unwrap() * 3.0;
        vec![y]
    };
    let x = array!([1.0f32, -2.0, 0.5]);
    let mut vg = value_and_grad(f);
    let (value, grads) = vg(&[x]).unwrap();
    let value = value[0].try_item_exact::<f32>().unwrap();
    assert!(
        (value - (1.0 + 4.0 + 0.25 + 3.0 * -0.5)).abs() < 1e-6,
        "value {value}"
    );
    assert_eq!(grads[0].as_slice::<f32>(), &[5.0, -1.0, 4.0]);
}

#[test]
fn device_is_reported_with_its_memory() {
    let info = engine::device::current();
    assert_eq!(info.kind == "gpu", engine::device::is_gpu(), "{info:?}");
    let memory = info.memory.expect("the device's memory is known");
    assert!(memory > 64 << 20, "{memory} bytes available");
}
