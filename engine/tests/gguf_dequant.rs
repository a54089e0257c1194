//! ggml blocks to numbers: every supported type against gguf-py's reference
//! dequantizer (fixture), hand-packed blocks of known values for the main
//! types, and the lossless MLX affine form of Q4_0 / Q4_1 / Q8_0.

mod gguf_common;

use engine::gguf::dequant::dequantize;
use engine::gguf::{tensor_to_mlx, GgmlType, GgufFile, MlxTensor};
use gguf_common::{f16_bytes, fixture_path, GgufWriter};
use mlx_rs::Dtype;

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

const FIXTURE_TYPES: &[&str] = &[
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "BF16",
];

/// quant_blocks.gguf holds random blocks of each type and gguf-py's
/// dequantization of them (scripts/reference/gguf_quant_fixture.py).
#[test]
fn every_type_matches_gguf_py_reference() {
    let file = GgufFile::open(fixture_path("quant_blocks.gguf")).unwrap();
    for name in FIXTURE_TYPES {
        let info = file.tensor(name).unwrap();
        let got = dequantize(info.ggml_type, &file.tensor_data(info).unwrap()).unwrap();
        let expected_info = file.tensor(&format!("{name}.expected")).unwrap();
        let expected = f32s(&file.tensor_data(expected_info).unwrap());
        assert_eq!(got.len(), expected.len(), "{name}");
        // Same f32 operations in the same order: equal bit for bit.
        let differing = got.iter().zip(&expected).filter(|(g, e)| g != e).count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} values differ from gguf-py"
        );
        assert!(
            expected.iter().any(|&v| v != 0.0),
            "{name}: fixture is not all zeros"
        );
    }
}

#[test]
fn plain_types_keep_values() {
    let file = GgufFile::open(fixture_path("quant_blocks.gguf")).unwrap();
    let f32_values = f32s(&file.tensor_data(file.tensor("F32").unwrap()).unwrap());
    let f16 = file.tensor("F16").unwrap();
    let got = dequantize(GgmlType::F16, &file.tensor_data(f16).unwrap()).unwrap();
    for (g, v) in got.iter().zip(&f32_values) {
        assert_eq!(*g, half::f16::from_f32(*v).to_f32());
    }
    // MLX keeps the stored dtype for plain floats.
    for (name, dtype) in [
        ("F32", Dtype::Float32),
        ("F16", Dtype::Float16),
        ("BF16", Dtype::Bfloat16),
    ] {
        let info = file.tensor(name).unwrap();
        let MlxTensor::Dense(array) =
            tensor_to_mlx(info, &file.tensor_data(info).unwrap()).unwrap()
        else {
            panic!("{name} should stay dense");
        };
        assert_eq!(array.dtype(), dtype, "{name}");
        assert_eq!(array.shape(), [3, 40]);
        let as_f32 = array.as_dtype(Dtype::Float32).unwrap();
        let expected = dequantize(info.ggml_type, &file.tensor_data(info).unwrap()).unwrap();
        assert_eq!(as_f32.as_slice::<f32>(), expected.as_slice(), "{name}");
    }
}

// ---- hand-packed blocks with known values ----

fn q4_0_block(d: f32, q: &[u8; 32]) -> Vec<u8> {
    let mut b = f16_bytes(d).to_vec();
    b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
    b
}

fn q4_1_block(d: f32, m: f32, q: &[u8; 32]) -> Vec<u8> {
    let mut b = f16_bytes(d).to_vec();
    b.extend(f16_bytes(m));
    b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
    b
}

fn q8_0_block(d: f32, q: &[i8; 32]) -> Vec<u8> {
    let mut b = f16_bytes(d).to_vec();
    b.extend(q.iter().map(|&v| v as u8));
    b
}

fn q5_0_block(d: f32, q: &[u8; 32]) -> Vec<u8> {
    let mut b = f16_bytes(d).to_vec();
    let qh: u32 = (0..32).map(|j| ((q[j] >> 4) as u32) << j).sum();
    b.extend(qh.to_le_bytes());
    b.extend((0..16).map(|j| (q[j] & 15) | ((q[j + 16] & 15) << 4)));
    b
}

fn q4_k_block(d: f32, dmin: f32, sc: &[u8; 8], m: &[u8; 8], q: &[u8; 256]) -> Vec<u8> {
    let mut b = f16_bytes(d).to_vec();
    b.extend(f16_bytes(dmin));
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        packed[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        packed[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
    }
    b.extend(packed);
    for c in 0..4 {
        b.extend((0..32).map(|l| q[64 * c + l] | (q[64 * c + 32 + l] << 4)));
    }
    b
}

fn q6_k_block(d: f32, sc: &[i8; 16], q: &[u8; 256]) -> Vec<u8> {
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for h in 0..2 {
        for l in 0..32 {
            let e = |k: usize| q[128 * h + l + 32 * k];
            ql[64 * h + l] = (e(0) & 15) | ((e(2) & 15) << 4);
            ql[64 * h + l + 32] = (e(1) & 15) | ((e(3) & 15) << 4);
            qh[32 * h + l] =
                (e(0) >> 4) | ((e(1) >> 4) << 2) | ((e(2) >> 4) << 4) | ((e(3) >> 4) << 6);
        }
    }
    let mut b = ql.to_vec();
    b.extend(qh);
    b.extend(sc.iter().map(|&s| s as u8));
    b.extend(f16_bytes(d));
    b
}

/// A deterministic spread of quant values in 0..modulus.
fn pattern<const N: usize>(modulus: u32, seed: u32) -> [u8; N] {
    std::array::from_fn(|i| {
        ((i as u32 * 7 + seed * 13 + (i as u32 * i as u32) % 5) % modulus) as u8
    })
}

#[test]
fn hand_packed_blocks_give_known_values() {
    let dir = tempfile::tempdir().unwrap();
    let q4a: [u8; 32] = pattern(16, 1);
    let q4b: [u8; 32] = pattern(16, 2);
    let q5: [u8; 32] = pattern(32, 3);
    let q8: [i8; 32] = std::array::from_fn(|i| (i as i32 * 9 - 128).clamp(-128, 127) as i8);
    let q4k: [u8; 256] = pattern(16, 4);
    let q6k: [u8; 256] = pattern(64, 5);
    let sc_k: [u8; 8] = [1, 63, 17, 32, 5, 48, 60, 33];
    let m_k: [u8; 8] = [0, 2, 63, 31, 16, 47, 9, 62];
    let sc6: [i8; 16] = [
        1, -1, 127, -128, 5, -7, 33, 64, -64, 2, 3, -3, 100, -100, 11, 0,
    ];

    let mut w = GgufWriter::default();
    w.tensor(
        "q4_0",
        &[64],
        2,
        [q4_0_block(0.5, &q4a), q4_0_block(-0.25, &q4b)].concat(),
    )
    .tensor("q4_1", &[32], 3, q4_1_block(0.125, -1.5, &q4a))
    .tensor("q8_0", &[32], 8, q8_0_block(0.0625, &q8))
    .tensor("q5_0", &[32], 6, q5_0_block(2.0, &q5))
    .tensor("q4_k", &[256], 12, q4_k_block(0.5, 0.25, &sc_k, &m_k, &q4k))
    .tensor("q6_k", &[256], 14, q6_k_block(0.03125, &sc6, &q6k));
    let path = w.write(dir.path(), "blocks.gguf");
    let file = GgufFile::open(&path).unwrap();
    let values = |name: &str| {
        let info = file.tensor(name).unwrap();
        dequantize(info.ggml_type, &file.tensor_data(info).unwrap()).unwrap()
    };

    let expected: Vec<f32> = q4a
        .iter()
        .map(|&q| (q as f32 - 8.0) * 0.5)
        .chain(q4b.iter().map(|&q| (q as f32 - 8.0) * -0.25))
        .collect();
    assert_eq!(values("q4_0"), expected);
    let expected: Vec<f32> = q4a.iter().map(|&q| q as f32 * 0.125 - 1.5).collect();
    assert_eq!(values("q4_1"), expected);
    let expected: Vec<f32> = q8.iter().map(|&q| q as f32 * 0.0625).collect();
    assert_eq!(values("q8_0"), expected);
    assert_eq!(values("q8_0")[0], -8.0);
    let expected: Vec<f32> = q5.iter().map(|&q| (q as f32 - 16.0) * 2.0).collect();
    assert_eq!(values("q5_0"), expected);
    let expected: Vec<f32> = (0..256)
        .map(|i| 0.5 * sc_k[i / 32] as f32 * q4k[i] as f32 - 0.25 * m_k[i / 32] as f32)
        .collect();
    assert_eq!(values("q4_k"), expected);
    let expected: Vec<f32> = (0..256)
        .map(|i| 0.03125 * sc6[i / 16] as f32 * (q6k[i] as f32 - 32.0))
        .collect();
    assert_eq!(values("q6_k"), expected);
    // Spot values worked out by hand: element 0 of q4_0 has q = 13 ->
    // (13 - 8) * 0.5; element 32 (second block) q = 10 -> (10 - 8) * -0.25.
    assert_eq!((q4a[0], q4b[0]), (13, 10));
    assert_eq!(values("q4_0")[0], 2.5);
    assert_eq!(values("q4_0")[32], -0.5);
}

fn q5_1_block(d: f32, m: f32, q: &[u8; 32]) -> Vec<u8> {
    let mut b = f16_bytes(d).to_vec();
    b.extend(f16_bytes(m));
    let qh: u32 = (0..32).map(|j| ((q[j] >> 4) as u32) << j).sum();
    b.extend(qh.to_le_bytes());
    b.extend((0..16).map(|j| (q[j] & 15) | ((q[j + 16] & 15) << 4)));
    b
}

fn q5_k_block(d: f32, dmin: f32, sc: &[u8; 8], m: &[u8; 8], q: &[u8; 256]) -> Vec<u8> {
    let q4 = q4_k_block(d, dmin, sc, m, &q.map(|v| v & 15));
    let mut qh = [0u8; 32];
    for (i, &v) in q.iter().enumerate() {
        // Element i sits in sub-block i / 32; bit (i / 32) of qh[i % 32].
        qh[i % 32] |= (v >> 4) << (i / 32);
    }
    [&q4[..16], &qh[..], &q4[16..]].concat()
}

fn q8_k_block(d: f32, q: &[i8; 256]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend(q.iter().map(|&v| v as u8));
    // Block sums of 16: unused by dequantization but part of the layout.
    for chunk in q.chunks(16) {
        b.extend(chunk.iter().map(|&v| v as i16).sum::<i16>().to_le_bytes());
    }
    b
}

/// Q2_K: element e has scale/min byte e / 16 (scale low nibble, min high)
/// and its 2 bits in qs[32 * (e / 128) + e % 32] at bit 2 * ((e / 32) % 4).
fn q2_k_block(d: f32, dmin: f32, sm: &[u8; 16], q: &[u8; 256]) -> Vec<u8> {
    let mut qs = [0u8; 64];
    for (e, &v) in q.iter().enumerate() {
        qs[32 * (e / 128) + e % 32] |= v << (2 * ((e / 32) % 4));
    }
    let mut b = sm.to_vec();
    b.extend(qs);
    b.extend(f16_bytes(d));
    b.extend(f16_bytes(dmin));
    b
}

/// Q3_K: 3-bit q in -4..4 as 2 low bits (like Q2_K) plus a mask bit that is
/// set when the value is not shifted down by 4; sixteen 6-bit scales - 32.
fn q3_k_block(d: f32, scales: &[u8; 16], q: &[i8; 256]) -> Vec<u8> {
    let mut hmask = [0u8; 32];
    let mut qs = [0u8; 64];
    for (e, &v) in q.iter().enumerate() {
        let u = (v + 4) as u8; // 0..8: high bit set means "no -4"
        qs[32 * (e / 128) + e % 32] |= (u & 3) << (2 * ((e / 32) % 4));
        hmask[e % 32] |= (u >> 2) << (e / 32);
    }
    let mut packed = [0u8; 12];
    for (i, &s) in scales.iter().enumerate() {
        if i < 8 {
            packed[i] |= s & 15;
        } else {
            packed[i - 8] |= (s & 15) << 4;
        }
        packed[8 + i % 4] |= (s >> 4) << (2 * (i / 4));
    }
    let mut b = hmask.to_vec();
    b.extend(qs);
    b.extend(packed);
    b.extend(f16_bytes(d));
    b
}

#[test]
fn hand_packed_blocks_of_the_other_types() {
    let dir = tempfile::tempdir().unwrap();
    let q5: [u8; 32] = pattern(32, 6);
    let q5k: [u8; 256] = pattern(32, 7);
    let q2k: [u8; 256] = pattern(4, 8);
    let q3k: [i8; 256] = pattern::<256>(8, 9).map(|v| v as i8 - 4);
    let q8k: [i8; 256] = std::array::from_fn(|i| (i as i32 - 128) as i8);
    let sc_k: [u8; 8] = [9, 0, 63, 21, 40, 7, 55, 18];
    let m_k: [u8; 8] = [63, 1, 12, 44, 0, 30, 17, 50];
    let sm2: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5A);
    let sc3: [u8; 16] = std::array::from_fn(|i| (i as u8 * 11 + 3) % 64);
    let plain = [1.5f32, -2.25, 65504.0, 1e-3];

    let mut w = GgufWriter::default();
    w.tensor("q5_1", &[32], 7, q5_1_block(0.25, 3.0, &q5))
        .tensor(
            "q5_k",
            &[256],
            13,
            q5_k_block(0.125, 0.5, &sc_k, &m_k, &q5k),
        )
        .tensor("q2_k", &[256], 10, q2_k_block(0.5, 0.25, &sm2, &q2k))
        .tensor("q3_k", &[256], 11, q3_k_block(0.0625, &sc3, &q3k))
        .tensor("q8_k", &[256], 15, q8_k_block(0.01, &q8k))
        .tensor(
            "f16",
            &[4],
            1,
            plain.iter().flat_map(|&v| f16_bytes(v)).collect(),
        )
        .tensor(
            "bf16",
            &[4],
            30,
            plain
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        );
    let path = w.write(dir.path(), "more_blocks.gguf");
    let file = GgufFile::open(&path).unwrap();
    let values = |name: &str| {
        let info = file.tensor(name).unwrap();
        dequantize(info.ggml_type, &file.tensor_data(info).unwrap()).unwrap()
    };

    let expected: Vec<f32> = q5.iter().map(|&q| q as f32 * 0.25 + 3.0).collect();
    assert_eq!(values("q5_1"), expected);
    let expected: Vec<f32> = (0..256)
        .map(|i| 0.125 * sc_k[i / 32] as f32 * q5k[i] as f32 - 0.5 * m_k[i / 32] as f32)
        .collect();
    assert_eq!(values("q5_k"), expected);
    let expected: Vec<f32> = (0..256)
        .map(|i| {
            let (sc, m) = (sm2[i / 16] & 15, sm2[i / 16] >> 4);
            0.5 * sc as f32 * q2k[i] as f32 - 0.25 * m as f32
        })
        .collect();
    assert_eq!(values("q2_k"), expected);
    let expected: Vec<f32> = (0..256)
        .map(|i| 0.0625 * (sc3[i / 16] as i32 - 32) as f32 * q3k[i] as f32)
        .collect();
    assert_eq!(values("q3_k"), expected);
    let expected: Vec<f32> = q8k.iter().map(|&q| q as f32 * 0.01).collect();
    assert_eq!(values("q8_k"), expected);
    assert_eq!(
        values("f16"),
        [1.5, -2.25, 65504.0, half::f16::from_f32(1e-3).to_f32()]
    );
    assert_eq!(
        values("bf16"),
        [1.5, -2.25, 65536.0, half::bf16::from_f32(1e-3).to_f32()]
    );
}

#[test]
fn unsupported_types_are_named() {
    let err = dequantize(GgmlType::Iq2Xxs, &[0u8; 66]).unwrap_err();
    assert_eq!(
        err,
        "ggml type IQ2_XXS is not supported (supported: F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, \
         Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K)"
    );
    let err = dequantize(GgmlType::Q4_0, &[0u8; 19]).unwrap_err();
    assert_eq!(
        err,
        "19 bytes is not a whole number of Q4_0 blocks of 18 bytes"
    );
}

// ---- MLX affine triples ----

/// Q4_0, Q4_1 and Q8_0 become MLX triples whose `dequantize` equals the
/// scalar reference bit for bit (and so gguf-py's numbers).
#[test]
fn legacy_quants_convert_to_mlx_triples_without_loss() {
    let file = GgufFile::open(fixture_path("quant_blocks.gguf")).unwrap();
    for (name, bits) in [("Q4_0", 4u8), ("Q4_1", 4), ("Q8_0", 8)] {
        let info = file.tensor(name).unwrap();
        let bytes = file.tensor_data(info).unwrap();
        let reference = dequantize(info.ggml_type, &bytes).unwrap();
        let MlxTensor::Quantized {
            weight,
            scales,
            biases,
            bits: got_bits,
            group_size,
        } = tensor_to_mlx(info, &bytes).unwrap()
        else {
            panic!("{name} should become an affine triple");
        };
        assert_eq!((got_bits, group_size), (bits, 32), "{name}");
        assert_eq!(weight.dtype(), Dtype::Uint32);
        assert_eq!(weight.shape(), [4, 256 * bits as i32 / 32], "{name}");
        assert_eq!(scales.shape(), [4, 8]);
        assert_eq!(biases.shape(), [4, 8]);
        assert_eq!(scales.dtype(), Dtype::Float32);
        let dense = mlx_rs::ops::dequantize(&weight, &scales, &biases, 32, bits as i32).unwrap();
        assert_eq!(dense.shape(), [4, 256]);
        assert_eq!(dense.dtype(), Dtype::Float32);
        assert_eq!(dense.as_slice::<f32>(), reference.as_slice(), "{name}");
    }
}

#[test]
fn mlx_packing_order_is_low_bits_first() {
    // One Q4_1 block with d = 1, m = 0 and q[j] = j % 16: MLX's first word
    // holds elements 0..8 from the lowest nibble up: 0x76543210.
    let q: [u8; 32] = std::array::from_fn(|j| (j % 16) as u8);
    let info = engine::gguf::TensorInfo {
        name: "w".into(),
        dims: vec![32],
        ggml_type: GgmlType::Q4_1,
        offset: 0,
    };
    let MlxTensor::Quantized { weight, .. } =
        tensor_to_mlx(&info, &q4_1_block(1.0, 0.0, &q)).unwrap()
    else {
        panic!("expected a triple");
    };
    assert_eq!(
        weight.as_slice::<u32>(),
        [0x7654_3210, 0xFEDC_BA98, 0x7654_3210, 0xFEDC_BA98]
    );
    // Q8_0: q = -128 is stored as unsigned 0, q = 127 as 255.
    let mut q8 = [0i8; 32];
    q8[0] = -128;
    q8[1] = 127;
    q8[2] = 1;
    let info = engine::gguf::TensorInfo {
        ggml_type: GgmlType::Q8_0,
        ..info
    };
    let MlxTensor::Quantized { weight, biases, .. } =
        tensor_to_mlx(&info, &q8_0_block(0.5, &q8)).unwrap()
    else {
        panic!("expected a triple");
    };
    assert_eq!(weight.as_slice::<u32>()[0], 0x81_FF_00 | (0x80 << 24));
    assert_eq!(biases.as_slice::<f32>(), [-64.0]);
}

#[test]
fn k_quants_become_dense_f32() {
    let file = GgufFile::open(fixture_path("quant_blocks.gguf")).unwrap();
    for name in ["Q4_K", "Q5_K", "Q6_K", "Q5_0"] {
        let info = file.tensor(name).unwrap();
        let bytes = file.tensor_data(info).unwrap();
        let MlxTensor::Dense(array) = tensor_to_mlx(info, &bytes).unwrap() else {
            panic!("{name} should be dequantized");
        };
        assert_eq!(array.dtype(), Dtype::Float32);
        assert_eq!(array.shape(), [4, 256]);
        let reference = dequantize(info.ggml_type, &bytes).unwrap();
        assert_eq!(array.as_slice::<f32>(), reference.as_slice(), "{name}");
    }
}
