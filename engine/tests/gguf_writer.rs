//! The GGUF writer: a file with every metadata value kind and every tensor
//! type we write reads back the same through our reader and through
//! gguf-py (llama.cpp's own package, in the peer venv): keys, types,
//! values, tensor infos, 32-byte alignment, and dequantized floats equal
//! to ours bit for bit. Our quantizers give gguf-py's (ggml's reference)
//! bytes exactly. Misuse of the writer is refused naming the tensor.

mod common;
mod gguf_peer;

use std::path::Path;

use common::run_peer;
use engine::gguf::dequant::dequantize;
use engine::gguf::quantize::{quantize, QUANTIZABLE};
use engine::gguf::{GgmlType, GgufFile, GgufWriter, MetadataValue, TensorSpec, ValueType};
use gguf_peer::{assert_json_value, assert_same_as_our_reader};
use serde_json::Value;

/// Deterministic floats with the cases quantizers get wrong: a zero block,
/// a constant block, a block whose largest magnitude is negative, and
/// values of mixed scale.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut out: Vec<f32> = (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            u * if i % 97 == 0 { 9.0 } else { 0.3 }
        })
        .collect();
    if n >= 128 {
        out[..32].fill(0.0);
        out[32..64].fill(0.25);
        out[70] = -4.0;
    }
    out
}

fn metadata() -> Vec<(String, MetadataValue)> {
    use MetadataValue::*;
    vec![
        ("test.u8".into(), U8(200)),
        ("test.i8".into(), I8(-100)),
        ("test.u16".into(), U16(60_000)),
        ("test.i16".into(), I16(-30_000)),
        ("test.u32".into(), U32(4_000_000_000)),
        ("test.i32".into(), I32(-2_000_000_000)),
        ("test.f32".into(), F32(0.1)),
        ("test.bool".into(), Bool(true)),
        (
            "test.string".into(),
            String("Grüße, 世界 <|im_end|>".into()),
        ),
        ("test.u64".into(), U64(1 << 53)),
        ("test.i64".into(), I64(-(1 << 53))),
        ("test.f64".into(), F64(1e-300)),
        (
            "test.array.strings".into(),
            Array(
                ValueType::String,
                vec![String("a".into()), String("".into()), String("Ġb".into())],
            ),
        ),
        (
            "test.array.i32".into(),
            Array(ValueType::I32, vec![I32(1), I32(-2), I32(3)]),
        ),
        (
            "test.array.f32".into(),
            Array(ValueType::F32, vec![F32(-0.5), F32(1e-20)]),
        ),
        (
            "test.array.bool".into(),
            Array(ValueType::Bool, vec![Bool(false), Bool(true)]),
        ),
        ("test.array.empty".into(), Array(ValueType::U32, vec![])),
    ]
}

/// (spec, source floats) for every writable type, plus shapes that need
/// padding (an F32 tensor of 7 elements) and a 3-dimensional one.
fn tensors() -> Vec<(TensorSpec, Vec<f32>)> {
    let mut out = Vec::new();
    for (i, &t) in QUANTIZABLE.iter().enumerate() {
        let spec = TensorSpec::from_shape(format!("w.{}", t.name()), &[3, 256], t);
        out.push((spec, values(3 * 256, i as u64)));
    }
    out.push((
        TensorSpec::from_shape("odd.f32", &[7], GgmlType::F32),
        values(7, 50),
    ));
    out.push((
        TensorSpec::from_shape("cube.q8_0", &[2, 3, 64], GgmlType::Q8_0),
        values(384, 51),
    ));
    out
}

fn write_file(path: &Path) -> Vec<(TensorSpec, Vec<u8>)> {
    let tensors: Vec<(TensorSpec, Vec<u8>)> = tensors()
        .into_iter()
        .map(|(spec, x)| {
            let bytes = quantize(spec.ggml_type, &x).unwrap();
            (spec, bytes)
        })
        .collect();
    let mut writer = GgufWriter::create(
        path,
        &metadata(),
        tensors.iter().map(|(s, _)| s.clone()).collect(),
    )
    .unwrap();
    for (spec, bytes) in &tensors {
        writer.write_tensor(&spec.name, bytes).unwrap();
    }
    let len = writer.finish().unwrap();
    assert_eq!(len, std::fs::metadata(path).unwrap().len());
    tensors
}

#[test]
fn our_reader_reads_back_every_key_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.gguf");
    let written = write_file(&path);
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.alignment, 32);
    assert_eq!(file.get("general.alignment"), Some(&MetadataValue::U32(32)));
    for (key, value) in metadata() {
        assert_eq!(file.get(&key), Some(&value), "{key}");
    }
    assert_eq!(file.metadata.len(), metadata().len() + 1);
    assert_eq!(file.data_offset % 32, 0);
    assert_eq!(file.tensors.len(), written.len());
    for (info, (spec, bytes)) in file.tensors.iter().zip(&written) {
        assert_eq!(info.name, spec.name);
        assert_eq!(info.dims, spec.dims);
        assert_eq!(info.ggml_type, spec.ggml_type);
        assert_eq!(info.offset % 32, 0, "{} is aligned", info.name);
        assert_eq!(&file.tensor_data(info).unwrap(), bytes, "{}", info.name);
    }
    // Quantized and read back, every type stays within its own step.
    for ((spec, x), (_, bytes)) in tensors().iter().zip(&written) {
        let back = dequantize(spec.ggml_type, bytes).unwrap();
        let worst = x
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let bound = match spec.ggml_type {
            GgmlType::F32 => 0.0,
            GgmlType::F16 | GgmlType::Bf16 => 0.02,
            GgmlType::Q8_0 => 0.04,
            _ => 0.6,
        };
        assert!(worst <= bound, "{}: error {worst} > {bound}", spec.name);
    }
}

#[test]
fn gguf_py_reads_our_keys_tensors_and_floats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.gguf");
    let written = write_file(&path);
    let out = dir.path().join("py");
    run_peer(
        "gguf_read.py",
        &[path.to_str().unwrap(), out.to_str().unwrap()],
    );
    let read: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("read.json")).unwrap()).unwrap();
    assert_eq!(read["version"], 3);
    assert_eq!(read["alignment"], 32);
    assert_same_as_our_reader(&read, &GgufFile::open(&path).unwrap());
    let meta = read["metadata"].as_object().unwrap();
    assert_eq!(meta.len(), metadata().len() + 1);
    assert_eq!(meta["general.alignment"]["type"], "UINT32");
    for (key, value) in metadata() {
        assert_json_value(&meta[&key], &value, &key);
    }
    let tensors = read["tensors"].as_array().unwrap();
    for (t, (spec, bytes)) in tensors.iter().zip(&written) {
        assert_eq!(t["name"], spec.name.as_str());
        assert_eq!(t["type"], spec.ggml_type.name());
        assert_eq!(t["dims"], serde_json::json!(spec.dims));
        assert_eq!(t["n_bytes"], bytes.len());
        let theirs = std::fs::read(out.join(format!("{}.f32", spec.name))).unwrap();
        let ours: Vec<u8> = dequantize(spec.ggml_type, bytes)
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(
            theirs == ours,
            "{}: gguf-py's dequantized floats differ from ours",
            spec.name
        );
    }
}

#[test]
fn our_quantizers_give_gguf_py_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let x = values(256 * 8, 99);
    let source = dir.path().join("x.f32");
    std::fs::write(
        &source,
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
    for t in [
        GgmlType::F16,
        GgmlType::Bf16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
    ] {
        let target = dir.path().join(format!("{t}.bin"));
        run_peer(
            "gguf_quantize.py",
            &[source.to_str().unwrap(), t.name(), target.to_str().unwrap()],
        );
        let theirs = std::fs::read(&target).unwrap();
        let ours = quantize(t, &x).unwrap();
        assert_eq!(theirs.len(), ours.len(), "{t}");
        let first = theirs.iter().zip(&ours).position(|(a, b)| a != b);
        assert_eq!(first, None, "{t}: bytes differ from gguf-py's");
    }
}

#[test]
fn misuse_is_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let specs = vec![
        TensorSpec::from_shape("a", &[4], GgmlType::F32),
        TensorSpec::from_shape("b", &[32], GgmlType::Q8_0),
    ];
    let error = |e: engine::gguf::GgufError| e.to_string();

    let bad_block = vec![TensorSpec::from_shape("c", &[2, 48], GgmlType::Q4_0)];
    let message = error(GgufWriter::create(&path, &[], bad_block).err().unwrap());
    assert!(
        message.contains("`c`") && message.contains("block size 32"),
        "{message}"
    );

    let twice = vec![
        ("k".to_string(), MetadataValue::U8(1)),
        ("k".to_string(), MetadataValue::U8(2)),
    ];
    let message = error(GgufWriter::create(&path, &twice, vec![]).err().unwrap());
    assert!(message.contains("`k`: given twice"), "{message}");

    let mut writer = GgufWriter::create(&path, &[], specs.clone()).unwrap();
    let message = error(writer.write_tensor("b", &[0; 34]).unwrap_err());
    assert!(message.contains("`a` comes next"), "{message}");
    let message = error(writer.write_tensor("a", &[0; 15]).unwrap_err());
    assert!(
        message.contains("has 15 bytes") && message.contains("need 16"),
        "{message}"
    );
    writer.write_tensor("a", &[0; 16]).unwrap();
    let message = error(writer.finish().unwrap_err());
    assert!(message.contains("`b`: was never written"), "{message}");
}

/// ggml's own quantizer: the libggml-base.so of node-llama-cpp's prebuilt
/// llama.cpp, called through tests/peer/ggml_quantize.py.
fn ggml_quantize(dir: &Path, t: GgmlType, x: &[f32], n_per_row: usize) -> Vec<u8> {
    let lib = common::repo_root()
        .join("end2end/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so");
    assert!(
        lib.exists(),
        "{} is missing: run `npm ci` in end2end (scripts/setup.sh does)",
        lib.display()
    );
    let source = dir.join(format!("{t}.in.f32"));
    std::fs::write(
        &source,
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
    let target = dir.join(format!("{t}.ggml.bin"));
    run_peer(
        "ggml_quantize.py",
        &[
            lib.to_str().unwrap(),
            source.to_str().unwrap(),
            &t.code().to_string(),
            &n_per_row.to_string(),
            target.to_str().unwrap(),
        ],
    );
    std::fs::read(&target).unwrap()
}

fn rmse(x: &[f32], t: GgmlType, bytes: &[u8]) -> f64 {
    let back = dequantize(t, bytes).unwrap();
    let sum: f64 = x
        .iter()
        .zip(&back)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    (sum / x.len() as f64).sqrt()
}

/// Every quantizer, K-quants included, gives the bytes of ggml's own
/// (`ggml_quantize_chunk`, what llama-quantize runs without an importance
/// matrix) on synthetic values with zero and constant blocks and on real
/// weights (SmolLM2's token embeddings); the root-mean-square errors on the
/// real weights are within 3% of the figures stored in
/// gguf_fixtures/quant_rmse.json, computed once with ggml's quantizer.
#[test]
fn our_quantizers_give_ggml_bytes_and_rmse() {
    let dir = tempfile::tempdir().unwrap();
    let synthetic = values(512 * 8, 7);
    let file = GgufFile::open(common::smollm2_path()).unwrap();
    // SmolLM2's token embeddings are its only matrix stored at 8 bits,
    // the nearest to unquantized weights the file has: their first 576 x
    // 1536 values as rows of 1536 (whole K-quant blocks).
    let info = file.tensor("token_embd.weight").unwrap();
    let mut real = dequantize(info.ggml_type, &file.tensor_data(info).unwrap()).unwrap();
    real.truncate(576 * 1536);
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_fixtures/quant_rmse.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for t in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ] {
        for (label, x, n_per_row) in [("synthetic", &synthetic, 512), ("token_embd", &real, 1536)] {
            let theirs = ggml_quantize(dir.path(), t, x, n_per_row);
            let ours = quantize(t, x).unwrap();
            assert_eq!(theirs.len(), ours.len(), "{t} {label}");
            let first = theirs.iter().zip(&ours).position(|(a, b)| a != b);
            assert_eq!(first, None, "{t} {label}: bytes differ from ggml's");
        }
        let ours = rmse(&real, t, &quantize(t, &real).unwrap());
        let reference = fixture[t.name()].as_f64().unwrap();
        eprintln!("{t}: rmse {ours:.6e}, ggml's {reference:.6e}");
        assert!(
            ours <= reference * 1.03,
            "{t}: rmse {ours} is over 3% above ggml's {reference}"
        );
    }
}
