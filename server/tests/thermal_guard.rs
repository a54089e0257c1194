//! The hardware monitor and the thermal guard against real worker
//! processes: the sampler reads a fixture tree (`LORALAB_SYSTEM_ROOT`), the
//! test heats its CPU sensor past the threshold, the run pauses at a
//! checkpoint and says so, the sensor cools, the run resumes and ends with
//! the adapter of a run that was never paused.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Long enough that the guard (1 s samples) catches the run mid-way.
const ITERS: u64 = 1500;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Through a rename, so the sampler never reads half a file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(temporary, path).unwrap();
}

fn set_cpu_temp(root: &Path, celsius: u32) {
    write(
        root,
        "sys/class/hwmon/hwmon0/temp1_input",
        &format!("{}\n", celsius * 1000),
    );
}

/// A machine with one coretemp sensor, memory and PSI figures, no swap.
fn fixture_root(root: &Path) {
    write(root, "sys/class/hwmon/hwmon0/name", "coretemp\n");
    write(root, "sys/class/hwmon/hwmon0/temp1_label", "Package id 0\n");
    set_cpu_temp(root, 50);
    write(
        root,
        "proc/meminfo",
        "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    );
    write(
        root,
        "proc/pressure/memory",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
}

/// The tensors of a safetensors file by name: (dtype, bytes).
fn tensors(path: &Path) -> Vec<(String, String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let mut out: Vec<(String, String, Vec<u8>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, info)| {
            let offsets = info["data_offsets"].as_array().unwrap();
            let (start, end) = (
                offsets[0].as_u64().unwrap() as usize,
                offsets[1].as_u64().unwrap() as usize,
            );
            (
                name.clone(),
                info["dtype"].as_str().unwrap().to_string(),
                data[start..end].to_vec(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The largest difference between two runs' final adapters (f32 tensors).
fn adapter_difference(a: &Path, b: &Path) -> f32 {
    let (a, b) = (
        tensors(&a.join("adapters.safetensors")),
        tensors(&b.join("adapters.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f32;
    for ((name_a, dtype, x), (name_b, _, y)) in a.iter().zip(&b) {
        assert_eq!(name_a, name_b);
        assert_eq!(dtype, "F32", "{name_a}");
        for (p, q) in x.chunks_exact(4).zip(y.chunks_exact(4)) {
            let p = f32::from_le_bytes(p.try_into().unwrap());
            let q = f32::from_le_bytes(q.try_into().unwrap());
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

async fn wait_paused(client: &reqwest::Client, server: &Server, id: i64) -> Value {
    wait_for(client, server, id, 300, "paused", |run| {
        !run["paused"].is_null()
    })
    .await
}

async fn event_kinds(client: &reqwest::Client, server: &Server, id: i64) -> Vec<(String, Value)> {
    let events = client
        .get(server.url(&format!("/api/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    read_sse(events, |(_, kind, _)| kind == "done")
        .await
        .into_iter()
        .map(|(_, kind, data)| (kind, serde_json::from_str(&data).unwrap()))
        .collect()
}

#[tokio::test]
async fn a_hot_sensor_pauses_the_run_at_a_checkpoint_and_it_resumes_when_cool() {
    let setup = tiny_setup();
    let root = setup.temp.path().join("machine");
    fixture_root(&root);
    let server = setup.serve(&[
        ("LORALAB_SYSTEM_ROOT", root.to_str().unwrap()),
        ("LORALAB_STOP_GRACE_SECS", "60"),
    ]);
    let client = reqwest::Client::new();
    let body = tiny_run(json!({"iters": ITERS, "save_every": 1000, "steps_per_eval": 500}));

    // The machine as the server reads it.
    let system = get_json(&client, &server.url("/api/system")).await;
    assert_eq!(system["sample"]["cpu_temp_c"], 50.0, "{system:#}");
    assert_eq!(system["sample"]["memory_used_bytes"], 2_000_000u64 * 1024);
    assert_eq!(system["sample"]["sensors"][0]["label"], "Package id 0");
    assert!(system["sample"].get("swap_used_bytes").is_some());
    assert!(
        system["sample"].get("gpus").is_none(),
        "no NVML here: {system:#}"
    );
    let system_page = page(&client, &server.url("/system")).await;
    assert!(
        system_page.contains("coretemp") && system_page.contains("Package id 0"),
        "{system_page}"
    );
    assert!(
        system_page.contains("Thermal guard on: pauses above 95 °C CPU"),
        "{system_page}"
    );

    // A run that is never paused, for its adapter.
    let straight = create_run(&client, &server, body.clone()).await;
    wait_for_status(&client, &server, straight, 600, "done").await;

    // The same run, heated mid-way.
    let guarded = create_run(&client, &server, body.clone()).await;
    wait_for(&client, &server, guarded, 300, "step 3", |run| {
        run["step"].as_i64() >= Some(3)
    })
    .await;
    set_cpu_temp(&root, 97);
    let paused = wait_paused(&client, &server, guarded).await;
    assert_eq!(paused["paused"]["reason"], "CPU 97 °C", "{paused:#}");
    assert_eq!(paused["status"], "running", "a paused run keeps its slot");
    let at = paused["paused"]["step"].as_i64().unwrap();
    assert!((3..ITERS as i64).contains(&at), "paused at {at}");
    let checkpoints = paused["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.last().unwrap()["step"], at, "{paused:#}");
    let run_dir = setup.data_dir.join(format!("runs/{guarded}"));
    assert!(run_dir
        .join(format!("{at:07}_adapters.safetensors"))
        .is_file());
    // It holds: no worker, no progress, the page says why.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = get_json(&client, &server.url(&format!("/api/runs/{guarded}"))).await;
    assert_eq!(held["step"].as_i64(), Some(at));
    let run_page = page(&client, &server.url(&format!("/runs/{guarded}"))).await;
    assert!(run_page.contains("paused: CPU 97 °C"), "{run_page}");
    assert!(
        run_page.contains("id=\"resume\""),
        "a paused run offers Resume"
    );
    // The runs list says it waits, in the API and on the page.
    let listed = get_json(&client, &server.url("/api/runs")).await;
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|run| run["id"] == guarded)
        .expect("the paused run is listed");
    assert_eq!(row["paused"], true, "{row:#}");
    let runs_page = page(&client, &server.url("/")).await;
    assert!(
        runs_page.contains(r#"<span class="status paused">paused</span>"#),
        "{runs_page}"
    );
    // 90 °C is under the threshold but not under it by the hysteresis.
    set_cpu_temp(&root, 90);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = get_json(&client, &server.url(&format!("/api/runs/{guarded}"))).await;
    assert!(!still["paused"].is_null(), "resumed at 90 °C: {still:#}");
    set_cpu_temp(&root, 80);
    let done = wait_for_status(&client, &server, guarded, 600, "done").await;
    assert!(done["paused"].is_null());
    assert_eq!(done["step"].as_u64(), Some(ITERS));

    let events = event_kinds(&client, &server, guarded).await;
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    let pause = kinds
        .iter()
        .position(|k| *k == "paused")
        .expect("a paused event");
    let resume = kinds
        .iter()
        .position(|k| *k == "resumed")
        .expect("a resumed event");
    assert!(pause < resume);
    assert_eq!(events[pause].1["reason"], "CPU 97 °C");
    assert_eq!(events[resume].1["by"], "guard");
    assert!(events[resume].1["paused_seconds"].as_f64().unwrap() >= 5.0);
    assert_eq!(
        kinds.iter().filter(|k| **k == "report").count() as u64,
        ITERS,
        "no step trained twice"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "started").count(), 2);
    // Samples while it held show the heat, with the step it held at.
    let hot: Vec<&Value> = events[pause..resume]
        .iter()
        .filter(|(kind, _)| kind == "system")
        .map(|(_, sample)| sample)
        .collect();
    assert!(hot.len() >= 3, "{hot:?}");
    assert!(hot.iter().all(|sample| sample["step"] == at));
    assert!(hot.iter().any(|sample| sample["cpu_temp_c"] == 97.0));

    let difference = adapter_difference(&setup.data_dir.join(format!("runs/{straight}")), &run_dir);
    assert!(
        difference <= 1e-6,
        "paused and straight adapters differ by {difference}"
    );

    // The samples are in the run's metrics.
    let metrics = get_json(
        &client,
        &server.url(&format!("/api/runs/{guarded}/metrics.json")),
    )
    .await;
    let system = metrics["system"].as_array().unwrap();
    assert!(system.iter().any(|sample| sample["cpu_temp_c"] == 97.0));
    let csv = client
        .get(server.url(&format!("/api/runs/{guarded}/metrics.csv")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = header.iter().position(|c| *c == "cpu_temp_c").unwrap();
    let row_at_pause = csv
        .lines()
        .find(|line| line.split(',').next() == Some(&at.to_string()))
        .unwrap();
    // The step's last sample: the one that let it resume.
    assert_eq!(
        row_at_pause.split(',').nth(column),
        Some("80.0"),
        "{row_at_pause}"
    );

    // Stop and a manual resume work while paused.
    set_cpu_temp(&root, 99);
    let stopped_run = create_run(&client, &server, body.clone()).await;
    let paused = wait_paused(&client, &server, stopped_run).await;
    let at = paused["paused"]["step"].as_i64().unwrap();
    let stopped = stop_run(&client, &server, stopped_run).await;
    assert_eq!(stopped["step"].as_i64(), Some(at));
    assert!(stopped["paused"].is_null());
    assert_eq!(
        run_action(&client, &server, stopped_run, "resume").await,
        200
    );
    // Still hot: it pauses again, and the user resumes it anyway.
    wait_paused(&client, &server, stopped_run).await;
    assert_eq!(
        run_action(&client, &server, stopped_run, "resume").await,
        200
    );
    let done = wait_for_status(&client, &server, stopped_run, 600, "done").await;
    assert_eq!(done["step"].as_u64(), Some(ITERS));
    let events = event_kinds(&client, &server, stopped_run).await;
    let by: Vec<&str> = events
        .iter()
        .filter(|(kind, _)| kind == "resumed")
        .map(|(_, body)| body["by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["user"]);
    let difference = adapter_difference(
        &setup.data_dir.join(format!("runs/{straight}")),
        &setup.data_dir.join(format!("runs/{stopped_run}")),
    );
    assert!(difference <= 1e-6, "{difference}");
}

#[tokio::test]
async fn a_machine_without_sensors_has_no_temperature_and_an_inactive_guard() {
    let setup = tiny_setup();
    let root = setup.temp.path().join("bare");
    std::fs::create_dir_all(&root).unwrap();
    let server = setup.serve(&[("LORALAB_SYSTEM_ROOT", root.to_str().unwrap())]);
    let client = reqwest::Client::new();
    let system = get_json(&client, &server.url("/api/system")).await;
    assert_eq!(
        system["sample"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["time"],
        "nothing but the time (this test expects a machine without NVIDIA): {system:#}"
    );
    let system_page = page(&client, &server.url("/system")).await;
    assert!(
        system_page.contains("No temperature sensor found."),
        "{system_page}"
    );
    assert!(
        system_page.contains("Thermal guard inactive: no temperature sensor found."),
        "{system_page}"
    );
    assert!(
        system_page.contains("href=\"/system\""),
        "the nav links to it"
    );

    let id = create_run(&client, &server, tiny_run(json!({"iters": 10}))).await;
    wait_for_status(&client, &server, id, 300, "done").await;
    let run_page = page(&client, &server.url(&format!("/runs/{id}"))).await;
    assert!(
        run_page.contains("Thermal guard inactive: no temperature sensor found."),
        "{run_page}"
    );
    assert!(
        !run_page.contains("CPU °C"),
        "no temperature line on the chart"
    );

    // `loralab system` prints the same figures.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .arg("system")
        .env("LORALAB_SYSTEM_ROOT", &root)
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed.as_object().unwrap().len(), 1, "{printed}");
    fixture_root(&root);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .arg("system")
        .env("LORALAB_SYSTEM_ROOT", &root)
        .output()
        .unwrap();
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["cpu_temp_c"], 50.0, "{printed}");
    assert_eq!(printed["memory_available_bytes"], 6_000_000u64 * 1024);
}

#[tokio::test]
async fn memory_pressure_pauses_the_run_the_same_way() {
    let setup = tiny_setup();
    let root = setup.temp.path().join("machine");
    fixture_root(&root);
    let server = setup.serve(&[("LORALAB_SYSTEM_ROOT", root.to_str().unwrap())]);
    let client = reqwest::Client::new();
    let body = tiny_run(json!({
        "iters": ITERS,
        "save_every": 1000,
        "steps_per_eval": 500,
        "thermal_guard": {"memory_pressure_pause_percent": 30.0},
    }));
    let id = create_run(&client, &server, body).await;
    wait_for(&client, &server, id, 300, "step 3", |run| {
        run["step"].as_i64() >= Some(3)
    })
    .await;
    let pressure = |some: f64| {
        format!("some avg10={some:.2} avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    };
    write(&root, "proc/pressure/memory", &pressure(35.0));
    let paused = wait_paused(&client, &server, id).await;
    assert_eq!(
        paused["paused"]["reason"], "memory pressure 35 %",
        "{paused:#}"
    );
    let run_page = page(&client, &server.url(&format!("/runs/{id}"))).await;
    assert!(
        run_page.contains("paused: memory pressure 35 %"),
        "{run_page}"
    );
    assert!(
        run_page.contains("Memory guard on: pauses at 30 % memory pressure."),
        "{run_page}"
    );
    // Under the threshold but not under half of it: it holds.
    write(&root, "proc/pressure/memory", &pressure(20.0));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = get_json(&client, &server.url(&format!("/api/runs/{id}"))).await;
    assert!(!still["paused"].is_null(), "resumed at 20 %: {still:#}");
    write(&root, "proc/pressure/memory", &pressure(5.0));
    let done = wait_for_status(&client, &server, id, 600, "done").await;
    assert_eq!(done["step"].as_u64(), Some(ITERS));
}
