//! `loralab train --ranks N` / `--hostfile hosts.json`: starts the ranks of
//! a data-parallel training as `mlx.launch` does (each rank the same
//! `loralab train` with `MLX_RANK` and, for the ring backend, an
//! `MLX_HOSTFILE` listing every rank's `ip:port`), relays their output
//! (rank 0's reports on stdout, every rank's stderr prefixed with its rank),
//! and stops them all as soon as one fails, naming it.
//!
//! Everything that can be refused is refused before any rank starts: a
//! hostfile that does not parse, an unreachable host, a world size that
//! does not divide the batch, a backend this MLX build lacks.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use engine::config::TrainConfig;
use serde_json::Value;

use crate::train_cli::TrainArgs;

/// Set on the ranks this launcher starts: their stdin is its pipe, and its
/// end (the launcher gone, or asked to stop) means "checkpoint and stop".
pub const LAUNCHED_ENV: &str = "LORALAB_LAUNCHED";

/// Set on the server's workers of a run with several ranks: the backend
/// each joins the run's group with (the rest of the environment is
/// mlx.launch's).
pub const BACKEND_ENV: &str = "LORALAB_DISTRIBUTED_BACKEND";

/// The ring backend's rank list, written to a file whose path becomes
/// `MLX_HOSTFILE` where the rank starts.
const RING_NODES: &str = "MLX_HOSTFILE_JSON";

/// `mlx.launch`'s first ring port; one more per rank and IP.
const STARTING_PORT: u16 = 32323;

/// Stderr lines kept per rank for the failure's reason.
const TAIL_LINES: usize = 8;

/// One host of an `mlx.launch` hostfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// What `ssh` is given.
    pub ssh: String,
    /// Addresses the ring backend listens on and connects to.
    pub ips: Vec<String>,
}

/// A parsed hostfile: `[{"ssh": "host", "ips": ["10.0.0.2"]}, ...]`, or the
/// object form `{"backend": "...", "envs": ["K=V"], "hosts": [...]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hostfile {
    pub hosts: Vec<Host>,
    pub backend: Option<String>,
    pub envs: Vec<(String, String)>,
}

impl Hostfile {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the hostfile {}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow!("hostfile {}: {e:#}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?;
        let (hosts, backend, envs) = match value {
            Value::Array(hosts) => (hosts, None, Vec::new()),
            Value::Object(mut map) => {
                let Some(Value::Array(hosts)) = map.remove("hosts") else {
                    bail!("an object hostfile needs a `hosts` list");
                };
                let backend = match map.remove("backend") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(b)) if b.is_empty() => None,
                    Some(Value::String(b)) => Some(b),
                    Some(other) => bail!("`backend` must be a string, got {other}"),
                };
                let envs = match map.remove("envs") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(envs)) => {
                        envs.iter().map(parse_env).collect::<Result<Vec<_>>>()?
                    }
                    Some(other) => bail!("`envs` must be a list of \"KEY=value\", got {other}"),
                };
                (hosts, backend, envs)
            }
            other => bail!("expected a list of hosts, got {other}"),
        };
        if hosts.is_empty() {
            bail!("the host list is empty");
        }
        let hosts = hosts
            .iter()
            .enumerate()
            .map(|(rank, host)| parse_host(host).map_err(|e| anyhow!("host {rank}: {e}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            hosts,
            backend,
            envs,
        })
    }
}

fn parse_host(value: &Value) -> Result<Host> {
    let Value::Object(map) = value else {
        bail!("expected {{\"ssh\": \"name\", \"ips\": [...]}}, got {value}");
    };
    let ssh = match map.get("ssh") {
        Some(Value::String(name)) if !name.trim().is_empty() && !name.starts_with('-') => {
            name.clone()
        }
        Some(other) => bail!("`ssh` must be a host name, got {other}"),
        None => bail!("no `ssh` name"),
    };
    let ips = match map.get("ips") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ips)) => ips
            .iter()
            .map(|ip| match ip {
                Value::String(ip) if ip.parse::<std::net::IpAddr>().is_ok() => Ok(ip.clone()),
                other => Err(anyhow!("`ips` must hold IP addresses, got {other}")),
            })
            .collect::<Result<Vec<_>>>()?,
        Some(other) => bail!("`ips` must be a list, got {other}"),
    };
    Ok(Host { ssh, ips })
}

fn parse_env(value: &Value) -> Result<(String, String)> {
    let text = value
        .as_str()
        .ok_or_else(|| anyhow!("`envs` entries must be \"KEY=value\" strings, got {value}"))?;
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("`envs`: `{text}` is not KEY=value");
    }
    Ok((key.to_string(), value.to_string()))
}

/// Where one rank runs and what it is told.
#[derive(Debug, Clone)]
struct Rank {
    /// `None`: a process of this machine; else the `ssh` host.
    ssh: Option<String>,
    env: Vec<(String, String)>,
}

/// A host named as this machine starts its rank without ssh.
pub fn is_this_machine(ssh: &str) -> bool {
    matches!(ssh, "localhost" | "127.0.0.1" | "::1")
}

/// N ranks on this machine: ring over 127.0.0.1, or NCCL on a CUDA device
/// (one GPU per rank).
fn local_ranks(count: usize, backend: &str) -> Result<Vec<Rank>> {
    let mut shared = Vec::new();
    if backend == "nccl" {
        shared.push(("NCCL_HOST_IP".to_string(), "127.0.0.1".to_string()));
        shared.push(("NCCL_PORT".to_string(), free_ports(1)?[0].to_string()));
        shared.push(("MLX_WORLD_SIZE".to_string(), count.to_string()));
    } else {
        let nodes: Vec<Vec<String>> = free_ports(count)?
            .into_iter()
            .map(|port| vec![format!("127.0.0.1:{port}")])
            .collect();
        shared.push((RING_NODES.into(), serde_json::to_string(&nodes)?));
    }
    Ok((0..count)
        .map(|rank| {
            let mut env = shared.clone();
            env.push(("MLX_RANK".into(), rank.to_string()));
            if backend == "nccl" {
                env.push(("CUDA_VISIBLE_DEVICES".into(), rank.to_string()));
            }
            Rank { ssh: None, env }
        })
        .collect())
}

/// The backend for ranks of this machine: NCCL between GPUs, else ring.
pub fn local_backend() -> &'static str {
    if engine::device::is_gpu() {
        "nccl"
    } else {
        "ring"
    }
}

/// The environment of each of `count` ranks of this machine (the server's
/// workers of one run), the ring's rank list written into `dir`.
pub fn local_rank_environments(
    count: usize,
    backend: &str,
    dir: &Path,
) -> Result<Vec<Vec<(String, String)>>> {
    local_ranks(count, backend)?
        .into_iter()
        .map(|rank| with_hostfile(&rank.env, dir))
        .collect()
}

/// `env` with the ring's rank list as a file in `dir`, named by `MLX_HOSTFILE`.
fn with_hostfile(env: &[(String, String)], dir: &Path) -> Result<Vec<(String, String)>> {
    env.iter()
        .map(|(key, value)| {
            if key != RING_NODES {
                return Ok((key.clone(), value.clone()));
            }
            // Written whole and renamed into place: every rank gets the same
            // list, and a rank started earlier may be reading it right now.
            let path = dir.join("mlx-ring-hosts.json");
            let partial = dir.join(format!(".mlx-ring-hosts-{}.json", std::process::id()));
            std::fs::write(&partial, value)
                .and_then(|()| std::fs::rename(&partial, &path))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(("MLX_HOSTFILE".into(), path.display().to_string()))
        })
        .collect()
}

/// This process's rank as mlx.launch (or the server) set it; 0 alone.
pub fn rank_from_env() -> usize {
    std::env::var("MLX_RANK")
        .ok()
        .and_then(|rank| rank.trim().parse().ok())
        .unwrap_or(0)
}

/// Ports free on 127.0.0.1 now (all held until every one is chosen, so
/// they differ); the ranks bind them a moment later.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A hostfile's ranks, one per host, in its order.
fn hostfile_ranks(hostfile: &Hostfile, backend: &str) -> Result<Vec<Rank>> {
    let mut shared = hostfile.envs.clone();
    match backend {
        "ring" => {
            if let Some((rank, host)) = hostfile
                .hosts
                .iter()
                .enumerate()
                .find(|(_, h)| h.ips.is_empty())
            {
                bail!(
                    "host {rank} (`{}`) has no `ips`: the ring backend connects the ranks by IP",
                    host.ssh
                );
            }
            let mut port = STARTING_PORT;
            let mut nodes = Vec::new();
            for host in &hostfile.hosts {
                let mut node = Vec::new();
                for ip in &host.ips {
                    node.push(if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    });
                    port += 1;
                }
                nodes.push(node);
            }
            shared.push((RING_NODES.into(), serde_json::to_string(&nodes)?));
        }
        "nccl" => {
            let Some(ip) = hostfile.hosts[0].ips.first() else {
                bail!("host 0 needs an IP that every other rank reaches (NCCL's rendezvous)");
            };
            shared.push(("NCCL_HOST_IP".into(), ip.clone()));
            shared.push(("NCCL_PORT".into(), "12345".into()));
            shared.push(("MLX_WORLD_SIZE".into(), hostfile.hosts.len().to_string()));
        }
        other => bail!("the hostfile launcher starts `ring` or `nccl` ranks, not `{other}`"),
    }
    Ok(hostfile
        .hosts
        .iter()
        .enumerate()
        .map(|(rank, host)| {
            let mut env = shared.clone();
            env.push(("MLX_RANK".into(), rank.to_string()));
            Rank {
                ssh: (!is_this_machine(&host.ssh)).then(|| host.ssh.clone()),
                env,
            }
        })
        .collect())
}

/// More `ssh` arguments for every host, whitespace-separated (`-F FILE`,
/// `-i KEY`, `-p PORT`, `-o Option=value`): the launcher's and the
/// server's (machine checks, runs on a machine set) alike.
pub const SSH_OPTIONS_ENV: &str = "LORALAB_SSH_OPTIONS";

/// `ssh` to `host` without prompts, with [`SSH_OPTIONS_ENV`]'s arguments;
/// the remote command follows.
pub fn ssh_command(host: &str) -> Command {
    let mut ssh = Command::new("ssh");
    ssh.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]);
    if let Ok(options) = std::env::var(SSH_OPTIONS_ENV) {
        ssh.args(options.split_whitespace());
    }
    ssh.arg(host);
    ssh
}

/// Each remote host answers over ssh and has this Loralab at this path.
fn check_hosts(ranks: &[Rank], program: &Path) -> Result<()> {
    for (rank, host) in ranks
        .iter()
        .enumerate()
        .filter_map(|(r, rank)| rank.ssh.as_ref().map(|h| (r, h)))
    {
        let output = ssh_command(host)
            .arg(format!("test -x {}", quote(&program.display().to_string())))
            .stdin(Stdio::null())
            .output()
            .context("cannot run ssh")?;
        match output.status.code() {
            Some(0) => {}
            Some(1) => bail!(
                "host `{host}` (rank {rank}) has no Loralab at {}: install the same version at the same path",
                program.display()
            ),
            _ => bail!(
                "host `{host}` (rank {rank}) is unreachable over ssh: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }
    Ok(())
}

/// A POSIX shell word.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Runs the ranks of `args`' training (`--ranks`, `--hostfile`, else the
/// config's `gpus`) until all finish or one fails.
pub fn run(args: &TrainArgs, cfg: &TrainConfig, data_dir: &Path) -> Result<()> {
    let hostfile = args.hostfile.as_deref().map(Hostfile::read).transpose()?;
    let backend = match (
        &args.backend,
        hostfile.as_ref().and_then(|h| h.backend.clone()),
    ) {
        (Some(backend), _) => backend.clone(),
        (None, Some(backend)) => backend,
        (None, None) if hostfile.is_none() => local_backend().into(),
        (None, None) => "ring".into(),
    };
    engine::distributed::check_backend(&backend)?;
    let ranks = match (&hostfile, args.ranks.unwrap_or(cfg.gpus)) {
        (Some(hostfile), _) => hostfile_ranks(hostfile, &backend)?,
        (None, 0) => bail!("--ranks must be at least 1"),
        (None, count) => local_ranks(count, &backend)?,
    };
    if !cfg.batch_size.is_multiple_of(ranks.len()) {
        bail!(
            "{}: batch_size {} does not divide among {} ranks: each rank takes an equal share of every batch",
            args.config.display(),
            cfg.batch_size,
            ranks.len()
        );
    }
    let program = std::env::current_exe().context("cannot find this program's path")?;
    check_hosts(&ranks, &program)?;
    let config = std::path::absolute(&args.config)?;
    let directory = std::env::current_dir()?;
    let mut rank_args: Vec<String> = vec![
        "train".into(),
        "--config".into(),
        config.display().to_string(),
        "--backend".into(),
        backend.clone(),
    ];
    if args.resume {
        rank_args.push("--resume".into());
    }
    if let Some(events) = &args.events {
        rank_args.push("--events".into());
        rank_args.push(std::path::absolute(events)?.display().to_string());
    }
    let hostfiles = tempfile::tempdir()?;
    let mut running = Vec::with_capacity(ranks.len());
    for (index, rank) in ranks.iter().enumerate() {
        let started = start_rank(
            index,
            rank,
            &program,
            &rank_args,
            &directory,
            data_dir,
            hostfiles.path(),
        );
        match started {
            Ok(r) => running.push(r),
            Err(error) => {
                stop_all(&mut running);
                return Err(error.context(format!("cannot start rank {index}")));
            }
        }
    }
    supervise(running)
}

/// mlx.launch's remote script: cd, exports, the ring hostfile in a
/// temporary file (`MLX_HOSTFILE`), then exec `program args`.
fn remote_script(
    env: &[(String, String)],
    directory: &Path,
    program: &Path,
    args: &[String],
) -> String {
    let mut script = format!("cd {} || exit 1; ", quote(&directory.display().to_string()));
    let mut ring_nodes = None;
    for (key, value) in env {
        if key == RING_NODES {
            ring_nodes = Some(value);
        } else {
            script.push_str(&format!("export {key}={}; ", quote(value)));
        }
    }
    if let Some(nodes) = ring_nodes {
        script.push_str(&format!(
            "MLX_HOSTFILE=$(mktemp) && printf '%s' {} > \"$MLX_HOSTFILE\" && export MLX_HOSTFILE; ",
            quote(nodes)
        ));
    }
    script.push_str("exec ");
    script.push_str(&quote(&program.display().to_string()));
    for arg in args {
        script.push(' ');
        script.push_str(&quote(arg));
    }
    script
}

/// The server's workers of a run on a hostfile's hosts, one per host in
/// its order (rank 0 first): `program worker` with mlx.launch's
/// environment and [`BACKEND_ENV`], over ssh for other machines (in
/// `run_dir`, which holds the ring's rank list for this machine's ranks).
pub fn hostfile_worker_commands(
    hostfile: &Hostfile,
    backend: &str,
    program: &Path,
    run_dir: &Path,
) -> Result<Vec<Command>> {
    let args = vec!["worker".to_string()];
    hostfile_ranks(hostfile, backend)?
        .into_iter()
        .map(|rank| {
            let mut env = rank.env;
            env.push((BACKEND_ENV.into(), backend.into()));
            Ok(match &rank.ssh {
                None => {
                    let mut command = Command::new(program);
                    command
                        .args(&args)
                        .current_dir(run_dir)
                        .envs(with_hostfile(&env, run_dir)?);
                    command
                }
                Some(host) => {
                    let mut command = ssh_command(host);
                    command.arg(remote_script(&env, run_dir, program, &args));
                    command
                }
            })
        })
        .collect()
}

struct Running {
    rank: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    tail: Arc<Mutex<VecDeque<String>>>,
    relays: Vec<JoinHandle<()>>,
}

fn start_rank(
    index: usize,
    rank: &Rank,
    program: &Path,
    rank_args: &[String],
    directory: &Path,
    data_dir: &Path,
    hostfiles: &Path,
) -> Result<Running> {
    let mut command = match &rank.ssh {
        None => {
            let mut command = Command::new(program);
            command
                .args(rank_args)
                .current_dir(directory)
                .env("LORALAB_DATA_DIR", data_dir)
                .env(LAUNCHED_ENV, "1")
                .envs(with_hostfile(&rank.env, hostfiles)?);
            command
        }
        Some(host) => {
            let mut env = rank.env.clone();
            env.push((LAUNCHED_ENV.into(), "1".into()));
            let mut command = ssh_command(host);
            command.arg(remote_script(&env, directory, program, rank_args));
            command
        }
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let where_ = rank.ssh.as_deref().unwrap_or("this machine");
    eprintln!("Started rank {index} (pid {}) on {where_}", child.id());
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let relays = vec![
        relay(stdout, index, index == 0, None),
        relay(stderr, index, false, Some(tail.clone())),
    ];
    Ok(Running {
        rank: index,
        stdin: child.stdin.take(),
        child,
        tail,
        relays,
    })
}

/// Copies a rank's output line by line: rank 0's stdout as is (the run's
/// reports), everything else to stderr behind `[rank N]`.
fn relay(
    from: impl Read + Send + 'static,
    rank: usize,
    to_stdout: bool,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            // A closed terminal must not stop the relay: the rank would
            // block on a full pipe.
            if to_stdout {
                let _ = writeln!(std::io::stdout(), "{line}");
            } else {
                let _ = writeln!(std::io::stderr(), "[rank {rank}] {line}");
            }
            if let Some(tail) = &tail {
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        }
    })
}

fn stop_all(running: &mut [Running]) {
    for rank in running.iter_mut() {
        let _ = rank.child.kill();
    }
    for rank in running.iter_mut() {
        let _ = rank.child.wait();
        for relay in rank.relays.drain(..) {
            let _ = relay.join();
        }
    }
}

/// How a rank ended, for a failure's reason.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (_, Some(9)) => "was killed by signal 9 (SIGKILL)".into(),
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        (Some(code), _) => format!("exited with status {code}"),
        (None, None) => format!("ended: {status}"),
    }
}

/// Waits for the ranks. The first to fail stops the others at once (they
/// would otherwise wait on it in a collective); among ranks found dead in
/// the same look, one killed by a signal is the cause, the others failed
/// because it went. Ctrl-C closes every rank's stdin, which each takes as
/// "checkpoint and stop" at the same step.
fn supervise(mut running: Vec<Running>) -> Result<()> {
    let interrupted = Arc::new(AtomicBool::new(false));
    crate::train_cli::stop_on_interrupt(
        interrupted.clone(),
        "Interrupted: the ranks save a checkpoint and stop (resume with --resume)",
    );
    let mut finished = vec![false; running.len()];
    loop {
        if interrupted.load(Ordering::SeqCst) {
            for rank in running.iter_mut() {
                rank.stdin.take();
            }
        }
        let mut failures = Vec::new();
        for (index, rank) in running.iter_mut().enumerate() {
            if finished[index] {
                continue;
            }
            if let Some(status) = rank.child.try_wait()? {
                finished[index] = true;
                if !status.success() {
                    failures.push((rank.rank, status));
                }
            }
        }
        if let Some(&(rank, status)) = failures
            .iter()
            .find(|(_, s)| s.signal().is_some())
            .or(failures.first())
        {
            stop_all(&mut running);
            let tail = running[rank]
                .tail
                .lock()
                .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default();
            let mut message = format!(
                "rank {rank} {}; the other ranks were stopped",
                describe(status)
            );
            if !tail.is_empty() {
                message.push_str(&format!("\nrank {rank}'s last lines:\n{tail}"));
            }
            bail!(message);
        }
        if finished.iter().all(|&f| f) {
            stop_all(&mut running);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In a rank started by [`run`]: the end of stdin sets `stop`.
pub fn stop_when_launcher_goes(stop: Arc<AtomicBool>) {
    if std::env::var_os(LAUNCHED_ENV).is_none() {
        return;
    }
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        stop.store(true, Ordering::SeqCst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms_of_mlx_launch_hostfiles() {
        let list = Hostfile::parse(
            r#"[{"ssh": "mac1", "ips": ["10.0.0.1"]}, {"ssh": "mac2", "ips": ["10.0.0.2"]}]"#,
        )
        .unwrap();
        assert_eq!(list.hosts.len(), 2);
        assert_eq!(list.hosts[1].ssh, "mac2");
        assert_eq!(list.backend, None);
        let object = Hostfile::parse(
            r#"{"backend": "ring", "envs": ["A=1"], "hosts": [{"ssh": "h", "ips": ["10.0.0.3"], "rdma": []}]}"#,
        )
        .unwrap();
        assert_eq!(object.backend.as_deref(), Some("ring"));
        assert_eq!(object.envs, vec![("A".to_string(), "1".to_string())]);
        let ranks = hostfile_ranks(&list, "ring").unwrap();
        let nodes = &ranks[1]
            .env
            .iter()
            .find(|(k, _)| k == RING_NODES)
            .unwrap()
            .1;
        assert_eq!(nodes, r#"[["10.0.0.1:32323"],["10.0.0.2:32324"]]"#);
        assert_eq!(
            ranks[1].env.last().unwrap(),
            &("MLX_RANK".to_string(), "1".to_string())
        );
        assert_eq!(ranks[1].ssh.as_deref(), Some("mac2"));
    }

    #[test]
    fn names_what_is_wrong_in_a_hostfile() {
        let error = |text: &str| format!("{:#}", Hostfile::parse(text).unwrap_err());
        assert!(
            error("[{\"ssh\": ").starts_with("not JSON: "),
            "{}",
            error("[{\"ssh\": ")
        );
        assert_eq!(error("[]"), "the host list is empty");
        assert_eq!(error(r#"[{"ips": []}]"#), "host 0: no `ssh` name");
        assert_eq!(
            error(r#"[{"ssh": "a"}, {"ssh": "b", "ips": ["nope"]}]"#),
            "host 1: `ips` must hold IP addresses, got \"nope\""
        );
        let no_ips = Hostfile::parse(r#"[{"ssh": "a"}]"#).unwrap();
        assert_eq!(
            hostfile_ranks(&no_ips, "ring").unwrap_err().to_string(),
            "host 0 (`a`) has no `ips`: the ring backend connects the ranks by IP"
        );
    }
}
