//! A large chat dataset inspected with the shipped SmolLM2's tokenizer:
//! the first inspection tokenizes every example; the dataset page and the
//! memory check of every later run creation read the stored figures.
//! Prints both times.
//!
//! `cargo bench -p server --bench dataset_inspection`
//! (LORALAB_BENCH_EXAMPLES changes the size, default 100,000).

use std::time::Instant;

use engine::config::TrainConfig;
use engine::data::Split;
use server::datasets::TokenizerCache;
use server::store::NewModel;

fn main() {
    let examples: usize = std::env::var("LORALAB_BENCH_EXAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let model_path = std::env::var("LORALAB_DEFAULT_MODEL")
        .expect("LORALAB_DEFAULT_MODEL (written by scripts/setup.sh into .cargo/config.toml)");
    let temp = tempfile::tempdir().unwrap();
    let (_, store) = server::setup::prepare(&temp.path().join("data"), None).unwrap();
    store
        .upsert_model(&NewModel {
            name: "smollm2".into(),
            source: "gguf".into(),
            location: model_path,
            architecture: Some("llama".into()),
            parameters: None,
            quantization: None,
            size_bytes: None,
            builtin: false,
        })
        .unwrap();
    let model = store.model_by_name("smollm2").unwrap().unwrap();
    let folder = temp.path().join("chats");
    std::fs::create_dir_all(&folder).unwrap();
    let mut text = String::new();
    for i in 0..examples {
        text.push_str(&serde_json::json!({"messages": [
            {"role": "user", "content": format!("Question {i}: how do I keep a ship's deck dry in a storm?")},
            {"role": "assistant", "content": format!("Answer {i}: lash the hatches, bail often, and keep the scuppers clear, matey.")},
        ]}).to_string());
        text.push('\n');
    }
    std::fs::write(folder.join("train.jsonl"), text).unwrap();
    let tokenizers = TokenizerCache::default();
    let inspections = server::inspections::Inspections::new(std::sync::Arc::new(store));
    let cfg = TrainConfig::default();
    let timed = |label: &str| {
        let tic = Instant::now();
        let inspection = inspections
            .inspect(&tokenizers, &model, &folder, &cfg, 3)
            .unwrap();
        let seconds = tic.elapsed().as_secs_f64();
        let tokens = inspection
            .report
            .split(Split::Train)
            .tokens
            .clone()
            .unwrap();
        println!(
            "{label}: {:.2} ms ({} training examples, {} tokens, longest {})",
            1000.0 * seconds,
            tokens.examples,
            tokens.tokens,
            tokens.max_length
        );
        seconds
    };
    let first = timed("first inspection (tokenizes)");
    let again = timed("again (stored)");
    let third = timed("and again");
    println!(
        "RESULT examples={examples} first_s={first:.3} stored_ms={:.2}",
        1000.0 * again.min(third)
    );
}
