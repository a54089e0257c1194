//! `loralab worker`: one training in a child process. The server writes
//! `Command` JSON lines on stdin; the worker answers with `Event` JSON lines
//! on stdout and writes log text on stderr. MLX lives only here, on the
//! training thread.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use engine::config::TrainConfig;
use engine::models::{build_model, load_hf_folder, Model};
use engine::protocol::{Command, Event};
use engine::tokenizer::TokenizerBundle;
use engine::train::TrainData;

/// Every event also goes to this file in the run dir, before stdout: a
/// server killed mid-run loses what sat unread in the pipe, and whatever
/// comes after, but a restarted server records them from here.
pub const EVENTS_JOURNAL: &str = "events.jsonl";

/// Log text on stderr. Never panics: once the server is gone, stderr is a
/// broken pipe, and the worker must still save its checkpoint.
macro_rules! log {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// A failure before the event stream is set up: one `Failed` line.
fn report_failure(reason: String) {
    let reason = crate::failure::explain(reason);
    if let Ok(line) = serde_json::to_string(&Event::Failed { reason }) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    }
}

/// A model and data ready for `engine::train::train`.
pub struct Prepared {
    pub model: Model,
    pub data: TrainData,
}

/// Loads the model named by `cfg.model` (a GGUF file or an HF folder) and
/// the dataset at `cfg.data`, tokenized and batched with the model's
/// tokenizer. Shared by the worker and `loralab train`.
pub fn prepare(cfg: &TrainConfig, log: &mut dyn FnMut(&str)) -> Result<Prepared> {
    log(&format!("Loading model {}", cfg.model));
    let (model, tokenizer) = load_model(Path::new(&cfg.model), cfg)?;
    log(&format!("Loading dataset {}", cfg.data));
    let data_path = Path::new(&cfg.data);
    if !data_path.exists() {
        bail!(
            "dataset {} does not exist (expected a folder with train.jsonl, valid.jsonl, test.jsonl, or one JSONL file)",
            data_path.display()
        );
    }
    let prepared = engine::data::load_dataset(data_path, &tokenizer, cfg)
        .map_err(|e| anyhow!("dataset {}: {e}", data_path.display()))?;
    log(&prepared.report.to_string());
    Ok(Prepared {
        model,
        data: TrainData {
            train: prepared.train,
            valid: prepared.valid,
            test: prepared.test,
        },
    })
}

fn load_model(path: &Path, cfg: &TrainConfig) -> Result<(Model, TokenizerBundle)> {
    if path.is_dir() {
        let model = load_hf_folder(path, cfg.compute_dtype)?;
        let tokenizer = TokenizerBundle::from_hf_folder(path)?;
        return Ok((model, tokenizer));
    }
    if path.is_file() {
        let mut gguf = engine::gguf::load_gguf_model(path)
            .map_err(|e| anyhow!("model {}: {e}", path.display()))?;
        // Dense f32 is what the CPU computes fast; the legacy quants
        // dequantize exactly.
        if !engine::device::is_gpu() {
            gguf.dequantize_weights()
                .map_err(|e| anyhow!("model {}: {e}", path.display()))?;
        }
        let model = build_model(&gguf.config, gguf.weights, cfg.compute_dtype)
            .map_err(|e| anyhow!("model {}: {e:#}", path.display()))?;
        return Ok((model, gguf.tokenizer));
    }
    bail!(
        "model {} does not exist: give a GGUF file, a model folder (config.json + *.safetensors) or a registered model name",
        path.display()
    )
}

/// Writes events as JSON lines to the journal and on stdout, flushed one
/// by one, and each as mlx-lm's console line on stderr, so the run's log
/// reads like `mlx_lm.lora`'s (and like `loralab train`'s).
struct Emitter {
    journal: Option<std::fs::File>,
    stdout_broken: bool,
    run_dir: PathBuf,
}

impl Emitter {
    fn emit(&mut self, event: &Event) {
        if let Some(text) = crate::train_cli::report_line(event, &self.run_dir) {
            log!("{text}");
        }
        let line = match serde_json::to_string(event) {
            Ok(line) => line,
            Err(error) => {
                log!("cannot encode an event: {error}");
                return;
            }
        };
        if let Some(journal) = &mut self.journal {
            // One write per line, so a reader never sees half of one
            // (short of the worker being killed mid-write).
            if let Err(error) = journal.write_all(format!("{line}\n").as_bytes()) {
                log!("cannot journal an event: {error}");
            }
        }
        if !self.stdout_broken {
            let mut stdout = std::io::stdout().lock();
            let written = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
            self.stdout_broken = written.is_err();
        }
    }
}

/// The worker's main: exit code 0 after `Done` or `Stopped`, 1 after `Failed`.
pub fn run() -> ExitCode {
    let stdin = std::io::stdin();
    let mut first = String::new();
    let command = match stdin.lock().read_line(&mut first) {
        Ok(0) => Err(anyhow!(
            "the server closed the worker's input before sending a command"
        )),
        Ok(_) => serde_json::from_str::<Command>(&first)
            .map_err(|e| anyhow!("the worker got a malformed command: {e}")),
        Err(e) => Err(anyhow!("cannot read the worker's input: {e}")),
    };
    let (config, run_dir, resume) = match command {
        Ok(Command::Train {
            config,
            run_dir,
            resume,
        }) => (config, PathBuf::from(run_dir), resume),
        Ok(Command::Stop) => return ExitCode::SUCCESS,
        Err(error) => {
            let reason = format!("{error:#}");
            log!("{reason}");
            report_failure(reason);
            return ExitCode::FAILURE;
        }
    };
    let journal = run_dir.join(EVENTS_JOURNAL);
    // Of a run's ranks, rank 0 speaks for the run; the others' journal
    // lines would interleave with its own in the shared run folder.
    let journaled = crate::launch::rank_from_env() == 0;
    let mut emitter = Emitter {
        journal: journaled
            .then(|| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&journal)
                    .map_err(|error| log!("cannot open {}: {error}", journal.display()))
                    .ok()
            })
            .flatten(),
        stdout_broken: false,
        run_dir: run_dir.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_input(stop.clone());
    let mut cfg = *config;
    cfg.adapter_path = run_dir.display().to_string();
    // The model stays on this one thread: MLX is not thread-safe.
    let outcome = std::thread::Builder::new()
        .name("train".into())
        .spawn(move || -> (Result<()>, Emitter) {
            let result = train(&cfg, &run_dir, resume, &stop, &mut emitter);
            (result, emitter)
        })
        .context("cannot start the training thread")
        .and_then(|handle| {
            handle
                .join()
                .map_err(|_| anyhow!("the training thread crashed; see the log"))
        });
    match outcome {
        Ok((Ok(()), _)) => ExitCode::SUCCESS,
        Ok((Err(error), mut emitter)) => {
            let reason = format!("{error:#}");
            log!("training failed: {reason}");
            emitter.emit(&Event::Failed {
                reason: crate::failure::explain(reason),
            });
            ExitCode::FAILURE
        }
        Err(error) => {
            let reason = format!("{error:#}");
            log!("{reason}");
            report_failure(reason);
            ExitCode::FAILURE
        }
    }
}

fn train(
    cfg: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    stop: &AtomicBool,
    emitter: &mut Emitter,
) -> Result<()> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create the run folder {}", run_dir.display()))?;
    if let Ok(backend) = std::env::var(crate::launch::BACKEND_ENV) {
        let world = engine::distributed::init(&backend)?;
        log!("Rank {} of {} ({backend})", world.rank(), world.size());
    }
    let Prepared { mut model, data } = prepare(cfg, &mut |line| log!("{line}"))?;
    log!(
        "Training {} steps on {} batches",
        engine::train::total_steps(cfg, data.train.len()),
        data.train.len()
    );
    engine::train::train(
        cfg,
        &mut model,
        &data,
        run_dir,
        resume,
        stop,
        &mut |event| emitter.emit(&event),
    )
}

/// Sets `stop` on a `Stop` command or when stdin closes: a closed stdin
/// means the server is gone, and a checkpoint beats losing the work.
fn watch_input(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Command>(&line) {
                Ok(Command::Stop) => {
                    log!("Stop requested; saving a checkpoint");
                    stop.store(true, Ordering::SeqCst);
                }
                Ok(other) => log!("ignoring a second command: {other:?}"),
                Err(error) => log!("ignoring a malformed command: {error}"),
            }
        }
        if !stop.swap(true, Ordering::SeqCst) {
            log!("The server closed the worker's input; saving a checkpoint");
        }
    });
}
