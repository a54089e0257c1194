//! The GGUF container: every metadata value type, tensor infos, alignment,
//! and errors that name the file and what is wrong where.

mod gguf_common;

use engine::gguf::{GgmlType, GgufError, GgufFile, MetadataValue as V, ValueType};
use gguf_common::{string_array, GgufWriter};

fn every_value_type() -> GgufWriter {
    let mut w = GgufWriter::default();
    w.kv("u8", V::U8(200))
        .kv("i8", V::I8(-100))
        .kv("u16", V::U16(60_000))
        .kv("i16", V::I16(-30_000))
        .kv("u32", V::U32(4_000_000_000))
        .kv("i32", V::I32(-2_000_000_000))
        .kv("f32", V::F32(1.5e-5))
        .kv("bool", V::Bool(true))
        .kv("string", V::String("héllo ✓".into()))
        .kv("u64", V::U64(1 << 40))
        .kv("i64", V::I64(-(1 << 40)))
        .kv("f64", V::F64(-2.25))
        .kv("strings", string_array(&["a", "", "c d"]))
        .kv(
            "nested",
            V::Array(
                ValueType::Array,
                vec![
                    V::Array(ValueType::I32, vec![V::I32(1), V::I32(-2)]),
                    V::Array(ValueType::F32, vec![]),
                ],
            ),
        );
    w
}

#[test]
fn reads_every_metadata_value_type_in_v2_and_v3() {
    let dir = tempfile::tempdir().unwrap();
    for version in [2, 3] {
        let mut w = every_value_type();
        w.version = version;
        let path = w.write(dir.path(), "values.gguf");
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(file.version, version);
        assert_eq!(file.metadata.len(), 14);
        for (key, value) in &w.metadata {
            assert_eq!(file.get(key), Some(value), "key {key}");
        }
        assert_eq!(file.get("u32").unwrap().as_u64(), Some(4_000_000_000));
        assert_eq!(file.get("i8").unwrap().as_i64(), Some(-100));
        assert_eq!(file.get("i8").unwrap().as_u64(), None);
        assert_eq!(file.get("f32").unwrap().as_f64(), Some(1.5e-5f32 as f64));
        assert_eq!(file.get("string").unwrap().as_str(), Some("héllo ✓"));
        assert!(file.tensors.is_empty());
    }
}

#[test]
fn reads_tensor_infos_and_data_with_custom_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter {
        alignment: 64,
        ..Default::default()
    };
    w.kv("general.alignment", V::U32(64));
    w.f32_tensor("a", &[3], &[1.0, 2.0, 3.0]);
    w.f32_tensor("b", &[2, 2], &[4.0, 5.0, 6.0, 7.0]);
    w.tensor("c", &[32, 2], 8, vec![7u8; 68]); // two Q8_0 blocks
    let (bytes, data_offset) = w.bytes_and_data_offset();
    let path = dir.path().join("tensors.gguf");
    std::fs::write(&path, &bytes).unwrap();

    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.alignment, 64);
    assert_eq!(file.data_offset, data_offset);
    assert_eq!(file.data_offset % 64, 0);
    let names: Vec<&str> = file.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let b = file.tensor("b").unwrap();
    assert_eq!(b.offset, 64);
    assert_eq!(b.shape(), [2, 2]);
    assert_eq!(b.n_bytes(), 16);
    let c = file.tensor("c").unwrap();
    assert_eq!(
        (c.ggml_type, c.offset, c.n_bytes()),
        (GgmlType::Q8_0, 128, 68)
    );
    assert_eq!(c.shape(), [2, 32]);
    let data = file.tensor_data(b).unwrap();
    let values: Vec<f32> = data
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values, [4.0, 5.0, 6.0, 7.0]);
    assert_eq!(file.tensor_data(c).unwrap(), vec![7u8; 68]);
}

fn open_err(bytes: &[u8]) -> (String, GgufError) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = GgufFile::open(&path).unwrap_err();
    (path.display().to_string(), err)
}

#[test]
fn bad_magic_and_versions_are_named() {
    let (path, err) = open_err(b"GGML\x03\0\0\0");
    assert_eq!(
        err.to_string(),
        format!("{path}: not a GGUF file: it does not start with the bytes \"GGUF\"")
    );

    let w = GgufWriter {
        version: 1,
        ..Default::default()
    };
    let (path, err) = open_err(&w.bytes());
    assert_eq!(
        err.to_string(),
        format!("{path}: GGUF version 1 at offset 4 is not supported (this reader reads versions 2 and 3)")
    );

    let mut bytes = GgufWriter::default().bytes();
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    let (path, err) = open_err(&bytes);
    assert_eq!(
        err.to_string(),
        format!("{path}: big-endian GGUF (version 3 byte-swapped) is not supported")
    );
}

#[test]
fn every_truncation_point_is_an_error_not_a_panic() {
    let mut w = every_value_type();
    w.f32_tensor("t", &[4], &[1.0, 2.0, 3.0, 4.0]);
    let bytes = w.bytes();
    for len in 0..bytes.len() {
        let (path, err) = open_err(&bytes[..len]);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{path}: file is truncated: ")),
            "cut at {len}: {text}"
        );
    }
    // Specific places name what was being read and where.
    let (path, err) = open_err(&bytes[..10]);
    assert_eq!(
        err.to_string(),
        format!(
            "{path}: file is truncated: tensor count at offset 8 needs 8 bytes, the file has 10"
        )
    );
    let cut = bytes.len() - 4;
    let (path, err) = open_err(&bytes[..cut]);
    assert_eq!(
        err.to_string(),
        format!(
            "{path}: file is truncated: data of tensor `t` at offset {} needs 16 bytes, the file has {cut}",
            bytes.len() - 16
        )
    );
}

#[test]
fn unknown_value_and_tensor_types_are_named() {
    let mut w = GgufWriter::default();
    w.kv("ok", V::U8(1)).kv("weird", V::U8(0));
    let mut bytes = w.bytes();
    // The value type of `weird` follows its key: 24 header + (8+2+4+1) + (8+5).
    let type_offset = 24 + 15 + 13;
    bytes[type_offset..type_offset + 4].copy_from_slice(&13u32.to_le_bytes());
    let (path, err) = open_err(&bytes);
    assert_eq!(
        err.to_string(),
        format!("{path}: metadata `weird` at offset {type_offset}: unknown metadata value type 13")
    );

    let mut w = GgufWriter::default();
    w.tensor("blk.0.attn_q.weight", &[32], 99, vec![0; 32]);
    let (path, err) = open_err(&w.bytes());
    assert_eq!(
        err.to_string(),
        format!("{path}: tensor `blk.0.attn_q.weight`: unknown ggml type 99")
    );
}

#[test]
fn inconsistent_tensor_infos_are_named() {
    let mut w = GgufWriter::default();
    w.tensor("q", &[30, 2], 2, vec![0; 36]);
    let (path, err) = open_err(&w.bytes());
    assert_eq!(
        err.to_string(),
        format!(
            "{path}: tensor `q`: first dimension 30 is not a multiple of the Q4_0 block size 32"
        )
    );

    let mut w = GgufWriter::default();
    w.f32_tensor("x", &[1], &[1.0])
        .f32_tensor("x", &[1], &[2.0]);
    let (path, err) = open_err(&w.bytes());
    assert_eq!(
        err.to_string(),
        format!("{path}: tensor `x`: duplicate tensor name")
    );

    let mut w = GgufWriter::default();
    w.kv("general.alignment", V::U32(48));
    let (path, err) = open_err(&w.bytes());
    assert_eq!(
        err.to_string(),
        format!("{path}: metadata `general.alignment`: must be a power of two, found 48")
    );

    let mut w = GgufWriter::default();
    w.f32_tensor("y", &[2], &[1.0, 2.0]);
    let mut bytes = w.bytes();
    // Point the tensor's data offset at 8, off the 32-byte grid: the offset
    // is the last 8 bytes of the tensor info, just before the padding.
    let info_end = 24 + (8 + 1) + 4 + 8 + 4 + 8;
    bytes[info_end - 8..info_end].copy_from_slice(&8u64.to_le_bytes());
    let (path, err) = open_err(&bytes);
    assert_eq!(
        err.to_string(),
        format!("{path}: tensor `y`: data offset 8 is not a multiple of the alignment 32")
    );
}

#[test]
fn missing_file_names_the_path() {
    let err = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/model.gguf: cannot read: No such file"),
        "{err}"
    );
}

#[test]
fn reads_the_file_gguf_py_wrote() {
    let file = GgufFile::open(gguf_common::fixture_path("quant_blocks.gguf")).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(
        file.get("general.architecture").and_then(|v| v.as_str()),
        Some("fixture")
    );
    assert_eq!(file.tensors.len(), 26);
    let q6 = file.tensor("Q6_K").unwrap();
    assert_eq!(
        (q6.ggml_type, q6.dims.clone(), q6.n_bytes()),
        (GgmlType::Q6K, vec![256, 4], 840)
    );
}
