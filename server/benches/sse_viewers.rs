//! Many teammates watching one live run: N viewers (500 by default) hold
//! the run's SSE stream open from 50 loopback addresses (within the
//! per-client cap) while a tiny model trains. Prints events delivered,
//! delivery latency (commit in SQLite -> received by a viewer) at p50/p99
//! for events committed once every viewer was connected, and the server's
//! peak RSS. Fails if any viewer misses an event. Loopback only; bounded
//! by a deadline.
//!
//! `cargo bench -p server --bench sse_viewers` (LORALAB_BENCH_VIEWERS and
//! LORALAB_BENCH_ITERS change the size).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{tiny_run, tiny_setup, Server};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Streams per loopback address, within the server's per-client cap.
const PER_ADDRESS: usize = 10;
/// Viewers that open the stream and never read it (a frozen tab): the
/// others must not notice them.
const STALLED: usize = 20;
const DEADLINE: Duration = Duration::from_secs(240);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One viewer's stream until the run ends: (seq, received at, unix ms).
async fn watch(url: String, source: IpAddr) -> Result<(i64, Vec<(i64, i64)>), String> {
    let client = reqwest::Client::builder()
        .local_address(source)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
    let connected = unix_ms();
    if !response.status().is_success() {
        return Err(format!("{source}: HTTP {}", response.status()));
    }
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut received = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let now = unix_ms();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut seq = None;
            let mut kind = "";
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    seq = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim();
                }
            }
            if let Some(seq) = seq {
                received.push((seq, now));
            }
            if matches!(kind, "done" | "failed" | "stopped") {
                return Ok((connected, received));
            }
        }
    }
    Err(format!("{source}: the stream ended before the run did"))
}

/// Asks for the run's stream with a tiny receive buffer, then never reads.
async fn stall(base_url: &str, id: i64, source: Ipv4Addr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address: std::net::SocketAddr = base_url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind((source, 0).into()).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let request = format!("GET /api/runs/{id}/events HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let viewers = env_or("LORALAB_BENCH_VIEWERS", 500);
    let iters = env_or("LORALAB_BENCH_ITERS", 150);
    let setup = tiny_setup();
    let cap = PER_ADDRESS.to_string();
    let server = Server::start_in(setup.data_dir.clone(), &["--max-streams-per-client", &cap]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let outcome = runtime.block_on(async {
        let client = reqwest::Client::new();
        let created: Value = client
            .post(server.url("/api/runs"))
            .json(&tiny_run(json!({
                "iters": iters,
                "steps_per_eval": 50,
                "save_every": 1000,
            })))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_i64().expect("run id");
        let url = server.url(&format!("/api/runs/{id}/events"));
        let mut stalled = Vec::new();
        for i in 0..STALLED {
            stalled.push(stall(&server.base_url, id, Ipv4Addr::new(127, 0, 2, 2 + i as u8)).await);
        }
        let tasks: Vec<_> = (0..viewers)
            .map(|i| {
                let source = IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    1 + (i / PER_ADDRESS / 250) as u8,
                    2 + (i / PER_ADDRESS % 250) as u8,
                ));
                tokio::spawn(watch(url.clone(), source))
            })
            .collect();
        let results = tokio::time::timeout(DEADLINE, futures_util::future::join_all(tasks))
            .await
            .expect("the bench ran past its deadline");
        drop(stalled);
        (id, results)
    });
    let elapsed = started.elapsed();
    let (id, results) = outcome;
    let rss_kib = peak_rss_kib(server.pid());

    // What the server committed: every viewer must have all of it.
    let database = rusqlite::Connection::open(setup.data_dir.join("loralab.sqlite3")).unwrap();
    let mut query = database
        .prepare(
            "SELECT seq, CAST((julianday(created_at) - 2440587.5) * 86400000 AS INTEGER)
             FROM run_events WHERE run_id = ?1 ORDER BY seq",
        )
        .unwrap();
    let committed: Vec<(i64, i64)> = query
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<i64> = committed.iter().map(|(seq, _)| *seq).collect();
    let mut failures = Vec::new();
    let mut streams = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        match result.expect("viewer task") {
            Ok(stream) => streams.push(stream),
            Err(error) => failures.push(format!("viewer {index}: {error}")),
        }
    }
    let last_connected = streams
        .iter()
        .map(|(connected, _)| *connected)
        .max()
        .unwrap_or(0);
    let mut latencies = Vec::new();
    let mut delivered = 0usize;
    for (index, (_, received)) in streams.iter().enumerate() {
        let seqs: Vec<i64> = received.iter().map(|(seq, _)| *seq).collect();
        if seqs != expected {
            failures.push(format!(
                "viewer {index}: got {} events, expected {} (first difference at {:?})",
                seqs.len(),
                expected.len(),
                seqs.iter().zip(&expected).position(|(a, b)| a != b)
            ));
        }
        delivered += seqs.len();
        for ((_, at), (_, committed_at)) in received.iter().zip(&committed) {
            if *committed_at > last_connected {
                latencies.push(at - committed_at);
            }
        }
    }
    latencies.sort_unstable();
    println!(
        "viewers:            {viewers} ({} loopback addresses, {PER_ADDRESS} streams each)",
        viewers.div_ceil(PER_ADDRESS)
    );
    println!("stalled viewers:    {STALLED} (open, never read)");
    println!(
        "run:                {iters} steps, {} events committed",
        expected.len()
    );
    println!(
        "events delivered:   {delivered} (expected {})",
        expected.len() * viewers
    );
    if latencies.is_empty() {
        println!("latency:            no event was committed after the last viewer connected");
    } else {
        println!(
            "delivery latency:   p50 {} ms, p99 {} ms, max {} ms ({} live deliveries)",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.last().unwrap(),
            latencies.len()
        );
    }
    println!("server peak RSS:    {:.1} MiB", rss_kib as f64 / 1024.0);
    println!("wall time:          {:.1} s", elapsed.as_secs_f64());
    if !failures.is_empty() {
        for failure in failures.iter().take(10) {
            eprintln!("{failure}");
        }
        eprintln!(
            "{} of {viewers} viewers missed events or failed",
            failures.len()
        );
        std::process::exit(1);
    }
    println!("every viewer got every event");
}
