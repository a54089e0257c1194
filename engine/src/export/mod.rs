//! Taking a fine-tune out: a base model with an adapter fused in, as a
//! Hugging Face folder (`hf`), an MLX-quantized one (`mlx`) or a GGUF file
//! for llama.cpp (`gguf`), or the adapter alone in PEFT's layout (`peft`)
//! or llama.cpp's (`gguf-lora`).
//!
//! `plan` reads headers only and refuses what cannot be exported before
//! anything is written; `ExportPlan::write` then streams the output one
//! tensor at a time (read the base tensor, dequantize, fuse, convert, write,
//! drop) into a staging folder that is renamed to the destination only when
//! whole, so a crash, a cancel or a full disk leaves no half-made export.

mod adapter;
mod base;
mod files;
pub mod gguf;
mod safetensors;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use mlx_rs::{Array, Dtype};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use adapter::Adapter;
pub use base::BaseModel;
pub use files::usage;
pub use gguf::GgufQuant;
use safetensors::{plan_shards, ShardedWriter, StDtype, TensorEntry, MAX_SHARD_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Fused, Hugging Face safetensors (transformers, vLLM, mlx-lm).
    Hf,
    /// Fused and MLX-quantized (mlx-community's layout, mlx-lm).
    Mlx,
    /// The adapter alone, for PEFT on the unfused base.
    Peft,
    /// Fused, one GGUF file (llama.cpp, Ollama, LM Studio).
    Gguf,
    /// The adapter alone as llama.cpp's `--lora` GGUF.
    #[serde(rename = "gguf-lora")]
    GgufLora,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 5] = [
        ExportFormat::Hf,
        ExportFormat::Mlx,
        ExportFormat::Peft,
        ExportFormat::Gguf,
        ExportFormat::GgufLora,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Hf => "hf",
            ExportFormat::Mlx => "mlx",
            ExportFormat::Peft => "peft",
            ExportFormat::Gguf => "gguf",
            ExportFormat::GgufLora => "gguf-lora",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExportDtype {
    #[default]
    Bf16,
    F16,
    F32,
}

impl ExportDtype {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "bf16" | "bfloat16" => Some(Self::Bf16),
            "f16" | "float16" => Some(Self::F16),
            "f32" | "float32" => Some(Self::F32),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
            Self::F32 => "f32",
        }
    }

    /// The name `config.json`'s `torch_dtype` uses.
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::Bf16 => "bfloat16",
            Self::F16 => "float16",
            Self::F32 => "float32",
        }
    }

    fn mlx(self) -> Dtype {
        match self {
            Self::Bf16 => Dtype::Bfloat16,
            Self::F16 => Dtype::Float16,
            Self::F32 => Dtype::Float32,
        }
    }

    fn safetensors(self) -> StDtype {
        match self {
            Self::Bf16 => StDtype::Bf16,
            Self::F16 => StDtype::F16,
            Self::F32 => StDtype::F32,
        }
    }
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// Float dtype of the weights (and of an MLX export's scales).
    #[serde(default)]
    pub dtype: ExportDtype,
    /// MLX export: 4 or 8.
    #[serde(default = "default_bits")]
    pub bits: u8,
    #[serde(default = "default_group_size")]
    pub group_size: usize,
    /// GGUF exports: the tensor type.
    #[serde(default)]
    pub quant: GgufQuant,
}

fn default_bits() -> u8 {
    4
}

fn default_group_size() -> usize {
    64
}

impl ExportOptions {
    pub fn new(format: ExportFormat) -> Self {
        Self {
            format,
            dtype: ExportDtype::default(),
            bits: default_bits(),
            group_size: default_group_size(),
            quant: GgufQuant::default(),
        }
    }

    /// Errors name the option at fault.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.format == ExportFormat::Mlx && ![4, 8].contains(&self.bits) {
            return Err(("bits", format!("bits must be 4 or 8, got {}", self.bits)));
        }
        if self.format == ExportFormat::Mlx && ![32, 64, 128].contains(&self.group_size) {
            return Err((
                "group_size",
                format!("group_size must be 32, 64 or 128, got {}", self.group_size),
            ));
        }
        Ok(())
    }
}

/// What the model card says besides the format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub title: String,
    /// The base as Loralab knows it (registered name).
    pub base_name: String,
    /// The Hub repo the base came from, when it did: PEFT's
    /// `base_model_name_or_path` and the card's `base_model`.
    pub hub_repo: Option<String>,
    pub dataset: Option<String>,
    /// Settings and losses, as (label, value) rows.
    pub details: Vec<(String, String)>,
}

/// One export: the base, the adapter (a folder with `adapter_config.json`;
/// `adapter_weights` a checkpoint file to use instead of its own weights;
/// none: the base alone, converted), and where the result goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRequest {
    pub base: PathBuf,
    #[serde(default)]
    pub adapter_dir: Option<PathBuf>,
    #[serde(default)]
    pub adapter_weights: Option<PathBuf>,
    pub options: ExportOptions,
    /// The finished export's folder; it must not exist.
    pub out: PathBuf,
    /// Where the export is written until it is whole (created fresh,
    /// renamed to `out` at the end, removed on failure).
    pub staging: PathBuf,
    #[serde(default)]
    pub card: ModelCard,
}

/// Progress while writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportProgress {
    pub tensors_done: usize,
    pub tensors_total: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportReport {
    /// Files of the export with their sizes, by name.
    pub files: Vec<(String, u64)>,
    pub bytes: u64,
    pub tensors: usize,
    /// Base tensors the adapter changed.
    pub fused: usize,
    /// GGUF exports: tensors copied byte for byte from a GGUF base.
    #[serde(default)]
    pub copied: usize,
    /// GGUF exports: tensors written from floats (converted, quantized
    /// again after fusing, or the adapter's).
    #[serde(default)]
    pub requantized: usize,
    pub seconds: f64,
}

/// The error a cancelled export ends with.
#[derive(Debug, thiserror::Error)]
#[error("the export was cancelled")]
pub struct Cancelled;

/// How one output tensor is made.
#[derive(Debug, Clone, Copy)]
enum Make {
    /// Base tensor `i`, fused if adapted, in the export dtype.
    Float(usize),
    /// Base tensor `i`, fused, MLX-quantized: part 0 weight, 1 scales, 2 biases.
    Quantized(usize, u8),
}

/// Everything decided before writing: what each file holds and its size.
pub struct ExportPlan {
    base: BaseModel,
    adapter: Option<Adapter>,
    options: ExportOptions,
    entries: Vec<TensorEntry>,
    makes: Vec<Make>,
    /// GGUF exports: the file's header and how each tensor is made.
    gguf: Option<gguf::GgufPlan>,
    /// Bytes of tensor data the export writes.
    pub bytes_total: u64,
}

/// Reads the base and adapter headers and decides the output; refuses an
/// adapter that does not fit the base and options that cannot be written.
pub fn plan(request: &ExportRequest) -> Result<ExportPlan> {
    let options = request.options;
    options.check().map_err(|(_, message)| anyhow!(message))?;
    let base = BaseModel::open(&request.base)?;
    let adapter = match &request.adapter_dir {
        Some(dir) => Some(Adapter::open(dir, request.adapter_weights.as_deref())?),
        None if options.format == ExportFormat::Peft => {
            bail!("a PEFT export needs an adapter")
        }
        None if options.format == ExportFormat::GgufLora => {
            bail!("a GGUF LoRA export needs an adapter")
        }
        None => None,
    };
    if let Some(adapter) = &adapter {
        if adapter.is_full()
            && matches!(options.format, ExportFormat::Peft | ExportFormat::GgufLora)
        {
            bail!(
                "a full fine-tune has no adapter to write alone (`{}`): export `hf`, `mlx` or `gguf`, whose weights are the trained ones",
                options.format.name()
            );
        }
        adapter.check_against(|name| {
            base.tensors
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.shape.clone())
        })?;
    }
    let mut entries = Vec::new();
    let mut makes = Vec::new();
    let mut gguf_plan = None;
    match options.format {
        ExportFormat::Gguf => {
            gguf_plan = Some(gguf::plan_model(
                &base,
                adapter.as_ref(),
                options.quant,
                &request.card,
            )?);
        }
        ExportFormat::GgufLora => {
            let adapter = adapter.as_ref().expect("checked above");
            gguf_plan = Some(gguf::plan_lora(
                &base,
                adapter,
                options.quant,
                &request.card,
            )?);
        }
        ExportFormat::Peft => {
            let adapter = adapter.as_ref().expect("checked above");
            for (module, layer) in &adapter.layers {
                let prefix = format!("base_model.model.{module}");
                let (a, b) = (layer.lora_a.shape(), layer.lora_b.shape());
                let dtype = options.dtype.safetensors();
                let mut push = |name: String, shape: Vec<usize>| {
                    entries.push(TensorEntry { name, shape, dtype });
                };
                push(
                    format!("{prefix}.lora_A.weight"),
                    vec![a[1] as usize, a[0] as usize],
                );
                push(
                    format!("{prefix}.lora_B.weight"),
                    vec![b[1] as usize, b[0] as usize],
                );
                if layer.magnitude.is_some() {
                    push(
                        format!("{prefix}.lora_magnitude_vector"),
                        vec![b[1] as usize],
                    );
                }
            }
        }
        ExportFormat::Hf | ExportFormat::Mlx => {
            let tied = base.config.tie_word_embeddings;
            for (i, tensor) in base.tensors.iter().enumerate() {
                if tied && tensor.name == "lm_head.weight" {
                    continue;
                }
                let quantize = options.format == ExportFormat::Mlx
                    && tensor.shape.len() == 2
                    && tensor.name.ends_with(".weight")
                    && tensor.shape[1].is_multiple_of(options.group_size);
                if !quantize {
                    entries.push(TensorEntry {
                        name: tensor.name.clone(),
                        shape: tensor.shape.clone(),
                        dtype: options.dtype.safetensors(),
                    });
                    makes.push(Make::Float(i));
                    continue;
                }
                let module = tensor.name.strip_suffix(".weight").expect("checked");
                let (out, inner) = (tensor.shape[0], tensor.shape[1]);
                let groups = inner / options.group_size;
                let words = inner * usize::from(options.bits) / 32;
                entries.push(TensorEntry {
                    name: tensor.name.clone(),
                    shape: vec![out, words],
                    dtype: StDtype::U32,
                });
                for part in ["scales", "biases"] {
                    entries.push(TensorEntry {
                        name: format!("{module}.{part}"),
                        shape: vec![out, groups],
                        dtype: options.dtype.safetensors(),
                    });
                }
                makes.extend((0..3).map(|part| Make::Quantized(i, part)));
            }
        }
    }
    let bytes_total = match &gguf_plan {
        Some(plan) => plan.bytes_total(),
        None => entries.iter().map(TensorEntry::n_bytes).sum(),
    };
    Ok(ExportPlan {
        base,
        adapter,
        options,
        entries,
        makes,
        gguf: gguf_plan,
        bytes_total,
    })
}

impl ExportPlan {
    pub fn base(&self) -> &BaseModel {
        &self.base
    }

    pub fn adapter(&self) -> Option<&Adapter> {
        self.adapter.as_ref()
    }

    /// Peak memory of writing, in bytes: the largest base tensor as f32,
    /// about three working copies of it (read, fused, converted), plus the
    /// adapter.
    pub fn memory_estimate(&self) -> u64 {
        let largest = self
            .base
            .tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64 * 4)
            .max()
            .unwrap_or(0);
        let adapter: u64 = self
            .adapter
            .iter()
            .flat_map(|a| a.layers.values())
            .map(|l| (l.lora_a.size() + l.lora_b.size()) as u64 * 4)
            .chain(
                self.adapter
                    .iter()
                    .flat_map(|a| a.replaced.values())
                    .map(|w| w.size() as u64 * 4),
            )
            .sum();
        largest * 3 + adapter
    }

    /// Writes the export into `request.staging` and renames it to
    /// `request.out` when whole. On any error (a cancel included) the
    /// staging folder is removed.
    pub fn write(
        self,
        request: &ExportRequest,
        progress: &mut dyn FnMut(ExportProgress),
        cancel: &AtomicBool,
    ) -> Result<ExportReport> {
        if request.out.exists() {
            bail!("{} already exists", request.out.display());
        }
        if request.staging.exists() {
            std::fs::remove_dir_all(&request.staging).with_context(|| {
                format!(
                    "cannot clear the staging folder {}",
                    request.staging.display()
                )
            })?;
        }
        std::fs::create_dir_all(&request.staging).with_context(|| {
            format!(
                "cannot create the staging folder {}",
                request.staging.display()
            )
        })?;
        let result = self.write_into(request, progress, cancel);
        let report = match result {
            Ok(report) => report,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&request.staging);
                return Err(error);
            }
        };
        if let Err(error) = std::fs::rename(&request.staging, &request.out) {
            let _ = std::fs::remove_dir_all(&request.staging);
            bail!(
                "cannot move the export to {}: {error}",
                request.out.display()
            );
        }
        Ok(report)
    }

    fn write_into(
        &self,
        request: &ExportRequest,
        progress: &mut dyn FnMut(ExportProgress),
        cancel: &AtomicBool,
    ) -> Result<ExportReport> {
        let started = Instant::now();
        let dir = &request.staging;
        // An HF base's tokenizer files are copied as they are; a GGUF's are
        // built from its metadata. A GGUF export carries its own.
        let gguf_format = matches!(
            self.options.format,
            ExportFormat::Gguf | ExportFormat::GgufLora
        );
        let tokenizer = match self.base.is_gguf() && !gguf_format {
            true => Some(self.base.tokenizer()?),
            false => None,
        };
        let tensors_total = match &self.gguf {
            Some(plan) => plan.specs.len(),
            None => self.entries.len(),
        };
        let mut state = ExportProgress {
            tensors_done: 0,
            tensors_total,
            bytes_done: 0,
            bytes_total: self.bytes_total,
        };
        progress(state);
        let mut written = |_: usize, bytes: u64| -> Result<()> {
            if cancel.load(Ordering::SeqCst) {
                return Err(Cancelled.into());
            }
            state.tensors_done += 1;
            state.bytes_done += bytes;
            progress(state);
            Ok(())
        };
        let mut fused = 0;
        let mut counts = gguf::GgufCounts::default();
        let mut lm_studio_file = None;
        match self.options.format {
            ExportFormat::Gguf | ExportFormat::GgufLora => {
                let plan = self.gguf.as_ref().expect("planned for GGUF formats");
                let mut i = 0;
                counts = gguf::write(
                    plan,
                    dir,
                    &self.base,
                    self.adapter.as_ref(),
                    &|t| self.fused(t),
                    &mut |bytes| {
                        i += 1;
                        written(i, bytes)
                    },
                )?;
                fused = counts.fused;
                let modelfile = gguf::modelfile(plan, &self.base, &request.card)?;
                let path = dir.join(gguf::MODELFILE);
                std::fs::write(&path, modelfile)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                if self.options.format == ExportFormat::Gguf {
                    lm_studio_file = Some(gguf::lay_out_for_lm_studio(dir, plan, &request.card)?);
                }
            }
            ExportFormat::Peft => {
                let tensors = self.peft_tensors()?;
                let path = dir.join("adapter_model.safetensors");
                safetensors::write_small(&path, &tensors)?;
                for (i, (entry, _)) in tensors.iter().enumerate() {
                    written(i, entry.n_bytes())?;
                }
                files::write_peft_config(dir, &self.peft_config(&request.card))?;
            }
            ExportFormat::Hf | ExportFormat::Mlx => {
                let shards = plan_shards(&self.entries, MAX_SHARD_BYTES, "model");
                let writer = ShardedWriter::new(dir, &self.entries, shards);
                // A quantized matrix is made once and its three parts are
                // written one after the other.
                let mut pending: Vec<Vec<u8>> = Vec::new();
                let mut data = |i: usize| -> Result<Vec<u8>> {
                    if cancel.load(Ordering::SeqCst) {
                        return Err(Cancelled.into());
                    }
                    match self.makes[i] {
                        Make::Float(t) => {
                            let (weight, changed) = self.fused(t)?;
                            fused += usize::from(changed);
                            array_bytes(&weight.as_dtype(self.options.dtype.mlx())?)
                        }
                        Make::Quantized(t, 0) => {
                            let (weight, changed) = self.fused(t)?;
                            fused += usize::from(changed);
                            let weight = weight.as_dtype(self.options.dtype.mlx())?;
                            let (w, scales, biases) = mlx_rs::ops::quantize(
                                &weight,
                                self.options.group_size as i32,
                                i32::from(self.options.bits),
                            )?;
                            pending = vec![array_bytes(&biases)?, array_bytes(&scales)?];
                            array_bytes(&w)
                        }
                        Make::Quantized(..) => pending
                            .pop()
                            .ok_or_else(|| anyhow!("quantized parts out of order")),
                    }
                };
                writer.write(&mut data, &mut written)?;
                let config =
                    files::model_config_json(&self.base, tokenizer.as_ref(), &self.options);
                files::write_config(dir, &config)?;
                files::write_tokenizer_files(dir, &self.base, tokenizer.as_ref())?;
            }
        }
        files::write_card(dir, &request.card, &self.options, self.adapter.is_some())?;
        let mut listed = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            // Folders hold links to files listed here (LM Studio's layout).
            if entry.file_type()?.is_file() {
                listed.push((
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.metadata()?.len(),
                ));
            }
        }
        listed.sort();
        let bytes = listed.iter().map(|(_, size)| size).sum();
        if let Some(link) = lm_studio_file {
            let size = std::fs::metadata(dir.join(&link))?.len();
            listed.push((link, size));
        }
        Ok(ExportReport {
            bytes,
            files: listed,
            tensors: tensors_total,
            fused: match self.options.format {
                ExportFormat::Peft | ExportFormat::GgufLora => 0,
                _ => fused,
            },
            copied: counts.copied,
            requantized: counts.encoded,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Base tensor `i` as f32 with the adapter folded in, and whether the
    /// adapter changed it.
    fn fused(&self, i: usize) -> Result<(Array, bool)> {
        let tensor = &self.base.tensors[i];
        let trained = self
            .adapter
            .as_ref()
            .and_then(|a| a.replaced.get(&tensor.name));
        if let Some(weight) = trained {
            // A full fine-tune's weight is the tensor itself.
            return Ok((weight.clone(), true));
        }
        let weight = self.base.dense(i)?;
        let adapted = self
            .adapter
            .as_ref()
            .and_then(|a| Some((a, a.layer_for(&tensor.name)?)));
        match adapted {
            Some((adapter, layer)) => {
                let fused = adapter.fuse(layer, &weight)?;
                fused.eval()?;
                Ok((fused, true))
            }
            None => Ok((weight, false)),
        }
    }

    /// The adapter of a PEFT export (checked by `plan`).
    fn peft_adapter(&self) -> &Adapter {
        self.adapter.as_ref().expect("a PEFT plan has an adapter")
    }

    fn peft_tensors(&self) -> Result<Vec<(TensorEntry, Vec<u8>)>> {
        let dtype = self.options.dtype.mlx();
        let mut arrays = Vec::new();
        for layer in self.peft_adapter().layers.values() {
            arrays.push(layer.lora_a.t().as_dtype(dtype)?);
            arrays.push(layer.lora_b.t().as_dtype(dtype)?);
            if let Some(m) = &layer.magnitude {
                arrays.push(m.as_dtype(dtype)?);
            }
        }
        self.entries
            .iter()
            .zip(arrays)
            .map(|(entry, array)| Ok((entry.clone(), array_bytes(&array)?)))
            .collect()
    }

    /// PEFT's `adapter_config.json`: mlx-lm's `scale` is PEFT's
    /// `lora_alpha / r`.
    fn peft_config(&self, card: &ModelCard) -> serde_json::Value {
        let adapter = self.peft_adapter();
        let settings = &adapter.settings;
        let base = card
            .hub_repo
            .clone()
            .unwrap_or_else(|| card.base_name.clone());
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base,
            "r": settings.rank,
            "lora_alpha": f64::from(settings.scale) * settings.rank as f64,
            "lora_dropout": settings.dropout,
            "target_modules": adapter.target_modules(),
            "layers_to_transform": adapter.layer_indices(),
            "layers_pattern": "layers",
            "use_dora": settings.dora,
            "use_rslora": false,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "revision": null,
        })
    }
}

/// An array's bytes in safetensors' layout (row-major, little-endian).
fn array_bytes(array: &Array) -> Result<Vec<u8>> {
    let array = array.contiguous()?;
    array.eval()?;
    let slice_error = |e| anyhow!("cannot read a tensor's values: {e}");
    Ok(match array.dtype() {
        Dtype::Float32 => flat(
            array.try_as_slice::<f32>().map_err(slice_error)?,
            f32::to_le_bytes,
        ),
        Dtype::Uint32 => flat(
            array.try_as_slice::<u32>().map_err(slice_error)?,
            u32::to_le_bytes,
        ),
        Dtype::Bfloat16 => flat(
            array.try_as_slice::<half::bf16>().map_err(slice_error)?,
            half::bf16::to_le_bytes,
        ),
        Dtype::Float16 => flat(
            array.try_as_slice::<half::f16>().map_err(slice_error)?,
            half::f16::to_le_bytes,
        ),
        other => bail!("cannot write a {other:?} tensor"),
    })
}

fn flat<T: Copy, const N: usize>(values: &[T], bytes: fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for &v in values {
        out.extend_from_slice(&bytes(v));
    }
    out
}

/// The folder beside `out` an export is staged in.
pub fn staging_for(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    out.with_file_name(format!(".{name}.staging"))
}

/// Plans and writes `request`.
pub fn export(
    request: &ExportRequest,
    progress: &mut dyn FnMut(ExportProgress),
    cancel: &AtomicBool,
) -> Result<ExportReport> {
    plan(request)?.write(request, progress, cancel)
}
