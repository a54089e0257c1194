//! GGUF tensors as MLX arrays. Plain float types keep their dtype. Q4_0,
//! Q4_1 and Q8_0 become MLX affine-quantized triples without loss: a ggml
//! block of 32 is exactly an MLX group of 32 whose value is `q * scale +
//! bias`. Every other supported type is dequantized to f32 on the CPU.
//!
//! Scales and biases are kept in f32: ggml's f16 `d` and `m`, and the
//! derived biases `-8d` and `-128d`, are exact in f32, and an f32 scale makes
//! MLX dequantize in f32, giving bit for bit what ggml's reference
//! dequantizer gives (f16 scales would round `q * d + m` to f16).

use mlx_rs::Array;

use super::dequant::{dequantize, f16_at};
use super::ggml_type::GgmlType;
use super::reader::TensorInfo;
use crate::model_config::Quantization;

/// ggml's block size for the legacy quants, and MLX's group size for them.
pub const GROUP_SIZE: usize = 32;

/// The MLX quantization a tensor of this type converts to; None for types
/// that arrive dense.
pub fn mlx_quantization(ggml_type: GgmlType) -> Option<Quantization> {
    let bits = match ggml_type {
        GgmlType::Q4_0 | GgmlType::Q4_1 => 4,
        GgmlType::Q8_0 => 8,
        _ => return None,
    };
    Some(Quantization {
        group_size: GROUP_SIZE,
        bits,
    })
}

/// One GGUF tensor in MLX form.
#[derive(Debug, Clone)]
pub enum MlxTensor {
    Dense(Array),
    /// MLX affine quantization: `weight` packs `32 / bits` values per u32
    /// along the last axis (first value in the lowest bits); `scales` and
    /// `biases` hold one f32 per group of `group_size` values.
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        bits: u8,
        group_size: usize,
    },
}

/// Converts a tensor's raw bytes (in GGUF storage order) to MLX. Errors are
/// plain text for the caller to prefix with the file and tensor names.
pub fn tensor_to_mlx(info: &TensorInfo, bytes: &[u8]) -> Result<MlxTensor, String> {
    if bytes.len() as u64 != info.n_bytes() {
        return Err(format!(
            "has {} bytes, its shape {:?} of {} needs {}",
            bytes.len(),
            info.dims,
            info.ggml_type,
            info.n_bytes()
        ));
    }
    let shape: Vec<i32> = info
        .shape()
        .iter()
        .map(|&d| i32::try_from(d).map_err(|_| format!("dimension {d} is too large for MLX")))
        .collect::<Result<_, _>>()?;
    Ok(match info.ggml_type {
        GgmlType::F32 => {
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            MlxTensor::Dense(Array::from_slice(&values, &shape))
        }
        GgmlType::F16 => {
            let values: Vec<half::f16> = bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
                .collect();
            MlxTensor::Dense(Array::from_slice(&values, &shape))
        }
        GgmlType::Bf16 => {
            let values: Vec<half::bf16> = bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]))
                .collect();
            MlxTensor::Dense(Array::from_slice(&values, &shape))
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => affine(info.ggml_type, bytes, &shape),
        other => {
            let values = dequantize(other, bytes)?;
            MlxTensor::Dense(Array::from_slice(&values, &shape))
        }
    })
}

/// Repacks Q4_0 / Q4_1 / Q8_0 blocks as MLX affine groups of 32.
fn affine(ggml_type: GgmlType, bytes: &[u8], shape: &[i32]) -> MlxTensor {
    let block_bytes = ggml_type.type_size() as usize;
    let n_blocks = bytes.len() / block_bytes;
    let bits: u8 = if ggml_type == GgmlType::Q8_0 { 8 } else { 4 };
    let words_per_block = GROUP_SIZE * bits as usize / 32;
    let mut words = Vec::with_capacity(n_blocks * words_per_block);
    let mut scales = Vec::with_capacity(n_blocks);
    let mut biases = Vec::with_capacity(n_blocks);
    for block in bytes.chunks_exact(block_bytes) {
        let d = f16_at(block, 0);
        match ggml_type {
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let (bias, qs) = if ggml_type == GgmlType::Q4_0 {
                    // (q - 8) * d == q * d + (-8d)
                    (-8.0 * d, &block[2..18])
                } else {
                    (f16_at(block, 2), &block[4..20])
                };
                // ggml keeps elements 0..16 in the low nibbles and 16..32 in
                // the high nibbles; MLX wants them in order, eight per word.
                let nibble = |j: usize| -> u32 {
                    if j < 16 {
                        (qs[j] & 0x0F) as u32
                    } else {
                        (qs[j - 16] >> 4) as u32
                    }
                };
                for w in 0..4 {
                    let mut word = 0u32;
                    for k in 0..8 {
                        word |= nibble(8 * w + k) << (4 * k);
                    }
                    words.push(word);
                }
                scales.push(d);
                biases.push(bias);
            }
            _ => {
                // Signed q becomes unsigned q + 128; (q + 128) * d - 128d == q * d.
                for w in 0..8 {
                    let b = &block[2 + 4 * w..6 + 4 * w];
                    words.push(u32::from_le_bytes([
                        b[0] ^ 0x80,
                        b[1] ^ 0x80,
                        b[2] ^ 0x80,
                        b[3] ^ 0x80,
                    ]));
                }
                scales.push(d);
                biases.push(-128.0 * d);
            }
        }
    }
    let last = *shape.last().expect("tensors have at least one dimension");
    let mut packed_shape = shape.to_vec();
    *packed_shape.last_mut().expect("non-empty") = last * bits as i32 / 32;
    let mut group_shape = shape.to_vec();
    *group_shape.last_mut().expect("non-empty") = last / GROUP_SIZE as i32;
    MlxTensor::Quantized {
        weight: Array::from_slice(&words, &packed_shape),
        scales: Array::from_slice(&scales, &group_shape),
        biases: Array::from_slice(&biases, &group_shape),
        bits,
        group_size: GROUP_SIZE,
    }
}
