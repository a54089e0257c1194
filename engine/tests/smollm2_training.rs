//! The training service's acceptance test: a few minutes of LoRA on the CPU
//! turn the shipped SmolLM2-135M-Instruct GGUF into a model that answers
//! held-out questions in the sample dataset's style ("Ahoy! ... Yo-ho-ho!"),
//! which the base model never does, and lower its validation loss.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use common::smollm2_path;
use engine::config::{ComputeDtype, LoraParameters, TrainConfig};
use engine::data::load_dataset;
use engine::data::sample::{follows_style, GREETING};
use engine::generate::{chat_prompt, generate_text, GenerateParams, Message};
use engine::gguf::load_gguf_model;
use engine::models::{build_model, Model};
use engine::protocol::Event;
use engine::tokenizer::TokenizerBundle;
use engine::train::{train, TrainData};

/// Held-out questions answered before and after training.
const QUESTIONS: usize = 5;

/// Training steps: about 3 minutes on a busy 2-core CPU (175 s measured).
const ITERS: usize = 40;

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample-dataset")
}

/// The user turns of the test split.
fn test_questions() -> Vec<String> {
    std::fs::read_to_string(sample_dir().join("test.jsonl"))
        .unwrap()
        .lines()
        .take(QUESTIONS)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["messages"][0]["content"].as_str().unwrap().to_string()
        })
        .collect()
}

fn answers(model: &Model, bundle: &TokenizerBundle, questions: &[String]) -> Vec<String> {
    let params = GenerateParams {
        max_tokens: 40,
        ..Default::default()
    };
    questions
        .iter()
        .map(|q| {
            let prompt = chat_prompt(bundle, &[Message::user(q)]).unwrap();
            let out = generate_text(
                model,
                &bundle.tokenizer,
                &prompt,
                &bundle.eos_token_ids,
                &params,
                |_| {},
            )
            .unwrap();
            eprintln!(
                "{q:?} -> {:?} ({:.1} prompt tok/s, {:.1} gen tok/s)",
                out.text,
                out.stats.prompt_tokens_per_second(),
                out.stats.generation_tokens_per_second()
            );
            out.text
        })
        .collect()
}

#[test]
fn a_few_minutes_of_lora_teach_smollm2_the_sample_style() {
    let mut gguf = load_gguf_model(&smollm2_path()).unwrap();
    gguf.dequantize_weights().unwrap();
    let bundle = gguf.tokenizer;
    let mut model = build_model(&gguf.config, gguf.weights, ComputeDtype::Float32).unwrap();
    let questions = test_questions();

    let before = answers(&model, &bundle, &questions);
    let styled = before
        .iter()
        .filter(|a| a.contains(GREETING) || a.contains("Yo-ho-ho"))
        .count();
    assert_eq!(
        styled, 0,
        "the base model already answers in style: {before:?}"
    );

    let cfg = TrainConfig {
        iters: ITERS,
        batch_size: 4,
        num_layers: 8,
        learning_rate: 5e-4,
        grad_clip: Some(1.0),
        mask_prompt: true,
        steps_per_report: 10,
        steps_per_eval: 1000,
        val_batches: -1,
        lora_parameters: LoraParameters {
            rank: 8,
            scale: 20.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let data = load_dataset(&sample_dir(), &bundle, &cfg).unwrap();
    let data = TrainData {
        train: data.train,
        valid: data.valid,
        test: Vec::new(),
    };
    let run = tempfile::tempdir().unwrap();
    let mut val_losses = Vec::new();
    let tic = Instant::now();
    train(
        &cfg,
        &mut model,
        &data,
        run.path(),
        false,
        &AtomicBool::new(false),
        &mut |e| match &e {
            Event::Eval { step, val_loss, .. } => val_losses.push((*step, *val_loss)),
            Event::Report {
                step, train_loss, ..
            } => eprintln!("step {step}: train loss {train_loss:.3}"),
            _ => {}
        },
    )
    .unwrap();
    let seconds = tic.elapsed().as_secs_f64();
    eprintln!("trained {ITERS} steps in {seconds:.0} s; validation loss {val_losses:?}");

    let [(0, first), (last_step, last)] = val_losses[..] else {
        panic!("expected an evaluation before and after training: {val_losses:?}");
    };
    // The trainer's last evaluation runs after the last step.
    assert_eq!(last_step, ITERS);
    assert!(
        last < first * 0.5,
        "validation loss {first:.3} -> {last:.3}"
    );

    // Every answer takes up the style: it opens with the greeting and signs
    // off. Forty steps do not yet teach every answer to stop right after
    // the sign-off (some trail on: "Yo-ho-ho-ho. Yo-ho-ho..."), so the
    // exact shape is required of a majority (3 of 5 in the recorded run).
    let after = answers(&model, &bundle, &questions);
    for answer in &after {
        assert!(
            answer.starts_with(GREETING) && answer.contains("Yo-ho-ho"),
            "not in the trained style: {answer:?}"
        );
    }
    let exact = after.iter().filter(|a| follows_style(a)).count();
    assert!(
        exact * 2 > QUESTIONS,
        "{exact} of {QUESTIONS} answers follow the style exactly: {after:?}"
    );
}
