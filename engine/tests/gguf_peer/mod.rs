//! The two outside readers of our GGUF files: gguf-py (llama.cpp's own
//! Python package, in the peer venv) and llama.cpp itself (node-llama-cpp's
//! prebuilt binary, in end2end/node_modules), with comparisons against what
//! our reader sees.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use engine::gguf::{GgufFile, MetadataValue, ValueType};
use serde_json::{json, Value};

use crate::common::{repo_root, run_peer};

/// gguf-py's view of `path` (see tests/peer/gguf_read.py); dequantized
/// floats of `tensors` (every tensor when empty) land in `out`.
pub fn gguf_py_read(path: &Path, out: &Path, tensors: &[&str]) -> Value {
    let mut args = vec![path.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(tensors);
    run_peer("gguf_read.py", &args);
    serde_json::from_str(&std::fs::read_to_string(out.join("read.json")).unwrap()).unwrap()
}

/// The f32 values gguf-py dequantized for `name`, as bytes.
pub fn gguf_py_floats(out: &Path, name: &str) -> Vec<u8> {
    std::fs::read(out.join(format!("{name}.f32"))).unwrap()
}

/// Every key and tensor info gguf-py read equals what our reader read.
pub fn assert_same_as_our_reader(read: &Value, file: &GgufFile) {
    assert_eq!(read["version"], file.version);
    assert_eq!(read["alignment"], file.alignment);
    assert_eq!(read["data_offset"], file.data_offset);
    let meta = read["metadata"].as_object().unwrap();
    assert_eq!(meta.len(), file.metadata.len(), "key counts");
    for (key, value) in &file.metadata {
        assert_json_value(&meta[key], value, key);
    }
    let tensors = read["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), file.tensors.len());
    for (t, info) in tensors.iter().zip(&file.tensors) {
        assert_eq!(t["name"], info.name.as_str());
        assert_eq!(t["type"], info.ggml_type.name(), "{}", info.name);
        assert_eq!(t["dims"], json!(info.dims), "{}", info.name);
        assert_eq!(t["offset"], info.offset, "{}", info.name);
        assert_eq!(t["n_bytes"], info.n_bytes(), "{}", info.name);
    }
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::U8 => "UINT8",
        ValueType::I8 => "INT8",
        ValueType::U16 => "UINT16",
        ValueType::I16 => "INT16",
        ValueType::U32 => "UINT32",
        ValueType::I32 => "INT32",
        ValueType::F32 => "FLOAT32",
        ValueType::Bool => "BOOL",
        ValueType::String => "STRING",
        ValueType::Array => "ARRAY",
        ValueType::U64 => "UINT64",
        ValueType::I64 => "INT64",
        ValueType::F64 => "FLOAT64",
    }
}

/// gguf-py's JSON of one value against ours: same type names, same value.
pub fn assert_json_value(json: &Value, value: &MetadataValue, key: &str) {
    assert_eq!(json["type"], type_name(value.value_type()), "{key}");
    match value {
        MetadataValue::Array(item_type, items) => {
            assert_eq!(json["item_type"], type_name(*item_type), "{key}");
            let values = json["value"].as_array().unwrap();
            assert_eq!(values.len(), items.len(), "{key}");
            for (j, v) in values.iter().zip(items) {
                assert!(same(j, v), "{key}: gguf-py {j}, ours {v}");
            }
        }
        other => assert!(
            same(&json["value"], other),
            "{key}: gguf-py {}, ours {other}",
            json["value"]
        ),
    }
}

/// serde_json parses decimals to the nearest f64 only up to an ulp, so
/// floats are compared at their own width (F32) or to an ulp (F64).
fn same(json: &Value, v: &MetadataValue) -> bool {
    match v {
        MetadataValue::F32(f) => json.as_f64().map(|j| j as f32) == Some(*f),
        MetadataValue::F64(f) => json
            .as_f64()
            .is_some_and(|j| (j - f).abs() <= f.abs() * 1e-15),
        MetadataValue::Bool(b) => *json == json!(b),
        MetadataValue::String(s) => *json == json!(s),
        other => match other.as_i64() {
            Some(i) => *json == json!(i),
            None => *json == json!(other.as_u64()),
        },
    }
}

/// What llama.cpp did with a file (see end2end/llama-cpp/generate.mjs).
pub struct LlamaCpp {
    pub tokens: Vec<u32>,
    pub tokenized: Vec<Vec<u32>>,
}

/// Loads `model` (with `lora`) in llama.cpp, generates greedy from
/// `prompt` and tokenizes `texts`.
pub fn llama_cpp(
    model: &Path,
    lora: Option<&Path>,
    prompt: &[u32],
    max_tokens: usize,
    stop: &[u32],
    texts: &[&str],
) -> LlamaCpp {
    let root = repo_root();
    let script = root.join("end2end/llama-cpp/generate.mjs");
    assert!(
        root.join("end2end/node_modules/node-llama-cpp").exists(),
        "node-llama-cpp is missing: run `npm ci` in end2end (scripts/setup.sh does)"
    );
    let request = model.with_extension("llama-request.json");
    std::fs::write(
        &request,
        json!({
            "model": model, "lora": lora, "prompt": prompt,
            "max_tokens": max_tokens, "stop": stop, "texts": texts,
        })
        .to_string(),
    )
    .unwrap();
    let output = Command::new("node")
        .arg(&script)
        .arg(&request)
        .output()
        .expect("cannot start node");
    assert!(
        output.status.success(),
        "llama.cpp (node-llama-cpp) failed on {}: {}\n{}",
        model.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout.lines().last().unwrap_or_default();
    let value: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("llama.cpp output is not JSON ({e}): {stdout}"));
    LlamaCpp {
        tokens: serde_json::from_value(value["tokens"].clone()).unwrap(),
        tokenized: serde_json::from_value(value["tokenized"].clone()).unwrap(),
    }
}
