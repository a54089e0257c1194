//! f32 values to ggml tensor bytes, with ggml's block layouts (the ones
//! `dequant.rs` reads) and the arithmetic of ggml-quants.c's reference
//! quantizers (`quantize_row_*_ref`), so a file we write holds the bytes
//! llama.cpp's own converter would have written for the same floats.

use half::{bf16, f16};

use super::ggml_type::GgmlType;

/// Types [`quantize`] writes.
pub const QUANTIZABLE: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
];

/// Encodes `values` (storage order, a whole number of blocks) as
/// `ggml_type`. Errors are plain text for the caller to prefix with the
/// file and tensor names.
pub fn quantize(ggml_type: GgmlType, values: &[f32]) -> Result<Vec<u8>, String> {
    let block = ggml_type.block_size() as usize;
    if !values.len().is_multiple_of(block) {
        return Err(format!(
            "{} values are not a whole number of {ggml_type} blocks of {block}",
            values.len()
        ));
    }
    let block_fn: fn(&[f32], &mut Vec<u8>) = match ggml_type {
        GgmlType::F32 => |x, out| out.extend_from_slice(&x[0].to_le_bytes()),
        GgmlType::F16 => |x, out| out.extend_from_slice(&f16::from_f32(x[0]).to_le_bytes()),
        GgmlType::Bf16 => |x, out| out.extend_from_slice(&bf16::from_f32(x[0]).to_le_bytes()),
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        other => {
            let supported: Vec<&str> = QUANTIZABLE.iter().map(|t| t.name()).collect();
            return Err(format!(
                "cannot write ggml type {other} (writable: {})",
                supported.join(", ")
            ));
        }
    };
    let mut out = Vec::with_capacity(values.len() / block * ggml_type.type_size() as usize);
    for x in values.chunks_exact(block) {
        block_fn(x, &mut out);
    }
    Ok(out)
}

/// block_q8_0: d = max|x| / 127, q = round(x / d) (half away from zero,
/// C's roundf).
fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// block_q4_0: the element of largest magnitude, with its sign, maps to -8:
/// d = max / -8, q = min(15, trunc(x / d + 8.5)); elements 0..16 in the low
/// nibbles, 16..32 in the high ones.
fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    for j in 0..16 {
        out.push(q(x[j]) | (q(x[j + 16]) << 4));
    }
}

/// block_q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min)
/// / d + 0.5)).
fn q4_1(x: &[f32], out: &mut Vec<u8>) {
    let min = x.iter().copied().fold(f32::MAX, f32::min);
    let max = x.iter().copied().fold(-f32::MAX, f32::max);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
    let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    for j in 0..16 {
        out.push(q(x[j]) | (q(x[j + 16]) << 4));
    }
}
