//! What the hardware monitor costs a training: one sample of this machine
//! (sysfs, procfs and NVML when there is a GPU), storing it as a run's
//! `system` event in SQLite, and the hourly thinning amortised over the
//! samples between two thinnings; against the step time of a real tiny
//! training in the server. While a run trains the sampler reads once a
//! second, so the overhead is (sample + store) per second of training.
//!
//! `cargo bench -p server --bench system_sampling` (`LORALAB_BENCH_SAMPLES`
//! changes the count; `LORALAB_SYSTEM_ROOT` another root).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{create_run, get_json, tiny_run, tiny_setup, wait_for_status};
use serde_json::json;
use server::store::{NewRun, Store};
use server::system::{root_from_env, Sampler};

fn per_call(total: Duration, count: usize) -> f64 {
    total.as_secs_f64() * 1e3 / count as f64
}

#[tokio::main]
async fn main() {
    let samples: usize = std::env::var("LORALAB_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);

    let mut sampler = Sampler::new(root_from_env());
    sampler.sample();
    let started = Instant::now();
    let mut last = None;
    for _ in 0..samples {
        last = Some(sampler.sample());
    }
    let sample_ms = per_call(started.elapsed(), samples);
    let last = last.unwrap_or_default();
    println!(
        "sample: {sample_ms:.3} ms ({} sensors, {} GPUs)",
        last.sensors.len(),
        last.gpus.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("bench.db")).unwrap();
    let run = store
        .insert_run(&NewRun {
            name: "bench".into(),
            model_id: None,
            dataset_id: None,
            config: Default::default(),
        })
        .unwrap();
    let mut body = serde_json::to_value(&last).unwrap();
    body["event"] = json!("system");
    // An hour and a half of samples, as a long run holds before thinning.
    let count = 5400;
    let started = Instant::now();
    for second in 0..count {
        body["time"] = json!(second as f64);
        body["step"] = json!(second);
        store.record_server_event(run, Some(second), &body).unwrap();
    }
    let store_ms = per_call(started.elapsed(), count as usize);
    let started = Instant::now();
    let removed = store.thin_system_samples(run, count as f64).unwrap();
    let thin_ms = started.elapsed().as_secs_f64() * 1e3;
    println!("store: {store_ms:.3} ms a sample; thinning {removed} of {count}: {thin_ms:.1} ms");
    // Thinning runs once every 60 samples.
    let per_second_ms = sample_ms + store_ms + thin_ms / 60.0;

    // A real training's step time, from its reports.
    let setup = tiny_setup();
    let server = setup.serve(&[]);
    let client = reqwest::Client::new();
    let id = create_run(&client, &server, tiny_run(json!({"iters": 300}))).await;
    wait_for_status(&client, &server, id, 600, "done").await;
    let metrics = get_json(
        &client,
        &server.url(&format!("/api/runs/{id}/metrics.json")),
    )
    .await;
    let reports = metrics["reports"].as_array().unwrap();
    // The first steps trace and compile the step; the rest is the steady state.
    let steady: Vec<f64> = reports
        .iter()
        .skip(reports.len() / 5)
        .map(|r| r["it_per_sec"].as_f64().unwrap())
        .collect();
    let step_ms = 1e3 * steady.len() as f64 / steady.iter().sum::<f64>();
    let samples_per_step = step_ms / 1e3;
    let overhead = per_second_ms * samples_per_step / step_ms * 100.0;
    println!(
        "tiny model step: {step_ms:.2} ms; monitor per training second: {per_second_ms:.3} ms; \
         overhead: {overhead:.3} % of the step time"
    );
}
