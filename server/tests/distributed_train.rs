//! Data-parallel `loralab train` on MLX's ring backend: ranks are real
//! worker processes on 127.0.0.1 training the tiny model. N ranks must give
//! one rank's losses and adapter; a killed rank must end the run at once,
//! naming it; bad launches are refused before any rank starts.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use mlx_rs::Array;
use serde_json::Value;

fn loralab(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run loralab")
}

fn config(model: &Path, adapters: &str, extra: &str) -> String {
    format!(
        "model: {}\ndata: dataset\nseed: 3\nnum_layers: -1\nbatch_size: 6\niters: 6\n\
         val_batches: 3\nlearning_rate: 5.0e-3\nsteps_per_report: 1\nsteps_per_eval: 3\n\
         save_every: 100\nadapter_path: {adapters}\nmax_seq_length: 96\nmask_prompt: true\n\
         lora_parameters:\n  rank: 4\n  scale: 10.0\n  dropout: 0.0\n{extra}",
        model.display()
    )
}

/// `(step, loss)` pairs.
type Losses = Vec<(u64, f64)>;

/// `(step, train loss)` of every report and `(step, val loss)` of every
/// evaluation, from `--events`.
fn losses(events: &Path) -> (Losses, Losses) {
    let text = std::fs::read_to_string(events).unwrap();
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        match event["event"].as_str() {
            Some("report") => train.push((
                event["step"].as_u64().unwrap(),
                event["train_loss"].as_f64().unwrap(),
            )),
            Some("eval") => valid.push((
                event["step"].as_u64().unwrap(),
                event["val_loss"].as_f64().unwrap(),
            )),
            _ => {}
        }
    }
    (train, valid)
}

/// Every `ranks` event of `events` (one per report of a run on several
/// ranks) holds `count` ranks' own figures, each plausible against the
/// report it follows: rank 0 computed part of the report's tokens in the
/// same time (so its rate is below the report's), all ranks' rates add up
/// to roughly the report's, and rank 0's peak memory is the report's.
fn assert_rank_figures(what: &str, events: &Path, count: usize) {
    let text = std::fs::read_to_string(events).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reports: Vec<&Value> = events.iter().filter(|e| e["event"] == "report").collect();
    let ranks: Vec<&Value> = events.iter().filter(|e| e["event"] == "ranks").collect();
    if count == 1 {
        assert!(ranks.is_empty(), "{what}: {ranks:?}");
        return;
    }
    assert_eq!(ranks.len(), reports.len(), "{what}: one per report");
    for (report, figures) in reports.iter().zip(&ranks) {
        assert_eq!(report["step"], figures["step"], "{what}");
        let global = report["tokens_per_sec"].as_f64().unwrap();
        let entries = figures["ranks"].as_array().unwrap();
        assert_eq!(entries.len(), count, "{what}: {figures}");
        let mut sum = 0.0;
        for (rank, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry["rank"].as_u64(),
                Some(rank as u64),
                "{what}: {figures}"
            );
            let rate = entry["tokens_per_sec"].as_f64().unwrap();
            let peak = entry["peak_memory_gb"].as_f64().unwrap();
            assert!(rate > 0.0, "{what}: {figures}");
            assert!(peak > 0.0 && peak < 8.0, "{what}: peak {peak} GB");
            sum += rate;
        }
        let rank_zero_rate = entries[0]["tokens_per_sec"].as_f64().unwrap();
        assert!(
            rank_zero_rate < global,
            "{what}: {rank_zero_rate} vs {global}"
        );
        // The others' steps also hold their wait for rank 0's writing.
        assert!(
            sum > 0.25 * global && sum < 1.25 * global,
            "{what}: the ranks' {sum} tokens/s against the report's {global}"
        );
        let peak = report["peak_memory_gb"].as_f64().unwrap();
        let rank_zero = entries[0]["peak_memory_gb"].as_f64().unwrap();
        assert!(
            (peak - rank_zero).abs() <= 1e-5 * peak,
            "{what}: {peak} vs {rank_zero}"
        );
    }
}

fn assert_close(what: &str, one: &[(u64, f64)], many: &[(u64, f64)]) {
    assert_eq!(one.len(), many.len(), "{what}: {one:?} vs {many:?}");
    for ((step, a), (other_step, b)) in one.iter().zip(many) {
        assert_eq!(step, other_step, "{what}");
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "{what} at step {step}: {a} vs {b}"
        );
    }
}

fn adapters(dir: &Path) -> HashMap<String, Array> {
    Array::load_safetensors(dir.join("adapters.safetensors")).unwrap()
}

/// Every tensor equal to 1e-4 relative (Frobenius norm of the difference
/// over the tensor's): Adam's normalised steps carry the ranks' different
/// float summation order into single elements, not into the whole.
fn assert_same_adapters(one: &HashMap<String, Array>, many: &HashMap<String, Array>) {
    assert_eq!(one.len(), many.len());
    for (name, a) in one {
        let (a, b) = (a.as_slice::<f32>(), many[name].as_slice::<f32>());
        let norm = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt();
        assert!(norm > 0.0, "{name} is all zeros: nothing was trained");
        assert!(diff <= 1e-4 * norm, "{name}: {diff} apart (norm {norm})");
    }
}

#[test]
fn two_and_three_ranks_train_as_one_rank_does() {
    let setup = tiny_setup();
    let dir = setup.temp.path();
    engine::data::sample::write_sample_dataset(&dir.join("dataset")).unwrap();
    std::fs::write(dir.join("one.yaml"), config(&setup.model_dir, "one", "")).unwrap();
    // Two ranks from the config's `gpus`, three from `--hostfile`.
    std::fs::write(
        dir.join("two.yaml"),
        config(&setup.model_dir, "two", "gpus: 2\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("three.yaml"),
        config(&setup.model_dir, "three", ""),
    )
    .unwrap();
    // The hostfile's hosts are this machine.
    let local = r#"{"ssh": "localhost", "ips": ["127.0.0.1"]}"#;
    std::fs::write(
        dir.join("hosts.json"),
        format!("{{\"backend\": \"ring\", \"hosts\": [{local}, {local}, {local}]}}"),
    )
    .unwrap();

    let runs: [(&str, &[&str]); 3] = [
        ("one", &[]),
        ("two", &[]),
        ("three", &["--hostfile", "hosts.json"]),
    ];
    for (name, launch) in runs {
        let config = format!("{name}.yaml");
        let events = format!("{name}.jsonl");
        let mut args = vec!["train", "--config", &config, "--events", &events];
        args.extend_from_slice(launch);
        let output = loralab(&args, dir);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stdout}\n{stderr}");
        // Rank 0 alone reports: each line once.
        assert_eq!(
            stdout.matches("Iter 6: Train loss ").count(),
            1,
            "{name}: {stdout}"
        );
        if name != "one" {
            assert!(stderr.contains("Started rank 1 (pid "), "{stderr}");
            assert!(
                stdout.contains("Iter 6: rank 0 ") && stdout.contains("; rank 1 "),
                "{name}: {stdout}"
            );
        }
        let count = match name {
            "one" => 1,
            "two" => 2,
            _ => 3,
        };
        assert_rank_figures(name, &dir.join(&events), count);
    }
    let (train_one, valid_one) = losses(&dir.join("one.jsonl"));
    assert_eq!(train_one.len(), 6);
    assert_eq!(valid_one.iter().map(|v| v.0).collect::<Vec<_>>(), [0, 3, 6]);
    let one = adapters(&dir.join("one"));
    for name in ["two", "three"] {
        let (train, valid) = losses(&dir.join(format!("{name}.jsonl")));
        assert_close(&format!("{name} train loss"), &train_one, &train);
        assert_close(&format!("{name} val loss"), &valid_one, &valid);
        assert_same_adapters(&one, &adapters(&dir.join(name)));
    }
    // Training moved the adapter: equal adapters are not equal zeros.
    assert!(train_one[5].1 < train_one[0].1, "{train_one:?}");
}

#[test]
fn a_full_fine_tune_on_two_ranks_trains_as_on_one_and_logs_once() {
    let setup = tiny_setup();
    let dir = setup.temp.path();
    engine::data::sample::write_sample_dataset(&dir.join("dataset")).unwrap();
    let full = "fine_tune_type: full\ntensorboard: true\n";
    std::fs::write(dir.join("one.yaml"), config(&setup.model_dir, "one", full)).unwrap();
    std::fs::write(
        dir.join("two.yaml"),
        config(&setup.model_dir, "two", &format!("{full}gpus: 2\n")),
    )
    .unwrap();
    for name in ["one", "two"] {
        let config = format!("{name}.yaml");
        let events = format!("{name}.jsonl");
        let output = loralab(&["train", "--config", &config, "--events", &events], dir);
        assert!(
            output.status.success(),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (train_one, valid_one) = losses(&dir.join("one.jsonl"));
    let (train_two, valid_two) = losses(&dir.join("two.jsonl"));
    assert_eq!(train_one.len(), 6);
    assert_close("train loss", &train_one, &train_two);
    assert_close("val loss", &valid_one, &valid_two);
    let one = adapters(&dir.join("one"));
    // Every weight of the fixture's two blocks: 7 matrices and 2 norms each.
    assert_eq!(one.len(), 2 * 9);
    assert!(one.contains_key("model.layers.0.self_attn.q_proj.weight"));
    assert_same_adapters(&one, &adapters(&dir.join("two")));
    assert!(train_one[5].1 < train_one[0].1, "{train_one:?}");
    // `<adapter_path>/tensorboard/`, one event file: rank 0 alone writes.
    for name in ["one", "two"] {
        let files = std::fs::read_dir(dir.join(name).join("tensorboard"))
            .unwrap()
            .count();
        assert_eq!(files, 1, "{name}");
    }
}

/// Lines of a child's pipe, as they come.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

fn wait_for(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(prefix) {
                    return line;
                }
            }
            Err(_) => panic!("no `{prefix}` in {seen:#?}"),
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim()
            .starts_with('Z')
    })
}

#[test]
fn a_killed_rank_ends_the_run_naming_it_and_one_rank_resumes() {
    let setup = tiny_setup();
    let dir = setup.temp.path();
    engine::data::sample::write_sample_dataset(&dir.join("dataset")).unwrap();
    let long = config(&setup.model_dir, "adapters", "")
        .replace("iters: 6\n", "iters: 100000\n")
        .replace("save_every: 100\n", "save_every: 2\n")
        .replace("steps_per_eval: 3\n", "steps_per_eval: 100000\n");
    std::fs::write(dir.join("long.yaml"), &long).unwrap();
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["train", "--config", "long.yaml", "--ranks", "2"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(launcher.stdout.take().unwrap());
    let stderr = lines_of(launcher.stderr.take().unwrap());
    let mut seen = Vec::new();
    let pid_of = |line: &str| -> u32 {
        let after = line.split("(pid ").nth(1).unwrap();
        after.split(')').next().unwrap().parse().unwrap()
    };
    let first = pid_of(&wait_for(&stderr, &mut seen, "Started rank 0 (pid "));
    let second = pid_of(&wait_for(&stderr, &mut seen, "Started rank 1 (pid "));
    wait_for(&stdout, &mut seen, "Iter 4: Saved adapter weights");

    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &second.to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = launcher.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the launcher still runs 10 s after a rank was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    let messages: Vec<String> = stderr.iter().collect();
    let all = messages.join("\n");
    assert!(
        all.contains(
            "error: rank 1 was killed by signal 9 (SIGKILL); the other ranks were stopped"
        ),
        "{all}"
    );
    assert!(!alive(first) && !alive(second), "a rank outlived the run");

    // One rank continues from the last checkpoint.
    let last = std::fs::read_dir(dir.join("adapters"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix("_adapters.safetensors")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap();
    assert!(last >= 4, "{last}");
    std::fs::write(
        dir.join("resume.yaml"),
        long.replace("iters: 100000\n", &format!("iters: {}\n", last + 2)),
    )
    .unwrap();
    let output = loralab(&["train", "--config", "resume.yaml", "--resume"], dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("Resuming after iter {last}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Iter {}: Train loss ", last + 2)),
        "{stdout}"
    );
}

#[test]
fn bad_launches_are_refused_before_any_rank_starts() {
    let setup = tiny_setup();
    let dir = setup.temp.path();
    engine::data::sample::write_sample_dataset(&dir.join("dataset")).unwrap();
    std::fs::write(dir.join("run.yaml"), config(&setup.model_dir, "a", "")).unwrap();
    std::fs::write(dir.join("broken.json"), "[{\"ssh\": \"a\",").unwrap();
    std::fs::write(
        dir.join("far.json"),
        r#"[{"ssh": "localhost", "ips": ["127.0.0.1"]}, {"ssh": "no-such-host.invalid", "ips": ["192.0.2.1"]}]"#,
    )
    .unwrap();
    let refused = |args: &[&str], expected: &str| {
        let mut all = vec!["train", "--config", "run.yaml"];
        all.extend_from_slice(args);
        let output = loralab(&all, dir);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("Started rank"), "{args:?}: {stderr}");
        assert!(!dir.join("a").exists(), "{args:?} trained");
    };
    refused(
        &["--hostfile", "broken.json"],
        "broken.json: not JSON: EOF while parsing",
    );
    refused(
        &["--hostfile", "far.json"],
        "host `no-such-host.invalid` (rank 1) is unreachable over ssh: ",
    );
    refused(
        &["--ranks", "4"],
        "run.yaml: batch_size 6 does not divide among 4 ranks",
    );
    refused(
        &["--ranks", "2", "--backend", "jaccl"],
        "this MLX build has no `jaccl` distributed backend (it has: ",
    );
}
