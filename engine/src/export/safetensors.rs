//! A streaming safetensors writer: the header is written from the tensors'
//! shapes and dtypes before any data, then each tensor's bytes follow in
//! order, so a model is written one tensor at a time and never held whole.
//! Shards (at most `max_shard_bytes` of data each) are named as
//! transformers names them, with `model.safetensors.index.json`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

/// Hugging Face's shard limit (`max_shard_size="5GB"`).
pub const MAX_SHARD_BYTES: u64 = 5_000_000_000;
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A tensor's dtype as safetensors names it, with its element size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StDtype {
    F32,
    F16,
    Bf16,
    U32,
}

impl StDtype {
    pub fn name(self) -> &'static str {
        match self {
            StDtype::F32 => "F32",
            StDtype::F16 => "F16",
            StDtype::Bf16 => "BF16",
            StDtype::U32 => "U32",
        }
    }

    pub fn size(self) -> u64 {
        match self {
            StDtype::F32 | StDtype::U32 => 4,
            StDtype::F16 | StDtype::Bf16 => 2,
        }
    }
}

/// One tensor to be written: its name, shape and dtype.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: StDtype,
}

impl TensorEntry {
    pub fn n_bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.dtype.size()
    }
}

/// Which tensors go to which file.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    /// File names, in order, with the indices (into the entries) each holds.
    pub shards: Vec<(String, Vec<usize>)>,
    pub total_bytes: u64,
}

/// Splits `entries`, in order, into shards of at most `max_bytes` of data
/// (a tensor larger than that gets a shard of its own), in files named
/// `prefix-0000K-of-0000N.safetensors`.
pub fn plan_shards(entries: &[TensorEntry], max_bytes: u64, prefix: &str) -> ShardPlan {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        let size = entry.n_bytes();
        match groups.last_mut() {
            Some(group) if current + size <= max_bytes => {
                group.push(i);
                current += size;
            }
            _ => {
                groups.push(vec![i]);
                current = size;
            }
        }
    }
    let n = groups.len().max(1);
    let shards = groups
        .into_iter()
        .enumerate()
        .map(|(k, group)| {
            (
                format!("{prefix}-{:05}-of-{n:05}.safetensors", k + 1),
                group,
            )
        })
        .collect();
    ShardPlan {
        shards,
        total_bytes: entries.iter().map(TensorEntry::n_bytes).sum(),
    }
}

/// The header of one file: a JSON object of every tensor's dtype, shape and
/// byte range, padded with spaces to a multiple of 8 bytes.
fn header_bytes(entries: &[&TensorEntry], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut map = Map::new();
    if !metadata.is_empty() {
        map.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0u64;
    for entry in entries {
        let end = offset + entry.n_bytes();
        map.insert(
            entry.name.clone(),
            json!({"dtype": entry.dtype.name(), "shape": entry.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = Value::Object(map).to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    text
}

/// Writes the planned shards into `dir`, asking `data` for each tensor's
/// bytes in entry order; `written` hears of every tensor written.
pub struct ShardedWriter<'a> {
    dir: PathBuf,
    entries: &'a [TensorEntry],
    plan: ShardPlan,
    metadata: BTreeMap<String, String>,
}

impl<'a> ShardedWriter<'a> {
    pub fn new(dir: &Path, entries: &'a [TensorEntry], plan: ShardPlan) -> Self {
        let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        Self {
            dir: dir.to_path_buf(),
            entries,
            plan,
            metadata,
        }
    }

    /// Writes every shard and the index. `data(i)` must return exactly
    /// `entries[i].n_bytes()` bytes.
    pub fn write(
        &self,
        data: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
        written: &mut dyn FnMut(usize, u64) -> Result<()>,
    ) -> Result<()> {
        let mut weight_map = Map::new();
        for (file_name, indices) in &self.plan.shards {
            let path = self.dir.join(file_name);
            let file =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let shard: Vec<&TensorEntry> = indices.iter().map(|&i| &self.entries[i]).collect();
            let header = header_bytes(&shard, &self.metadata);
            let io = |e: std::io::Error| anyhow!("cannot write {}: {e}", path.display());
            out.write_all(&(header.len() as u64).to_le_bytes())
                .map_err(io)?;
            out.write_all(&header).map_err(io)?;
            for &i in indices {
                let entry = &self.entries[i];
                let bytes = data(i)?;
                if bytes.len() as u64 != entry.n_bytes() {
                    bail!(
                        "tensor `{}`: {} bytes for shape {:?} {}, expected {}",
                        entry.name,
                        bytes.len(),
                        entry.shape,
                        entry.dtype.name(),
                        entry.n_bytes()
                    );
                }
                out.write_all(&bytes).map_err(io)?;
                weight_map.insert(entry.name.clone(), json!(file_name));
                written(i, bytes.len() as u64)?;
            }
            let file = out.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
        }
        let index = json!({
            "metadata": {"total_size": self.plan.total_bytes},
            "weight_map": weight_map,
        });
        let path = self.dir.join(INDEX_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&index)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// One safetensors file written whole from small tensors (adapters).
pub fn write_small(path: &Path, tensors: &[(TensorEntry, Vec<u8>)]) -> Result<()> {
    let entries: Vec<&TensorEntry> = tensors.iter().map(|(e, _)| e).collect();
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let header = header_bytes(&entries, &metadata);
    let mut bytes = Vec::with_capacity(8 + header.len());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for (entry, data) in tensors {
        if data.len() as u64 != entry.n_bytes() {
            bail!("tensor `{}`: wrong byte count", entry.name);
        }
        bytes.extend_from_slice(data);
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, shape: &[usize]) -> TensorEntry {
        TensorEntry {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: StDtype::F32,
        }
    }

    #[test]
    fn shards_hold_at_most_the_limit_and_a_big_tensor_stands_alone() {
        let entries = [
            entry("a", &[10]),
            entry("b", &[10]),
            entry("c", &[30]),
            entry("d", &[5]),
        ];
        let plan = plan_shards(&entries, 80, "model");
        let groups: Vec<&Vec<usize>> = plan.shards.iter().map(|(_, g)| g).collect();
        assert_eq!(groups, [&vec![0, 1], &vec![2], &vec![3]]);
        assert_eq!(plan.shards[0].0, "model-00001-of-00003.safetensors");
        assert_eq!(plan.total_bytes, 220);
    }

    #[test]
    fn headers_are_padded_to_eight_bytes_with_offsets_in_order() {
        let (a, b) = (entry("a", &[2, 3]), entry("b", &[1]));
        let header = header_bytes(&[&a, &b], &BTreeMap::new());
        assert_eq!(header.len() % 8, 0);
        let value: Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(value["a"]["data_offsets"], json!([0, 24]));
        assert_eq!(value["b"]["data_offsets"], json!([24, 28]));
        assert_eq!(value["a"]["shape"], json!([2, 3]));
    }
}
