//! The GGUF container: header, metadata, tensor infos and the aligned data
//! section. The header is parsed once with buffered reads; tensor data is
//! read on demand, one tensor at a time, so a loader holds at most one raw
//! tensor beside the converted arrays.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{GgufError, Result};
use super::ggml_type::GgmlType;
use super::value::{MetadataValue, ValueType};

const MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions (GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as GGUF lists them: the contiguous one first (ggml's `ne`).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the tensor's bytes from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Size of the tensor's data in the file.
    pub fn n_bytes(&self) -> u64 {
        self.n_elements() / self.ggml_type.block_size() * self.ggml_type.type_size()
    }

    /// Row-major shape (outermost first), the order MLX and Hugging Face use:
    /// a GGUF `[in, out]` matrix is an HF `[out, in]` weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An open GGUF file: everything before the data section, parsed.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    file: File,
    file_len: u64,
    pub version: u32,
    /// Metadata by key (the order of keys in the file carries no meaning).
    pub metadata: BTreeMap<String, MetadataValue>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut header = HeaderReader {
            path: &path,
            reader: BufReader::with_capacity(1 << 16, &file),
            pos: 0,
            file_len,
        };

        let magic: [u8; 4] = header.array("magic")?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { path: path.clone() });
        }
        let version = header.u32("version")?;
        if matches!(version.swap_bytes(), 2 | 3) {
            return Err(GgufError::Invalid {
                path: path.clone(),
                message: format!(
                    "big-endian GGUF (version {} byte-swapped) is not supported",
                    version.swap_bytes()
                ),
            });
        }
        if !matches!(version, 2 | 3) {
            return Err(GgufError::UnsupportedVersion {
                path: path.clone(),
                version,
            });
        }
        let tensor_count = header.u64("tensor count")?;
        let kv_count = header.u64("metadata count")?;

        let mut metadata = BTreeMap::new();
        for index in 0..kv_count {
            let key_offset = header.pos;
            let key = header.string(&format!("key of metadata entry {index}"))?;
            let type_offset = header.pos;
            let code = header.u32(&format!("value type of `{key}`"))?;
            let value_type =
                ValueType::from_code(code).ok_or_else(|| GgufError::UnknownValueType {
                    path: path.clone(),
                    what: format!("metadata `{key}`"),
                    offset: type_offset,
                    code,
                })?;
            let value = header.value(value_type, &key)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Metadata {
                    path: path.clone(),
                    key,
                    message: format!("duplicate key (second one at offset {key_offset})"),
                });
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(value) => match value.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Metadata {
                        path: path.clone(),
                        key: "general.alignment".into(),
                        message: format!("must be a power of two, found {value}"),
                    })
                }
            },
        };

        let mut tensors = Vec::new();
        let mut names = HashSet::new();
        for index in 0..tensor_count {
            let info = header.tensor_info(index)?;
            if !names.insert(info.name.clone()) {
                return Err(tensor_error(&path, &info.name, "duplicate tensor name"));
            }
            tensors.push(info);
        }

        let data_offset = header.pos.next_multiple_of(alignment);
        for info in &tensors {
            if !info.offset.is_multiple_of(alignment) {
                return Err(tensor_error(
                    &path,
                    &info.name,
                    format!(
                        "data offset {} is not a multiple of the alignment {alignment}",
                        info.offset
                    ),
                ));
            }
            let start = data_offset + info.offset;
            let end = start.checked_add(info.n_bytes());
            if end.is_none_or(|end| end > file_len) {
                return Err(GgufError::Truncated {
                    path: path.clone(),
                    what: format!("data of tensor `{}`", info.name),
                    offset: start,
                    needed: info.n_bytes(),
                    file_len,
                });
            }
        }

        drop(header);
        Ok(Self {
            path,
            file,
            file_len,
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of one tensor, exactly as stored.
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<Vec<u8>> {
        let start = self.data_offset + info.offset;
        let len = info.n_bytes();
        let io_err = |source| GgufError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = &self.file;
        file.seek(SeekFrom::Start(start)).map_err(io_err)?;
        let mut bytes = vec![0u8; len as usize];
        file.read_exact(&mut bytes).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                // The file shrank after it was opened.
                GgufError::Truncated {
                    path: self.path.clone(),
                    what: format!("data of tensor `{}`", info.name),
                    offset: start,
                    needed: len,
                    file_len: self.file_len,
                }
            } else {
                io_err(source)
            }
        })?;
        Ok(bytes)
    }

    pub(crate) fn metadata_error(&self, key: &str, message: impl Into<String>) -> GgufError {
        GgufError::Metadata {
            path: self.path.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor_error(&self, tensor: &str, message: impl Into<String>) -> GgufError {
        tensor_error(&self.path, tensor, message)
    }
}

fn tensor_error(path: &Path, tensor: &str, message: impl Into<String>) -> GgufError {
    GgufError::Tensor {
        path: path.to_path_buf(),
        tensor: tensor.into(),
        message: message.into(),
    }
}

/// Sequential little-endian reads that know their file offset, so every
/// error can say where it happened.
struct HeaderReader<'a> {
    path: &'a Path,
    reader: BufReader<&'a File>,
    pos: u64,
    file_len: u64,
}

impl HeaderReader<'_> {
    fn need(&self, n: u64, what: &str) -> Result<()> {
        if self
            .pos
            .checked_add(n)
            .is_none_or(|end| end > self.file_len)
        {
            return Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: what.into(),
                offset: self.pos,
                needed: n,
                file_len: self.file_len,
            });
        }
        Ok(())
    }

    fn bytes_into(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.need(buf.len() as u64, what)?;
        self.reader
            .read_exact(buf)
            .map_err(|source| GgufError::Io {
                path: self.path.to_path_buf(),
                source,
            })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.bytes_into(&mut buf, what)?;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let start = self.pos;
        let len = self.u64(&format!("length of {what}"))?;
        self.need(len, what)?;
        let mut buf = vec![0u8; len as usize];
        self.bytes_into(&mut buf, what)?;
        String::from_utf8(buf).map_err(|e| GgufError::Invalid {
            path: self.path.to_path_buf(),
            message: format!("{what} at offset {start} is not UTF-8: {e}"),
        })
    }

    fn value(&mut self, value_type: ValueType, key: &str) -> Result<MetadataValue> {
        let what = || format!("value of `{key}`");
        Ok(match value_type {
            ValueType::U8 => MetadataValue::U8(u8::from_le_bytes(self.array(&what())?)),
            ValueType::I8 => MetadataValue::I8(i8::from_le_bytes(self.array(&what())?)),
            ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(self.array(&what())?)),
            ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(self.array(&what())?)),
            ValueType::U32 => MetadataValue::U32(u32::from_le_bytes(self.array(&what())?)),
            ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(self.array(&what())?)),
            ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(self.array(&what())?)),
            ValueType::U64 => MetadataValue::U64(u64::from_le_bytes(self.array(&what())?)),
            ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(self.array(&what())?)),
            ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(self.array(&what())?)),
            ValueType::Bool => {
                let offset = self.pos;
                match self.array::<1>(&what())?[0] {
                    0 => MetadataValue::Bool(false),
                    1 => MetadataValue::Bool(true),
                    other => {
                        return Err(GgufError::Invalid {
                            path: self.path.to_path_buf(),
                            message: format!(
                                "metadata `{key}` at offset {offset}: bool byte is {other}, expected 0 or 1"
                            ),
                        })
                    }
                }
            }
            ValueType::String => MetadataValue::String(self.string(&what())?),
            ValueType::Array => {
                let type_offset = self.pos;
                let code = self.u32(&format!("item type of `{key}`"))?;
                let item_type =
                    ValueType::from_code(code).ok_or_else(|| GgufError::UnknownValueType {
                        path: self.path.to_path_buf(),
                        what: format!("items of metadata `{key}`"),
                        offset: type_offset,
                        code,
                    })?;
                let count = self.u64(&format!("item count of `{key}`"))?;
                // Reject counts the rest of the file cannot hold before
                // allocating for them.
                self.need(
                    count.saturating_mul(item_type.min_size()),
                    &format!("{count} items of `{key}`"),
                )?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(item_type, key)?);
                }
                MetadataValue::Array(item_type, items)
            }
        })
    }

    fn tensor_info(&mut self, index: u64) -> Result<TensorInfo> {
        let name = self.string(&format!("name of tensor {index}"))?;
        let n_dims = self.u32(&format!("dimension count of tensor `{name}`"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(tensor_error(
                self.path,
                &name,
                format!("has {n_dims} dimensions, expected 1 to {MAX_DIMS}"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64(&format!("dimensions of tensor `{name}`"))?);
        }
        let code = self.u32(&format!("type of tensor `{name}`"))?;
        let ggml_type = GgmlType::from_code(code).ok_or_else(|| GgufError::UnknownTensorType {
            path: self.path.to_path_buf(),
            tensor: name.clone(),
            code,
        })?;
        let offset = self.u64(&format!("data offset of tensor `{name}`"))?;
        if dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .is_none()
        {
            return Err(tensor_error(
                self.path,
                &name,
                format!("dimensions {dims:?} overflow"),
            ));
        }
        if !dims[0].is_multiple_of(ggml_type.block_size()) {
            return Err(tensor_error(
                self.path,
                &name,
                format!(
                    "first dimension {} is not a multiple of the {} block size {}",
                    dims[0],
                    ggml_type,
                    ggml_type.block_size()
                ),
            ));
        }
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        })
    }
}
