//! Runs with `gpus: N` through the server: the supervisor starts N real
//! worker processes on the ring backend (127.0.0.1), rank 0's events are
//! the run's, every rank's stderr is in the log behind its rank, and a
//! killed rank fails the run naming it, leaving no worker behind.

mod common;

use common::*;
use serde_json::json;

/// Process ids whose parent is `parent`, with their `MLX_RANK`.
fn workers_of(parent: u32) -> Vec<(i32, Option<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.to_string()))
                .and_then(|rest| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let rank = environ
                .split(|&b| b == 0)
                .filter_map(|var| std::str::from_utf8(var).ok())
                .find_map(|var| var.strip_prefix("MLX_RANK=").map(str::to_string));
            (pid, rank)
        })
        .collect()
}

#[tokio::test]
async fn a_run_on_two_ranks_reports_as_one_rank_and_logs_both() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let (two, _) = two_ranks_train_as_one(&client, &server, json!({"gpus": 2})).await;
    let html = page(&client, &server.url(&format!("/runs/{two}"))).await;
    assert!(
        html.contains(r#"<div data-stat="ranks" class="value">2</div>"#),
        "no ranks stat"
    );
    assert!(html.contains(r#"<div data-stat="tokens_per_sec_per_rank" class="value">"#));
    // Each rank's own figures, gathered by rank 0 after every report.
    for rank in 0..2 {
        let row = html
            .split(&format!(r#"<tr data-rank="{rank}">"#))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for rank {rank}"));
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(row.contains("this machine (CPU)"), "{row}");
        let figure = |key: &str| -> f64 {
            let cell = row
                .split(&format!(r#"data-figure="{key}""#))
                .nth(1)
                .unwrap();
            let cell = &cell[cell.find('>').unwrap() + 1..];
            cell[..cell.find(['<', ' ']).unwrap()]
                .parse()
                .unwrap_or_else(|_| panic!("{key} of rank {rank}: {row}"))
        };
        assert!(figure("tokens_per_sec") > 0.0, "{row}");
        let peak = figure("peak_memory_gb");
        assert!(peak > 0.0 && peak < 8.0, "{row}");
    }
    assert!(!html.contains(r#"<tr data-rank="2">"#));
    assert!(
        html.contains("x one rank&#x27;s tokens/s") || html.contains("x one rank's tokens/s"),
        "no scaling"
    );
    // One rank's share of the batch each, but two of them on the CPU.
    let (_, estimate) = post_json(
        &client,
        &server.url("/api/runs/estimate"),
        tiny_run(json!({"gpus": 2})),
    )
    .await;
    let (_, single) = post_json(
        &client,
        &server.url("/api/runs/estimate"),
        tiny_run(json!({})),
    )
    .await;
    assert_eq!(
        estimate["weights"].as_u64().unwrap(),
        2 * single["weights"].as_u64().unwrap(),
        "{estimate} vs {single}"
    );
}

#[tokio::test]
async fn a_killed_rank_fails_the_run_naming_it() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let id = create_run(
        &client,
        &server,
        tiny_run(json!({"iters": 100000, "gpus": 2})),
    )
    .await;
    wait_for(&client, &server, id, 300, "step 2", |r| {
        r["step"].as_i64() >= Some(2)
    })
    .await;
    let workers = workers_of(server.pid());
    assert_eq!(workers.len(), 2, "{workers:?}");
    let (second, _) = workers
        .iter()
        .find(|(_, rank)| rank.as_deref() == Some("1"))
        .unwrap_or_else(|| panic!("no rank 1 among {workers:?}"));
    std::process::Command::new("kill")
        .args(["-KILL", &second.to_string()])
        .status()
        .unwrap();
    let run = wait_for_status(&client, &server, id, 30, "failed").await;
    let failure = run["failure"].as_str().unwrap();
    assert!(
        failure.starts_with(
            "rank 1 of 2 was killed by signal 9 (SIGKILL); the other ranks were stopped"
        ),
        "{failure}"
    );
    assert!(
        workers_of(server.pid()).is_empty(),
        "a rank outlived the run"
    );
}
