//! The inference worker process (`loralab inference-worker`) driven over
//! its JSON lines, for the tests that talk to it directly.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use engine::config::{ComputeDtype, LoraParameters};
use engine::lora::{self, AdapterSettings};
use engine::models::load_hf_folder;
use engine::protocol::{InferenceCommand, InferenceEvent};
use mlx_rs::{random, Array};

/// A running worker: commands in, events out (read on a thread so a test
/// can wait with a limit).
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    events: Receiver<InferenceEvent>,
}

impl Worker {
    pub fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loralab"))
            .arg("inference-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the inference worker");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event: InferenceEvent =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            events,
        }
    }

    /// A worker with `model` loaded.
    pub fn start_loaded(model: &Path) -> Self {
        let mut worker = Self::start();
        worker.send(&InferenceCommand::Load {
            model: model.display().to_string(),
        });
        assert!(matches!(worker.next(), InferenceEvent::Loaded { .. }));
        worker
    }

    pub fn send(&mut self, command: &InferenceCommand) {
        let line = serde_json::to_string(command).unwrap();
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the process to end (after `Shutdown`).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn next(&self) -> InferenceEvent {
        self.events
            .recv_timeout(Duration::from_secs(120))
            .expect("no event from the worker within 2 minutes")
    }

    /// Events up to and including the one that ends request `id` (or, for
    /// `None`, the load).
    pub fn until_end(&self) -> Vec<InferenceEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next();
            let last = matches!(
                event,
                InferenceEvent::Loaded { .. }
                    | InferenceEvent::Finished { .. }
                    | InferenceEvent::Evaluated { .. }
                    | InferenceEvent::Error { .. }
            );
            events.push(event);
            if last {
                return events;
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An mlx-lm adapter folder for the tiny model, with random non-zero A and
/// B (a trained adapter's shape, without the training).
pub fn write_adapter(model_dir: &Path, dir: &Path, seed: u64) {
    let settings = AdapterSettings::from_parameters(
        -1,
        &LoraParameters {
            rank: 4,
            scale: 10.0,
            ..LoraParameters::default()
        },
    );
    let mut model = load_hf_folder(model_dir, ComputeDtype::Float32).unwrap();
    lora::attach(&mut model, &settings, 0).unwrap();
    let mut key = random::key(seed).unwrap();
    let weights: Vec<(String, Array)> = lora::adapter_names(&model)
        .into_iter()
        .zip(model.lora_params())
        .map(|(name, current)| {
            let (next, sub) = random::split(&key, 2).unwrap();
            key = next;
            let value = random::normal::<f32>(current.shape(), None, Some(0.2), &sub).unwrap();
            (name, value)
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    Array::save_safetensors(
        weights.iter().map(|(k, v)| (k.as_str(), v)),
        None,
        dir.join(lora::ADAPTER_WEIGHTS_FILE),
    )
    .unwrap();
    std::fs::write(
        dir.join(lora::ADAPTER_CONFIG_FILE),
        r#"{"fine_tune_type": "lora", "num_layers": -1, "lora_parameters": {"rank": 4, "scale": 10.0, "dropout": 0.0}}"#,
    )
    .unwrap();
}
