//! The supervisor with real worker processes: stop and resume, a worker
//! that fails, and a server SIGKILLed mid-run that restarts on the same
//! data dir.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn report_steps(metrics: &Value) -> Vec<u64> {
    metrics["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect()
}

/// Resumes run `id` and waits until it is done at step 1500, with every
/// step reported once in its metrics.
async fn resume_to_step_1500(client: &reqwest::Client, server: &Server, id: i64) {
    assert_eq!(run_action(client, server, id, "resume").await, 200);
    let done = wait_for_status(client, server, id, 600, "done").await;
    assert_eq!(done["step"], 1500);
    let metrics = get_json(client, &server.url(&format!("/api/runs/{id}/metrics.json"))).await;
    assert_eq!(report_steps(&metrics), (1..=1500).collect::<Vec<_>>());
}

#[tokio::test]
async fn stop_checkpoints_and_resume_continues_to_done() {
    let setup = tiny_setup();
    let server = setup.serve(&[("LORALAB_STOP_GRACE_SECS", "20")]);
    let client = reqwest::Client::new();
    let updates = client
        .get(server.url("/api/runs/events"))
        .send()
        .await
        .unwrap();
    // Read the runs-list stream as it comes: reports also send updates.
    let updates = tokio::spawn(read_sse(updates, |(_, _, data)| {
        data.contains("\"stopped\"")
    }));

    let id = create_run(
        &client,
        &server,
        tiny_run(json!({"iters": 1500, "save_every": 1000})),
    )
    .await;
    wait_for(&client, &server, id, 300, "step 3", |r| {
        r["step"].as_i64() >= Some(3)
    })
    .await;
    let stopped = stop_run(&client, &server, id).await;
    let at = stopped["step"].as_i64().unwrap();
    assert!((3..1500).contains(&at), "stopped at {at}");
    let checkpoints = stopped["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.last().unwrap()["step"], at, "{stopped}");

    // The runs list stream saw the run queued or running, then stopped.
    let seen = updates.await.unwrap();
    let statuses = statuses(&seen);
    assert!(statuses.contains(&"running".to_string()), "{statuses:?}");
    assert!(statuses.contains(&"stopping".to_string()), "{statuses:?}");

    assert_eq!(run_action(&client, &server, id, "stop").await, 409);

    resume_to_step_1500(&client, &server, id).await;
    // No step was trained twice: the raw events hold each report once.
    let events = client
        .get(server.url(&format!("/api/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    let events = read_sse(events, |(_, kind, _)| kind == "done").await;
    let reports = events.iter().filter(|e| e.1 == "report").count();
    assert_eq!(reports, 1500);
    let starts: Vec<Value> = events
        .iter()
        .filter(|e| e.1 == "started")
        .map(|e| serde_json::from_str(&e.2).unwrap())
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1]["start_step"], at);
}

#[tokio::test]
async fn a_bad_dataset_fails_the_run_with_the_reason() {
    let setup = tiny_setup();
    let bad = setup.temp.path().join("bad-data");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("train.jsonl"), "{\"text\": \"fine\"}\nnot json\n").unwrap();
    let (_, store) = server::setup::prepare(&setup.data_dir, None).unwrap();
    store
        .upsert_dataset(&server::store::NewDataset {
            name: "bad".into(),
            directory: bad.display().to_string(),
            format: None,
            train_count: 2,
            valid_count: 0,
            test_count: 0,
            problems: 0,
            builtin: false,
        })
        .unwrap();
    drop(store);
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let id = create_run(
        &client,
        &server,
        tiny_run(json!({"dataset": "bad", "iters": 5})),
    )
    .await;
    let failed = wait_for_status(&client, &server, id, 300, "failed").await;
    let failure = failed["failure"].as_str().unwrap();
    assert!(failure.contains("train.jsonl"), "{failure}");
    assert!(failure.contains("train.jsonl:2"), "{failure}");

    // The next queued run still starts: the queue is not stuck.
    let next = create_run(&client, &server, tiny_run(json!({"iters": 2}))).await;
    wait_for_status(&client, &server, next, 300, "done").await;
}

#[tokio::test]
async fn a_killed_server_leaves_an_interrupted_run_that_resumes() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let id = create_run(
        &client,
        &server,
        tiny_run(json!({"iters": 1500, "save_every": 4})),
    )
    .await;
    wait_for(&client, &server, id, 300, "step 10", |r| {
        r["step"].as_i64() >= Some(10)
    })
    .await;
    let workers = children_of(server.pid());
    assert_eq!(workers.len(), 1, "one worker process: {workers:?}");
    server.kill();

    // Everything committed before the kill is there, without gaps.
    let (_, store) = server::setup::prepare(&setup.data_dir, None).unwrap();
    let before: Vec<i64> = store
        .events_since(id, 0)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "report")
        .map(|e| e.step.unwrap())
        .collect();
    assert!(before.len() >= 10);
    assert_eq!(before, (1..=before.len() as i64).collect::<Vec<_>>());
    drop(store);
    // The orphaned worker sees its input close, checkpoints and exits:
    // awaited, since what it journals after the next server imports the
    // journal would stay there (a fixed 2 s was once too short under load).
    let exited = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
    };
    for waited in 0.. {
        if exited(workers[0]) {
            break;
        }
        assert!(
            waited < 600,
            "the orphaned worker {} did not exit",
            workers[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let server = setup.serve(&[]);
    let run = get_json(&client, &server.url(&format!("/api/runs/{id}"))).await;
    assert_eq!(run["status"], "interrupted", "{run}");
    let last_checkpoint = run["checkpoints"].as_array().unwrap().last().unwrap()["step"]
        .as_i64()
        .unwrap();
    assert!(last_checkpoint >= before.len() as i64 - 1, "{run}");

    resume_to_step_1500(&client, &server, id).await;
    // Every journaled event is stored: the journal is gone.
    let journal = setup
        .data_dir
        .join("runs")
        .join(id.to_string())
        .join("events.jsonl");
    assert!(!journal.exists(), "{} is left", journal.display());
}

/// Process ids whose parent is `parent` (Linux `/proc`).
fn children_of(parent: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                // `pid (comm) state ppid ...`; comm may hold spaces.
                .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.to_string()))
                .and_then(|rest| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

#[tokio::test]
async fn a_worker_killed_by_another_process_is_not_called_out_of_memory() {
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let id = create_run(&client, &server, tiny_run(json!({"iters": 1500}))).await;
    wait_for(&client, &server, id, 300, "step 2", |r| {
        r["step"].as_i64() >= Some(2)
    })
    .await;
    // A SIGKILL from another process: the kernel counts no OOM kill.
    let workers = children_of(server.pid());
    assert_eq!(workers.len(), 1, "one worker process: {workers:?}");
    std::process::Command::new("kill")
        .args(["-KILL", &workers[0].to_string()])
        .status()
        .unwrap();
    let run = wait_for_status(&client, &server, id, 300, "failed").await;
    let failure = run["failure"].as_str().unwrap();
    assert!(
        failure.contains("killed by signal 9")
            && failure.contains("by another process or the system"),
        "{failure}"
    );
    assert!(!failure.contains("ran out of memory"), "{failure}");
    assert!(!failure.contains("out-of-memory killer"), "{failure}");
}
