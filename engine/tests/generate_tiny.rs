//! The generator on a tiny random model: cached decoding gives the tokens
//! that full recomputation gives, stops on stop tokens and at max_tokens,
//! and sampling is reproducible by seed.

mod common;

use common::*;
use engine::config::ComputeDtype;
use engine::generate::{FinishReason, GenerateParams, Generator, SamplingParams};
use engine::models::{load_hf_folder, Model};
use mlx_rs::ops::indexing::{argmax, IndexOp};
use mlx_rs::Array;

fn tiny_model() -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), &Tiny::llama());
    let model = load_hf_folder(dir.path(), ComputeDtype::Float32).unwrap();
    (dir, model)
}

/// Greedy decoding without a cache: the whole sequence through the model
/// at every step.
fn greedy_by_recomputing(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        let tokens = Array::from_slice(&seq, &[1, seq.len() as i32]);
        let logits = model.forward(&tokens).unwrap();
        let next = argmax(logits.index((0, -1)), None).unwrap();
        seq.push(next.try_item_exact::<u32>().unwrap());
    }
    seq[prompt.len()..].to_vec()
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling: SamplingParams::default(),
    }
}

fn run(model: &Model, prompt: &[u32], stop: &[u32], params: &GenerateParams) -> Vec<u32> {
    Generator::new(model, prompt, stop, params)
        .unwrap()
        .collect::<anyhow::Result<Vec<u32>>>()
        .unwrap()
}

#[test]
fn cached_greedy_decoding_equals_recomputing_everything() {
    let (_dir, model) = tiny_model();
    let prompt = [5u32, 17, 200, 3, 42, 9];
    let want = greedy_by_recomputing(&model, &prompt, 24);
    let mut generator = Generator::new(&model, &prompt, &[], &greedy(24)).unwrap();
    let got: Vec<u32> = generator.by_ref().map(Result::unwrap).collect();
    assert_eq!(got, want);
    assert_eq!(generator.finish_reason(), Some(FinishReason::Length));
    let stats = generator.stats();
    assert_eq!((stats.prompt_tokens, stats.generated_tokens), (6, 24));
    assert!(stats.prompt_seconds > 0.0 && stats.generation_seconds > 0.0);
    assert!(stats.generation_tokens_per_second() > 0.0);
}

#[test]
fn a_prompt_longer_than_one_prefill_chunk_decodes_the_same() {
    let (_dir, model) = tiny_model();
    // 700 tokens: two prefill chunks (512 + 188).
    let prompt: Vec<u32> = (0..700u32).map(|i| 1 + (i * 37 + i / 5) % 255).collect();
    let want = greedy_by_recomputing(&model, &prompt, 6);
    assert_eq!(run(&model, &prompt, &[], &greedy(6)), want);
}

#[test]
fn a_stop_token_ends_the_generation_and_is_not_yielded() {
    let (_dir, model) = tiny_model();
    let prompt = [5u32, 17, 200, 3, 42, 9];
    let free = greedy_by_recomputing(&model, &prompt, 24);
    // The first token that did not appear before it, so stopping on it
    // cuts the output exactly there.
    let k = (1..free.len())
        .find(|&k| !free[..k].contains(&free[k]))
        .expect("a random model repeats itself less than this");
    let mut generator = Generator::new(&model, &prompt, &[free[k], 255], &greedy(24)).unwrap();
    let got: Vec<u32> = generator.by_ref().map(Result::unwrap).collect();
    assert_eq!(got, free[..k].to_vec());
    assert_eq!(generator.finish_reason(), Some(FinishReason::Stop));
    assert_eq!(generator.stats().generated_tokens, k);
    assert_eq!(generator.next().map(|r| r.unwrap()), None);
}

#[test]
fn zero_max_tokens_yields_nothing() {
    let (_dir, model) = tiny_model();
    let mut generator = Generator::new(&model, &[1, 2], &[], &greedy(0)).unwrap();
    assert!(generator.next().is_none());
    assert_eq!(generator.finish_reason(), Some(FinishReason::Length));
}

#[test]
fn sampling_is_reproducible_by_seed() {
    let (_dir, model) = tiny_model();
    let prompt = [5u32, 17, 200, 3];
    let sample = |seed: u64| {
        let params = GenerateParams {
            max_tokens: 20,
            sampling: SamplingParams {
                temperature: 1.5,
                top_p: 0.95,
                top_k: 50,
                repetition_penalty: 1.3,
                seed,
                ..Default::default()
            },
        };
        run(&model, &prompt, &[], &params)
    };
    let a = sample(1);
    assert_eq!(a.len(), 20);
    assert_eq!(a, sample(1));
    assert_ne!(a, sample(2));
    assert_ne!(a, greedy_by_recomputing(&model, &prompt, 20));
}

#[test]
fn bad_prompts_are_refused() {
    let (_dir, model) = tiny_model();
    let err = |prompt: &[u32]| {
        Generator::new(&model, prompt, &[], &greedy(4))
            .err()
            .unwrap()
            .to_string()
    };
    assert_eq!(err(&[]), "the prompt has no tokens");
    assert_eq!(
        err(&[3, 4, 256]),
        "prompt token 2 is 256, outside the model's vocabulary of 256"
    );
}
