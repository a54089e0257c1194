//! `loralab train --config FILE`: headless training from an mlx-lm style
//! YAML or TOML config, with mlx-lm's report lines on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use engine::config::TrainConfig;
use engine::protocol::Event;
use serde_json::Value;

use crate::store::Store;
use crate::worker::{prepare, Prepared};

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// An mlx-lm `lora` config: YAML (.yaml/.yml) or TOML (.toml).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Continue from the last checkpoint in `adapter_path`.
    #[arg(long)]
    pub resume: bool,
    /// Train data-parallel on N ranks of this machine (ring over 127.0.0.1;
    /// NCCL, one GPU each, on a CUDA device). `batch_size` is the global
    /// batch: each rank takes batch_size / N rows of it. Default: the
    /// config's `gpus`.
    #[arg(long, conflicts_with = "hostfile")]
    pub ranks: Option<usize>,
    /// Train data-parallel on the hosts of an mlx.launch JSON hostfile
    /// (`[{"ssh": "host", "ips": ["10.0.0.2"]}]`), one rank per host, over
    /// ssh; each needs this Loralab at the same path, and the model and data.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
    /// MLX distributed backend: ring, nccl, jaccl or mpi. With --ranks or
    /// --hostfile, the backend of the ranks; alone, this process is one
    /// rank started by a launcher (mlx.launch sets MLX_RANK and MLX_HOSTFILE).
    #[arg(long)]
    pub backend: Option<String>,
    /// Also write every event (reports, evaluations, checkpoints) to FILE
    /// as a JSON line, as the server's worker sends them: full-precision
    /// losses and timings for scripts.
    #[arg(long)]
    pub events: Option<PathBuf>,
}

/// mlx-lm keys that only configure its logging integrations; accepted so an
/// mlx-lm config runs as is, and ignored.
const IGNORED_KEYS: &[&str] = &["report_to", "project_name", "wandb", "config"];

/// Reads a config file; unknown keys are errors naming the key and file.
pub fn load_config(path: &Path) -> Result<TrainConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let value: Value = match extension {
        "toml" => {
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            serde_json::to_value(table)?
        }
        "yaml" | "yml" => {
            serde_yaml_ng::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
        _ => bail!(
            "{}: unknown config format; name it .yaml, .yml or .toml",
            path.display()
        ),
    };
    config_from_value(value).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// A TrainConfig from a JSON-like map, naming the unknown or bad key.
pub fn config_from_value(value: Value) -> Result<TrainConfig> {
    let Value::Object(mut map) = value else {
        bail!("the config must be a map of mlx-lm keys");
    };
    let known = known_keys();
    // mlx-lm keeps AdamW's weight decay under `optimizer_config`.
    if let Some(optimizer_config) = map.remove("optimizer_config") {
        let decay = optimizer_config
            .get("adamw")
            .and_then(|a| a.get("weight_decay"))
            .cloned();
        if let Some(decay) = decay {
            map.entry("weight_decay").or_insert(decay);
        }
    }
    for key in IGNORED_KEYS {
        map.remove(*key);
    }
    if let Some(key) = map.keys().find(|k| !known.contains(k)) {
        bail!("unknown key `{key}`");
    }
    serde_path_to_error::deserialize(Value::Object(map))
        .map_err(|e| anyhow!("key `{}`: {}", e.path(), e.inner()))
}

/// The top-level keys `TrainConfig` takes.
pub fn known_keys() -> Vec<String> {
    match serde_json::to_value(TrainConfig::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

pub fn run(args: &TrainArgs, data_dir: &Path) -> Result<()> {
    let mut cfg = load_config(&args.config)?;
    if let Some(set) = &cfg.machine_set {
        bail!(
            "{}: machine_set `{set}` names a machine set of the server's Machines page; headless, pass its hostfile with --hostfile",
            args.config.display()
        );
    }
    let launches = args.ranks.is_some() || args.hostfile.is_some();
    if launches || (args.backend.is_none() && cfg.gpus > 1) {
        return crate::launch::run(args, &cfg, data_dir);
    }
    resolve_names(&mut cfg, data_dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    let leader = match &args.backend {
        Some(backend) => {
            let world = engine::distributed::init(backend)?;
            crate::launch::stop_when_launcher_goes(stop.clone());
            world.is_leader()
        }
        None => true,
    };
    // Every rank gets the terminal's Ctrl-C; rank 0 says it once.
    let message = if leader {
        "Interrupted: saving a checkpoint (resume with --resume)"
    } else {
        ""
    };
    stop_on_interrupt(stop.clone(), message);
    // Rank 0 prints the run; the others' stdout would repeat it. A write
    // to a launcher gone must not end the rank before its checkpoint.
    let say = |line: &str| {
        if leader {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    };
    let Prepared { mut model, data } = prepare(&cfg, &mut |line| say(line))?;
    let adapter_path = PathBuf::from(&cfg.adapter_path);
    let total = engine::train::total_steps(&cfg, data.train.len());
    say(&format!("Starting training..., iters: {total}"));
    let mut events = match &args.events {
        Some(path) if leader => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write the events file {}", path.display()))?,
        ),
        _ => None,
    };
    let mut failed = None;
    engine::train::train(
        &cfg,
        &mut model,
        &data,
        &adapter_path,
        args.resume,
        &stop,
        &mut |event| {
            if let Event::Failed { reason } = &event {
                failed = Some(reason.clone());
            }
            if let Some(line) = report_line(&event, &adapter_path) {
                say(&line);
            }
            if let Some(file) = &mut events {
                if let Ok(line) = serde_json::to_string(&event) {
                    let _ = writeln!(file, "{line}");
                }
            }
        },
    )?;
    match failed {
        Some(reason) => bail!(reason),
        None => Ok(()),
    }
}

/// A model or dataset that is not a path may be a name registered in the
/// data dir; a model may also be a Hub repo id (`org/name`,
/// `org/name/file.gguf`, `@revision`), pulled into the HF cache first (or,
/// offline, found there).
fn resolve_names(cfg: &mut TrainConfig, data_dir: &Path) -> Result<()> {
    if !Path::new(&cfg.model).exists() && crate::hub::HubSpec::looks_like(&cfg.model) {
        let spec = crate::hub::HubSpec::parse(&cfg.model).map_err(|e| anyhow!("model: {e}"))?;
        let pulled =
            crate::hub::console::pull_with_stderr(&spec).map_err(|e| anyhow!("model: {e:#}"))?;
        cfg.model = pulled.path.display().to_string();
    }
    let model_missing = !Path::new(&cfg.model).exists();
    let data_missing = !Path::new(&cfg.data).exists();
    let database = crate::setup::DataDir {
        root: data_dir.to_path_buf(),
    }
    .database();
    if !(model_missing || data_missing) || !database.exists() {
        return Ok(());
    }
    let store = Store::open(&database)?;
    if model_missing {
        if let Some(model) = store.model_by_name(&cfg.model)? {
            cfg.model = model.location;
        }
    }
    if data_missing {
        if let Some(dataset) = store.dataset_by_name(&cfg.data)? {
            cfg.data = dataset.directory;
        }
    }
    Ok(())
}

/// Ctrl-C sets `stop` (and says `message`): the trainer checkpoints at the
/// next step and returns, an export removes its staging folder.
pub(crate) fn stop_on_interrupt(stop: Arc<AtomicBool>, message: &'static str) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                if !message.is_empty() {
                    eprintln!("{message}");
                }
                stop.store(true, Ordering::SeqCst);
            }
        });
    });
}

/// mlx-lm's console line for an event.
pub fn report_line(event: &Event, adapter_path: &Path) -> Option<String> {
    Some(match event {
        Event::Started {
            trainable_parameters,
            total_parameters,
            start_step,
            ..
        } => {
            let percent = 100.0 * *trainable_parameters as f64 / (*total_parameters).max(1) as f64;
            let mut line = format!(
                "Trainable parameters: {percent:.3}% ({:.3}M/{:.3}M)",
                *trainable_parameters as f64 / 1e6,
                *total_parameters as f64 / 1e6
            );
            if *start_step > 0 {
                line.push_str(&format!("\nResuming after iter {start_step}"));
            }
            line
        }
        Event::Report {
            step,
            train_loss,
            learning_rate,
            it_per_sec,
            tokens_per_sec,
            trained_tokens,
            peak_memory_gb,
            ..
        } => format!(
            "Iter {step}: Train loss {train_loss:.3}, Learning Rate {}, It/sec {it_per_sec:.3}, \
             Tokens/sec {tokens_per_sec:.3}, Trained Tokens {trained_tokens}, Peak mem {peak_memory_gb:.3} GB",
            python_exp(*learning_rate)
        ),
        Event::Eval {
            step,
            val_loss,
            val_time_sec,
        } => format!("Iter {step}: Val loss {val_loss:.3}, Val took {val_time_sec:.3}s"),
        Event::Ranks { step, ranks } => {
            let figures: Vec<String> = ranks
                .iter()
                .map(|r| {
                    format!(
                        "rank {} {:.3} tokens/sec, peak mem {:.3} GB",
                        r.rank, r.tokens_per_sec, r.peak_memory_gb
                    )
                })
                .collect();
            format!("Iter {step}: {}", figures.join("; "))
        }
        Event::Checkpoint { step, path } => format!(
            "Iter {step}: Saved adapter weights to {} and {path}.",
            adapter_path.join("adapters.safetensors").display()
        ),
        Event::CheckpointRemoved { step, path } => {
            format!("Iter {step}: Removed {path} (keep_checkpoints).")
        }
        Event::Stopped { step } => {
            format!("Stopped after iter {step}; continue with --resume.")
        }
        Event::Done {
            test_loss,
            test_perplexity,
            reason,
            ..
        } => {
            let mut line = match reason {
                Some(reason) => format!(
                    "Training {reason}; the best checkpoint is the adapter: {}.",
                    adapter_path.join("adapters.safetensors").display()
                ),
                None => format!(
                    "Saved final weights to {}.",
                    adapter_path.join("adapters.safetensors").display()
                ),
            };
            if let (Some(loss), Some(ppl)) = (test_loss, test_perplexity) {
                line.push_str(&format!("\nTest loss {loss:.3}, Test ppl {ppl:.3}."));
            }
            line
        }
        Event::Log { message } => message.clone(),
        Event::Failed { .. } => return None,
    })
}

/// Python's `{:.3e}`: a signed, two-digit exponent (`1.000e-05`).
pub fn python_exp(value: f64) -> String {
    let rust = format!("{value:.3e}");
    match rust.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => rust,
    }
}
