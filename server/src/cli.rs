//! The command line: `loralab [serve]`, `loralab models`, and the internal
//! commands the server runs as child processes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use engine::device::DeviceInfo;

use crate::access::{self, Access, TokenKind, TokenStore};
use crate::exports::Exports;
use crate::hub::pulls::Pulls;
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
    /// List the models registered in the data dir (`models pull`: fetch one
    /// from the Hugging Face Hub).
    Models {
        #[command(subcommand)]
        command: Option<ModelsCommand>,
    },
    /// Print the device MLX computes on, as JSON.
    Device,
    /// Print this machine's temperatures, utilisation, memory and GPU
    /// figures as JSON (sysfs and procfs under `LORALAB_SYSTEM_ROOT`, else
    /// `/`; NVIDIA through NVML).
    System,
    /// Fine-tune from an mlx-lm style YAML or TOML config, without the web UI.
    Train(crate::train_cli::TrainArgs),
    /// Take a fine-tune out: fuse it into its base (HF or MLX folder) or
    /// write it as a PEFT adapter.
    Export(crate::export_cli::ExportArgs),
    /// Show, rotate or remove the owner and operator tokens of `--lan`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Internal: one training, driven over stdin/stdout by the server.
    #[command(hide = true)]
    Worker,
    /// Internal: the inference worker (generation with swappable adapters).
    #[command(hide = true)]
    InferenceWorker,
    /// Internal: one export, driven over stdin/stdout by the server.
    #[command(hide = true)]
    ExportWorker,
}

pub fn main() -> ExitCode {
    engine::device::use_own_kernel_cache();
    engine::device::use_installed_cuda_headers();
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
        Command::Models { command: None } => list_models(&data_dir),
        Command::Models {
            command: Some(ModelsCommand::Pull(args)),
        } => pull_model(&data_dir, &args),
        Command::Device => print_device(),
        Command::System => crate::system::print_system(),
        Command::Train(args) => crate::train_cli::run(&args, &data_dir),
        Command::Token(command) => token(&data_dir, command),
        Command::Worker => return crate::worker::run(),
        Command::InferenceWorker => return crate::inference::worker::run(),
        Command::ExportWorker => return crate::exports::worker::run(),
        Command::Export(args) => crate::export_cli::run(&args, &data_dir),
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
        crate::datasets::remove_unfinished_uploads(&data_dir.datasets());
        register_sample_dataset(&store, &data_dir)?;
        let device = probe_device().await?;
        let store = Arc::new(store);
        let supervisor = Supervisor::start(
            store.clone(),
            data_dir.runs(),
            SupervisorSettings::from_env(&device)?,
            crate::system::Monitor::start(crate::system::root_from_env()),
        )?;
        let inference = Inference::start(supervisor.clone(), InferenceSettings::from_env(&device)?);
        let pulls = Arc::new(Pulls::load(&store)?);
        let exports = Exports::start(
            store.clone(),
            supervisor.clone(),
            data_dir.exports(),
            data_dir.runs(),
            std::env::current_exe().context("cannot locate the loralab binary")?,
        )?;
        let state = Arc::new(AppState {
            inspections: crate::inspections::Inspections::new(store.clone()),
            store,
            data_dir,
            device,
            supervisor: supervisor.clone(),
            tokenizers: Default::default(),
            inference,
            comparisons: Default::default(),
            pulls,
            exports,
        });
        let access = Access::new(args.access(), &state.data_dir.root)?;
        crate::compare::resume_unfinished(&state);
        let listener = tokio::net::TcpListener::bind(args.address())
            .await
            .with_context(|| format!("cannot listen on {}", args.address()))?;
        access::cut_stalled_clients(&listener).context("cannot set TCP options")?;
        let address = listener.local_addr()?;
        println!("Loralab is serving on http://{address}");
        println!("Data dir: {}", state.data_dir.root.display());
        if args.lan_mode() {
            print_lan_urls(&access, address)?;
        }
        let (closing, closed) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(
            listener,
            http::router(state, access).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Ends the SSE streams, which graceful shutdown waits for.
            supervisor.shutdown();
            let _ = closing.send(());
        });
        // A client that stopped reading keeps its connection stuck in a
        // write that no stream end can reach; shutdown waits only so long.
        let deadline = async {
            let _ = closed.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            served = server => served.context("the HTTP server stopped"),
            () = deadline => {
                tracing::warn!("closing connections still open {} s after shutdown", SHUTDOWN_GRACE.as_secs());
                Ok(())
            }
        }
    })
}

/// How long graceful shutdown waits for open connections.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// `--lan`: where teammates can watch, and the owner's link.
fn print_lan_urls(access: &Access, address: SocketAddr) -> Result<()> {
    let addresses = access::lan::reachable_addresses(address.ip());
    let owner = access
        .tokens
        .read(TokenKind::Owner)?
        .context("the owner token is missing")?;
    let base = |ip| format!("http://{}", SocketAddr::new(ip, address.port()));
    for ip in &addresses {
        println!("On your network: {}/", base(*ip));
    }
    if let Some(ip) = addresses.first() {
        println!("Owner link: {}/auth?token={owner}", base(*ip));
    } else {
        println!("Owner link: open /auth?token={owner} on this server's address");
    }
    println!(
        "  (the owner link grants every right: keep it to yourself; `loralab token rotate` replaces it)"
    );
    if access.settings.viewer_password.is_some() {
        println!("Viewers sign in with the viewer password.");
    } else {
        println!("Anyone on the network may watch, and change nothing.");
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download a model from the Hugging Face Hub into the HF cache (only
    /// what is missing there) and register it under its repo id.
    Pull(PullArgs),
}

#[derive(Debug, clap::Args)]
struct PullArgs {
    /// `org/name` (safetensors), or `org/name/file.gguf` for one GGUF file
    /// of a repo; `@revision` may follow.
    repo: String,
    /// A branch, tag or commit (default: main).
    #[arg(long)]
    revision: Option<String>,
}

/// `loralab models pull`: HF_ENDPOINT, HF_HUB_CACHE/HF_HOME, HF_TOKEN and
/// HF_HUB_OFFLINE apply as for huggingface_hub.
fn pull_model(data_dir: &Path, args: &PullArgs) -> Result<()> {
    let spec = crate::hub::pulls::parse_request(&args.repo, args.revision.as_deref())?;
    let pulled = crate::hub::console::pull_with_stderr(&spec)?;
    let (_, store) = setup::prepare(data_dir, None)?;
    let model = crate::models::register_pulled(&store, &spec, &pulled)?;
    println!("{}\t{}\t{}", model.name, model.source, model.location);
    Ok(())
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a token and the link path that exchanges it for a session.
    Show(TokenWhich),
    /// Replace a token (the operator's is created if there is none); the
    /// old one stops working at once, also in a running server.
    Rotate(TokenWhich),
    /// Delete the operator token: operators become viewers.
    RemoveOperator,
}

#[derive(Debug, clap::Args)]
struct TokenWhich {
    /// The operator token (may start, stop and resume runs) instead of the owner's.
    #[arg(long)]
    operator: bool,
}

impl TokenWhich {
    fn kind(&self) -> TokenKind {
        if self.operator {
            TokenKind::Operator
        } else {
            TokenKind::Owner
        }
    }
}

fn token(data_dir: &Path, command: TokenCommand) -> Result<()> {
    let tokens = TokenStore::open(data_dir)?;
    let (kind, token) = match command {
        TokenCommand::Show(which) => {
            let kind = which.kind();
            let token = tokens.read(kind)?.with_context(|| {
                format!(
                    "there is no {0} token; `loralab token rotate --{0}` creates one",
                    kind.label()
                )
            })?;
            (kind, token)
        }
        TokenCommand::Rotate(which) => (which.kind(), tokens.rotate(which.kind())?),
        TokenCommand::RemoveOperator => {
            if tokens.remove(TokenKind::Operator)? {
                println!("The operator token is removed; its sessions are now viewers.");
            } else {
                println!("There was no operator token.");
            }
            return Ok(());
        }
    };
    println!("{} token: {token}", kind.label());
    println!("Link: http://<this machine>:<port>/auth?token={token}");
    println!("File: {}", tokens.path(kind).display());
    Ok(())
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
