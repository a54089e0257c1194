//! Scalar dequantization of ggml blocks to f32, following the block layouts
//! of ggml-common.h and the reference loops of ggml-quants.c. This is the
//! path for the K-quants (MLX has no kernels for them) and the reference the
//! MLX affine conversion of Q4_0/Q4_1/Q8_0 is checked against.

use half::{bf16, f16};

use super::ggml_type::GgmlType;

/// Super-block size of the K-quants.
const QK_K: usize = 256;

/// Types [`dequantize`] accepts.
pub const DEQUANTIZABLE: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::F64,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8K,
];

/// Dequantizes a whole tensor's bytes to f32 values in storage order. The
/// caller has checked that `data` holds whole blocks (the reader does).
pub fn dequantize(ggml_type: GgmlType, data: &[u8]) -> Result<Vec<f32>, String> {
    let block_bytes = ggml_type.type_size() as usize;
    if !data.len().is_multiple_of(block_bytes) {
        return Err(format!(
            "{} bytes is not a whole number of {ggml_type} blocks of {block_bytes} bytes",
            data.len()
        ));
    }
    let block_fn: fn(&[u8], &mut [f32]) = match ggml_type {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = f16_at(b, 0),
        GgmlType::Bf16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::F64 => {
            |b, y| y[0] = f64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as f32
        }
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2K => q2_k,
        GgmlType::Q3K => q3_k,
        GgmlType::Q4K => q4_k,
        GgmlType::Q5K => q5_k,
        GgmlType::Q6K => q6_k,
        GgmlType::Q8K => q8_k,
        other => {
            let supported: Vec<&str> = DEQUANTIZABLE.iter().map(|t| t.name()).collect();
            return Err(format!(
                "ggml type {other} is not supported (supported: {})",
                supported.join(", ")
            ));
        }
    };
    let block_size = ggml_type.block_size() as usize;
    let n_blocks = data.len() / block_bytes;
    let mut out = vec![0f32; n_blocks * block_size];
    for (block, y) in data
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block_size))
    {
        block_fn(block, y);
    }
    Ok(out)
}

pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// block_q4_0: f16 d, 16 bytes of nibbles; low nibbles are elements 0..16,
/// high nibbles 16..32; value = (q - 8) * d.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// block_q4_1: f16 d, f16 m, 16 bytes of nibbles; value = q * d + m.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// block_q5_0: f16 d, 32 high bits (bit j for element j), 16 bytes of low
/// nibbles; value = (q - 16) * d.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = (((qs[j] & 0x0F) | (h0 << 4)) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) | (h1 << 4)) as i32 - 16) as f32 * d;
    }
}

/// block_q5_1: f16 d, f16 m, 32 high bits, 16 bytes of low nibbles;
/// value = q * d + m.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = ((qs[j] & 0x0F) | (h0 << 4)) as f32 * d + m;
        y[j + 16] = ((qs[j] >> 4) | (h1 << 4)) as f32 * d + m;
    }
}

/// block_q8_0: f16 d, 32 signed bytes; value = q * d.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = b[2 + j] as i8 as f32 * d;
    }
}

/// 6-bit scale and min number `j` (0..8) of the 12 packed bytes of Q4_K and
/// Q5_K: entries 0..4 sit in the low 6 bits of bytes 0..4 (scales) and 4..8
/// (mins); entries 4..8 take their low 4 bits from bytes 8..12 and their top
/// 2 bits from the spare top bits of bytes 0..8.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// block_q2_K: 16 bytes of 4-bit scale/min pairs, 64 bytes of 2-bit quants,
/// f16 d, f16 dmin. Sixteen sub-blocks of 16.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    let mut out = 0;
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in (0..8).step_by(2) {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0x0F) as f32;
                let ml = dmin * (sc >> 4) as f32;
                for l in 0..16 {
                    y[out] = dl * ((q[part * 16 + l] >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// block_q3_K: 32 bytes of high-bit masks, 64 bytes of 2-bit quants, 12
/// bytes of sixteen packed 6-bit scales, f16 d. A cleared mask bit subtracts 4.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let packed = &b[96..108];
    let d = f16_at(b, 108);
    // Low 4 bits: scales 0..8 from the low nibbles of bytes 0..8, scales
    // 8..16 from their high nibbles. Top 2 bits: byte 8 + i % 4, bit pair i / 4.
    let mut scales = [0i32; 16];
    for (i, scale) in scales.iter_mut().enumerate() {
        let low = if i < 8 {
            packed[i] & 0x0F
        } else {
            packed[i - 8] >> 4
        };
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *scale = (low | (high << 4)) as i32 - 32;
    }
    let mut out = 0;
    let mut is = 0;
    let mut m = 1u8;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in (0..8).step_by(2) {
            for part in 0..2 {
                let dl = d * scales[is] as f32;
                is += 1;
                for l in 0..16 {
                    let k = part * 16 + l;
                    let low = ((q[k] >> shift) & 3) as i32;
                    let high = if hmask[k] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - high) as f32;
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// block_q4_K: f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins,
/// 128 bytes of nibbles. Each 32 bytes of nibbles hold two sub-blocks of 32:
/// low nibbles first, then high nibbles.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let y = &mut y[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0F) as f32 - min1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - min2;
        }
    }
}

/// block_q5_K: like Q4_K plus 32 bytes of fifth bits: bit 2c of qh[l] is
/// the high bit of element l of sub-block 2c, bit 2c+1 that of sub-block 2c+1.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let (u1, u2) = (1u8 << (2 * chunk), 1u8 << (2 * chunk + 1));
        let y = &mut y[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((q[l] & 0x0F) + h1) as f32 - min1;
            y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - min2;
        }
    }
}

/// block_q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16
/// signed 8-bit scales (one per 16 elements), f16 d; value = d * scale * (q - 32).
fn q6_k(b: &[u8], y: &mut [f32]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &ql_all[half * 64..half * 64 + 64];
        let qh = &qh_all[half * 32..half * 32 + 32];
        let sc = &sc_all[half * 8..half * 8 + 8];
        let y = &mut y[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// block_q8_K: f32 d, 256 signed bytes, 16 i16 block sums (unused here).
fn q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (j, value) in y.iter_mut().enumerate().take(QK_K) {
        *value = b[4 + j] as i8 as f32 * d;
    }
}
