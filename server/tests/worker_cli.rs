//! `loralab train --config` on YAML and TOML files, its key errors, and the
//! worker protocol spoken directly over a real worker's stdin/stdout.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn loralab(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run loralab")
}

#[test]
fn train_runs_yaml_and_toml_configs_and_names_a_bad_key() {
    let setup = tiny_setup();
    let dir = setup.temp.path();
    engine::data::sample::write_sample_dataset(&dir.join("data")).unwrap();
    let model = setup.model_dir.display().to_string();
    std::fs::write(
        dir.join("lora.yaml"),
        format!(
            "# an mlx-lm config\nmodel: {model}\ntrain: true\nfine_tune_type: lora\noptimizer: adamw\n\
             optimizer_config:\n  adamw:\n    weight_decay: 0.0\ndata: data\nseed: 0\nnum_layers: -1\n\
             batch_size: 4\niters: 6\nval_batches: 1\nlearning_rate: 1.0e-3\nsteps_per_report: 2\n\
             steps_per_eval: 3\nadapter_path: yaml-adapters\nsave_every: 3\nmax_seq_length: 128\n\
             lora_parameters:\n  keys: [\"self_attn.q_proj\", \"self_attn.v_proj\"]\n  rank: 4\n  scale: 10.0\n  dropout: 0.0\n\
             report_to: null\n"
        ),
    )
    .unwrap();
    let output = loralab(&["train", "--config", "lora.yaml"], dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let iter2 = stdout
        .lines()
        .find(|l| l.starts_with("Iter 2: Train loss "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        iter2.contains(", Learning Rate 1.000e-03, It/sec "),
        "{iter2}"
    );
    assert!(
        iter2.contains(", Trained Tokens ") && iter2.ends_with(" GB"),
        "{iter2}"
    );
    assert!(stdout.contains("Iter 0: Val loss "), "{stdout}");
    assert!(
        stdout.contains("Iter 3: Saved adapter weights to "),
        "{stdout}"
    );
    assert!(dir.join("yaml-adapters/adapters.safetensors").is_file());
    assert!(dir
        .join("yaml-adapters/0000006_adapters.safetensors")
        .is_file());

    std::fs::write(
        dir.join("lora.toml"),
        format!(
            "model = \"{model}\"\ndata = \"data\"\niters = 4\nbatch_size = 4\nnum_layers = 1\n\
             steps_per_report = 4\nsteps_per_eval = 100\nval_batches = 1\nsave_every = 2\n\
             adapter_path = \"toml-adapters\"\nmax_seq_length = 128\n\n[lora_parameters]\nrank = 2\n"
        ),
    )
    .unwrap();
    let output = loralab(&["train", "--config", "lora.toml"], dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Iter 4: Train loss "), "{stdout}");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("toml-adapters/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["lora_parameters"]["rank"], 2, "{config}");

    // --resume continues after the last checkpoint.
    std::fs::write(
        dir.join("more.toml"),
        std::fs::read_to_string(dir.join("lora.toml"))
            .unwrap()
            .replace("iters = 4", "iters = 6"),
    )
    .unwrap();
    let output = loralab(&["train", "--config", "more.toml", "--resume"], dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Resuming after iter 4"), "{stdout}");
    assert!(!stdout.contains("Iter 4: Train loss"), "{stdout}");

    std::fs::write(dir.join("bad.yaml"), "model: x\nlora_layerz: 4\n").unwrap();
    let output = loralab(&["train", "--config", "bad.yaml"], dir);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.yaml: unknown key `lora_layerz`"),
        "{stderr}"
    );
    std::fs::write(dir.join("bad.toml"), "iters = \"many\"\n").unwrap();
    let output = loralab(&["train", "--config", "bad.toml"], dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml: key `iters`: invalid type"),
        "{stderr}"
    );
}

#[test]
fn a_worker_reports_a_missing_model_as_a_failed_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loralab"))
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let command = serde_json::json!({
        "command": "train",
        "config": {"model": "/no/such/model", "data": "/no/such/data"},
        "run_dir": dir.path().join("run").display().to_string(),
        "resume": false,
    });
    writeln!(child.stdin.as_mut().unwrap(), "{command}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let event: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(event["event"], "failed");
    assert_eq!(
        event["reason"],
        "model /no/such/model does not exist: give a GGUF file, a model folder (config.json + *.safetensors) or a registered model name"
    );
}
