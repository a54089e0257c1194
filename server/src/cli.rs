//! The command line: `loralab [serve]`, `loralab models`, and the internal
//! commands the server runs as child processes.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use engine::device::DeviceInfo;

use crate::inference::{Inference, InferenceSettings};
use crate::settings::{DataDirArgs, ServeArgs};
use crate::state::AppState;
use crate::store::register_sample_dataset;
use crate::supervisor::{Supervisor, SupervisorSettings};
use crate::{http, setup};

#[derive(Debug, Parser)]
#[command(
    name = "loralab",
    version,
    about = "Fine-tune LLMs on your own machine with MLX, from a browser",
    after_help = "Without a command, `loralab` serves the web UI (same as `loralab serve`)."
)]
struct Cli {
    #[command(flatten)]
    data: DataDirArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the web UI and the JSON API (the default command).
    Serve(ServeArgs),
    /// List the models registered in the data dir.
    Models,
    /// Print the device MLX computes on, as JSON.
    Device,
    /// Fine-tune from an mlx-lm style YAML or TOML config, without the web UI.
    Train(crate::train_cli::TrainArgs),
    /// Internal: one training, driven over stdin/stdout by the server.
    #[command(hide = true)]
    Worker,
    /// Internal: the inference worker (generation with swappable adapters).
    #[command(hide = true)]
    InferenceWorker,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let data_dir = cli.data.resolve();
    let outcome = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(&data_dir, args),
        Command::Models => list_models(&data_dir),
        Command::Device => print_device(),
        Command::Train(args) => crate::train_cli::run(&args, &data_dir),
        Command::Worker => return crate::worker::run(),
        Command::InferenceWorker => return crate::inference::worker::run(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(data_dir: &Path, args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (data_dir, store) = setup::prepare(data_dir, args.default_model.as_deref())?;
        register_sample_dataset(&store, &data_dir)?;
        let device = probe_device().await?;
        let store = Arc::new(store);
        let supervisor = Supervisor::start(
            store.clone(),
            data_dir.runs(),
            SupervisorSettings::from_env()?,
        )?;
        let inference = Inference::start(supervisor.clone(), InferenceSettings::from_env()?);
        let state = Arc::new(AppState {
            store,
            data_dir,
            device,
            supervisor: supervisor.clone(),
            tokenizers: Default::default(),
            inference,
            comparisons: Default::default(),
        });
        crate::compare::resume_unfinished(&state);
        let listener = tokio::net::TcpListener::bind(args.address())
            .await
            .with_context(|| format!("cannot listen on {}", args.address()))?;
        let address = listener.local_addr()?;
        println!("Loralab is serving on http://{address}");
        println!("Data dir: {}", state.data_dir.root.display());
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                // Ends the SSE streams, which graceful shutdown waits for.
                supervisor.shutdown();
            })
            .await
            .context("the HTTP server stopped")
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

/// Asks a child process of this binary which device MLX uses. The server
/// itself never loads MLX state, and this also proves at start that MLX's
/// library loads on this machine.
async fn probe_device() -> Result<DeviceInfo> {
    let exe = std::env::current_exe().context("cannot locate the loralab binary")?;
    let output = tokio::process::Command::new(exe)
        .arg("device")
        .output()
        .await
        .context("cannot start a worker process")?;
    if !output.status.success() {
        bail!(
            "a worker process could not start MLX: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout).context("a worker process answered garbage")
}

fn print_device() -> Result<()> {
    println!("{}", serde_json::to_string(&engine::device::current())?);
    Ok(())
}

fn list_models(data_dir: &Path) -> Result<()> {
    let (_, store) = setup::prepare(data_dir, None)?;
    let models = store.list_models()?;
    if models.is_empty() {
        println!("No models registered in {}.", data_dir.display());
    }
    for model in models {
        println!("{}\t{}\t{}", model.name, model.source, model.location);
    }
    Ok(())
}
