//! `loralab export`: a fine-tune out of Loralab without the web UI, in this
//! process, with progress on stderr. `--run N` exports a run of the data
//! dir (its best checkpoint unless `--step`); `--adapter DIR --model M`
//! exports an mlx-lm adapter folder on top of a registered model or a model
//! path; `--model M` alone converts the base (a GGUF to an HF folder, say).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use engine::export::{staging_for, ExportProgress, ExportRequest, ModelCard};

use crate::exports::{check_disk, hub_repo_of, plan_run_export, NewExport};
use crate::store::Store;

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["run", "model"])))]
pub struct ExportArgs {
    /// A run of the data dir.
    #[arg(long)]
    pub run: Option<i64>,
    /// With --run: the checkpoint step (default: the best checkpoint).
    #[arg(long, requires = "run")]
    pub step: Option<i64>,
    /// An mlx-lm adapter folder (adapter_config.json + adapters.safetensors).
    #[arg(long, requires = "model")]
    pub adapter: Option<PathBuf>,
    /// The base (a registered model name, a GGUF file or a model folder):
    /// with --adapter, fused with it; alone, converted as it is.
    #[arg(long, conflicts_with = "run")]
    pub model: Option<String>,
    /// hf (fused safetensors), mlx (fused, MLX-quantized), peft (the adapter
    /// alone), gguf (fused, one GGUF file) or gguf-lora (llama.cpp's adapter).
    #[arg(long)]
    pub format: String,
    /// bf16 (default; f32 for peft), f16 or f32.
    #[arg(long)]
    pub dtype: Option<String>,
    /// mlx: 4 (default) or 8.
    #[arg(long)]
    pub bits: Option<u8>,
    /// gguf: f16 (default), f32, bf16, q8_0, q4_0, q4_1 or same (a GGUF
    /// base's own types, unchanged tensors copied); gguf-lora: f16, f32, q8_0.
    #[arg(long)]
    pub quant: Option<String>,
    /// The folder to create; it must not exist.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &ExportArgs, data_dir: &Path) -> Result<()> {
    if args.out.exists() {
        bail!("--out {} already exists", args.out.display());
    }
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("--out: the folder {} does not exist", parent.display());
    }
    let new = NewExport {
        format: args.format.clone(),
        dtype: args.dtype.clone(),
        bits: args.bits,
        quant: args.quant.clone(),
        step: args.step,
    };
    let request = match args.run {
        Some(run_id) => {
            let (store, runs_dir) = open_data_dir(data_dir)?;
            let planned = plan_run_export(&store, &runs_dir, run_id, &new, args.out.clone())
                .map_err(|e| anyhow!("{e}"))?;
            check_disk(&parent, planned.output_bytes).map_err(|e| anyhow!("{e}"))?;
            planned.request
        }
        None => model_request(args, &new, data_dir)?,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    crate::train_cli::stop_on_interrupt(cancel.clone(), "Interrupted: stopping the export");
    let mut progress = |p: ExportProgress| {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\rtensors {}/{}, {:.1}/{:.1} MB",
            p.tensors_done,
            p.tensors_total,
            p.bytes_done as f64 / 1e6,
            p.bytes_total as f64 / 1e6
        );
        if p.tensors_done == p.tensors_total {
            let _ = writeln!(stderr);
        }
    };
    let report = engine::export::export(&request, &mut progress, &cancel)?;
    println!(
        "Exported {} ({} tensors, {} fused, {:.1} MB) to {} in {:.1} s",
        request.options.format.name(),
        report.tensors,
        report.fused,
        report.bytes as f64 / 1e6,
        request.out.display(),
        report.seconds
    );
    println!(
        "Use it:\n{}",
        engine::export::usage(
            request.options.format,
            &request.out.display().to_string(),
            request
                .card
                .hub_repo
                .as_deref()
                .unwrap_or(&request.card.base_name)
        )
    );
    Ok(())
}

fn open_data_dir(data_dir: &Path) -> Result<(Store, PathBuf)> {
    let (dir, store) = crate::setup::prepare(data_dir, None)?;
    Ok((store, dir.runs()))
}

/// A model named by registration or by path, with `--adapter` if given.
fn model_request(args: &ExportArgs, new: &NewExport, data_dir: &Path) -> Result<ExportRequest> {
    let model = args
        .model
        .as_deref()
        .context("give --run N, or --model M (with --adapter DIR to fuse one)")?;
    let options = new.options().map_err(|e| anyhow!("{e}"))?;
    let (base, hub_repo) = if Path::new(model).exists() {
        (PathBuf::from(model), None)
    } else {
        let (store, _) = open_data_dir(data_dir)?;
        let record = store.model_by_name(model)?.ok_or_else(|| {
            anyhow!(
                "--model `{model}` is neither a path nor a registered model (see `loralab models`)"
            )
        })?;
        let hub = (record.source == "hub").then(|| hub_repo_of(&record.name));
        (PathBuf::from(record.location), hub)
    };
    Ok(ExportRequest {
        base,
        adapter_dir: args.adapter.clone(),
        adapter_weights: None,
        options,
        staging: staging_for(&args.out),
        out: args.out.clone(),
        card: ModelCard {
            title: match &args.adapter {
                Some(adapter) => format!(
                    "{} (fine-tuned with Loralab)",
                    adapter.file_name().unwrap_or_default().to_string_lossy()
                ),
                None => format!("{model} (converted by Loralab)"),
            },
            base_name: model.to_string(),
            hub_repo,
            dataset: None,
            details: Vec::new(),
        },
    })
}
