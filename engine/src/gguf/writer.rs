//! Writing a GGUF v3 file: header, metadata, tensor infos, then the data
//! section with every tensor aligned to `general.alignment` (32). The
//! header is written from the planned tensor infos first, so each tensor's
//! bytes can be made, written and dropped one at a time: a writer never
//! holds more than the tensor it is given.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use super::error::{GgufError, Result};
use super::ggml_type::GgmlType;
use super::value::{MetadataValue, ValueType};

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// llama.cpp's default; written as `general.alignment` so every reader
/// agrees on it.
pub const ALIGNMENT: u64 = 32;
const ALIGNMENT_KEY: &str = "general.alignment";

/// A tensor as the file lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    /// ggml order: the contiguous dimension first (the reverse of a
    /// row-major shape).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
}

impl TensorSpec {
    /// A spec from a row-major shape (outermost first).
    pub fn from_shape(name: impl Into<String>, shape: &[usize], ggml_type: GgmlType) -> Self {
        Self {
            name: name.into(),
            dims: shape.iter().rev().map(|&d| d as u64).collect(),
            ggml_type,
        }
    }

    pub fn n_bytes(&self) -> u64 {
        let n: u64 = self.dims.iter().product();
        n / self.ggml_type.block_size() * self.ggml_type.type_size()
    }
}

/// An open GGUF being written; `write_tensor` takes the tensors in the
/// order they were planned, `finish` checks that all came.
pub struct GgufWriter {
    path: PathBuf,
    out: BufWriter<File>,
    tensors: Vec<TensorSpec>,
    next: usize,
    /// Bytes written into the data section so far.
    data_pos: u64,
}

impl GgufWriter {
    /// Creates `path` and writes everything before the data section.
    /// `metadata` is written in the order given (after `general.alignment`,
    /// which the writer sets itself); duplicate keys and tensors whose first
    /// dimension is not a whole number of blocks are refused.
    pub fn create(
        path: impl AsRef<Path>,
        metadata: &[(String, MetadataValue)],
        tensors: Vec<TensorSpec>,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut keys = std::collections::HashSet::new();
        for (key, value) in metadata {
            if key == ALIGNMENT_KEY {
                continue;
            }
            if !keys.insert(key.as_str()) {
                return Err(GgufError::Metadata {
                    path: path.clone(),
                    key: key.clone(),
                    message: "given twice".into(),
                });
            }
            check_value(value).map_err(|message| GgufError::Metadata {
                path: path.clone(),
                key: key.clone(),
                message,
            })?;
        }
        let mut names = std::collections::HashSet::new();
        for t in &tensors {
            let tensor_error = |message: String| GgufError::Tensor {
                path: path.clone(),
                tensor: t.name.clone(),
                message,
            };
            if !names.insert(t.name.as_str()) {
                return Err(tensor_error("given twice".into()));
            }
            if t.dims.is_empty() || t.dims.len() > 4 {
                return Err(tensor_error(format!(
                    "has {} dimensions, GGUF allows 1 to 4",
                    t.dims.len()
                )));
            }
            if !t.dims[0].is_multiple_of(t.ggml_type.block_size()) {
                return Err(tensor_error(format!(
                    "first dimension {} is not a multiple of the {} block size {}",
                    t.dims[0],
                    t.ggml_type,
                    t.ggml_type.block_size()
                )));
            }
        }

        let file = File::create(&path).map_err(|source| GgufError::Io {
            path: path.clone(),
            source,
        })?;
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        let kv_count = metadata.iter().filter(|(k, _)| k != ALIGNMENT_KEY).count() + 1;
        header.extend_from_slice(&(kv_count as u64).to_le_bytes());
        put_string(&mut header, ALIGNMENT_KEY);
        put_value(&mut header, &MetadataValue::U32(ALIGNMENT as u32));
        for (key, value) in metadata.iter().filter(|(k, _)| k != ALIGNMENT_KEY) {
            put_string(&mut header, key);
            put_value(&mut header, value);
        }
        let mut offset = 0u64;
        for t in &tensors {
            put_string(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ggml_type.code().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.n_bytes()).next_multiple_of(ALIGNMENT);
        }
        let padded = (header.len() as u64).next_multiple_of(ALIGNMENT);
        header.resize(padded as usize, 0);

        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header).map_err(|source| GgufError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            out,
            tensors,
            next: 0,
            data_pos: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor `write_tensor` expects next.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        self.tensors.get(self.next)
    }

    /// Appends the next planned tensor's bytes (and the padding after them).
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let Some(spec) = self.tensors.get(self.next) else {
            return Err(self.tensor_error(name, "is not planned (all tensors are written)"));
        };
        if spec.name != name {
            return Err(self.tensor_error(
                name,
                format!("written out of order: `{}` comes next", spec.name),
            ));
        }
        if bytes.len() as u64 != spec.n_bytes() {
            return Err(self.tensor_error(
                name,
                format!(
                    "has {} bytes, its dimensions {:?} of {} need {}",
                    bytes.len(),
                    spec.dims,
                    spec.ggml_type,
                    spec.n_bytes()
                ),
            ));
        }
        let end = self.data_pos + bytes.len() as u64;
        let padding = (end.next_multiple_of(ALIGNMENT) - end) as usize;
        let io = |source| GgufError::Io {
            path: self.path.clone(),
            source,
        };
        self.out.write_all(bytes).map_err(io)?;
        self.out
            .write_all(&[0u8; ALIGNMENT as usize][..padding])
            .map_err(io)?;
        self.data_pos = end + padding as u64;
        self.next += 1;
        Ok(())
    }

    /// Checks that every planned tensor was written, flushes and syncs;
    /// returns the file's size.
    pub fn finish(mut self) -> Result<u64> {
        if let Some(missing) = self.tensors.get(self.next) {
            let name = missing.name.clone();
            return Err(self.tensor_error(
                &name,
                format!(
                    "was never written ({} of {} tensors were)",
                    self.next,
                    self.tensors.len()
                ),
            ));
        }
        let io = |source| GgufError::Io {
            path: self.path.clone(),
            source,
        };
        self.out.flush().map_err(io)?;
        let len = self.out.stream_position().map_err(io)?;
        self.out.get_ref().sync_all().map_err(io)?;
        Ok(len)
    }

    fn tensor_error(&self, tensor: &str, message: impl Into<String>) -> GgufError {
        GgufError::Tensor {
            path: self.path.clone(),
            tensor: tensor.into(),
            message: message.into(),
        }
    }
}

/// Arrays must hold items of their declared type, and GGUF has no arrays
/// of arrays in practice (llama.cpp's reader refuses them).
fn check_value(value: &MetadataValue) -> std::result::Result<(), String> {
    if let MetadataValue::Array(item_type, items) = value {
        if *item_type == ValueType::Array {
            return Err("arrays of arrays are not written".into());
        }
        if let Some(bad) = items.iter().position(|v| v.value_type() != *item_type) {
            return Err(format!(
                "item {bad} is {:?}, the array holds {item_type:?}",
                items[bad].value_type()
            ));
        }
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetadataValue) {
    out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
    put_payload(out, value);
}

/// A value without its type code (array items carry none of their own).
fn put_payload(out: &mut Vec<u8>, value: &MetadataValue) {
    match value {
        MetadataValue::U8(v) => out.push(*v),
        MetadataValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(u8::from(*v)),
        MetadataValue::String(v) => put_string(out, v),
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Array(item_type, items) => {
            out.extend_from_slice(&(*item_type as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_payload(out, item);
            }
        }
    }
}
