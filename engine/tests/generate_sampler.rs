//! The sampler on hand-made logits: greedy, temperature, top-k, top-p,
//! repetition penalty, seeds, and the errors for bad settings.

use engine::generate::sampler::{apply_repetition_penalty, argmax, Sampler, SamplingParams};

fn ln_probs(p: &[f64]) -> Vec<f32> {
    p.iter().map(|p| p.ln() as f32).collect()
}

fn frequencies(params: SamplingParams, logits: &[f32], draws: usize) -> Vec<f64> {
    let mut sampler = Sampler::new(params).unwrap();
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..draws {
        let mut row = logits.to_vec();
        counts[sampler.sample(&mut row, &[]).unwrap() as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / draws as f64).collect()
}

fn sampled(temperature: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        seed: 11,
        ..Default::default()
    }
}

#[test]
fn greedy_picks_the_largest_logit_and_the_first_of_ties() {
    assert_eq!(argmax(&[0.1, 3.0, -2.0, 3.0]), 1);
    assert_eq!(argmax(&[f32::NAN, -1.0, -0.5]), 2);
    let mut sampler = Sampler::new(SamplingParams::default()).unwrap();
    assert!(!sampler.needs_logits());
    assert_eq!(sampler.sample(&mut [0.0, 5.0, 4.9], &[]).unwrap(), 1);
}

#[test]
fn temperature_one_draws_by_the_softmax() {
    let f = frequencies(sampled(1.0), &ln_probs(&[0.5, 0.3, 0.2]), 20_000);
    for (got, want) in f.iter().zip([0.5, 0.3, 0.2]) {
        assert!((got - want).abs() < 0.015, "{f:?}");
    }
}

#[test]
fn low_temperature_sharpens_and_high_flattens() {
    let logits = ln_probs(&[0.5, 0.3, 0.2]);
    // p^(1/0.5) normalized: 0.25, 0.09, 0.04 -> 0.658, 0.237, 0.105.
    let sharp = frequencies(sampled(0.5), &logits, 20_000);
    assert!((sharp[0] - 0.658).abs() < 0.015, "{sharp:?}");
    assert!((sharp[2] - 0.105).abs() < 0.015, "{sharp:?}");
    // p^(1/4): 0.841, 0.740, 0.669 -> 0.374, 0.329, 0.297.
    let flat = frequencies(sampled(4.0), &logits, 20_000);
    assert!((flat[0] - 0.374).abs() < 0.015, "{flat:?}");
    assert!((flat[2] - 0.297).abs() < 0.015, "{flat:?}");
}

#[test]
fn top_k_keeps_the_k_most_likely() {
    let params = SamplingParams {
        top_k: 2,
        ..sampled(1.0)
    };
    let f = frequencies(params, &ln_probs(&[0.2, 0.5, 0.3]), 20_000);
    assert_eq!(f[0], 0.0, "{f:?}");
    assert!((f[1] - 0.625).abs() < 0.015, "{f:?}");
    assert!((f[2] - 0.375).abs() < 0.015, "{f:?}");
}

#[test]
fn top_p_keeps_the_smallest_set_reaching_p() {
    let logits = ln_probs(&[0.3, 0.5, 0.15, 0.05]);
    // 0.5 < 0.6, 0.5 + 0.3 >= 0.6: tokens 1 and 0 stay.
    let params = SamplingParams {
        top_p: 0.6,
        ..sampled(1.0)
    };
    let f = frequencies(params, &logits, 20_000);
    assert_eq!((f[2], f[3]), (0.0, 0.0), "{f:?}");
    assert!((f[1] - 0.625).abs() < 0.015, "{f:?}");
    // A nucleus smaller than the top token is the top token alone.
    let params = SamplingParams {
        top_p: 0.1,
        ..sampled(1.0)
    };
    assert_eq!(frequencies(params, &logits, 500)[1], 1.0);
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
    let mut logits = vec![2.0, -1.0, 0.5, 3.0];
    // Token 0 twice: penalized once.
    apply_repetition_penalty(&mut logits, &[0, 1, 0, 99], 2.0);
    assert_eq!(logits, vec![1.0, -2.0, 0.5, 3.0]);

    // Only the last `repetition_context` tokens count: token 3 (seen long
    // ago) keeps its lead over token 2 (seen just now).
    let params = SamplingParams {
        repetition_penalty: 10.0,
        repetition_context: 2,
        ..Default::default()
    };
    let mut sampler = Sampler::new(params).unwrap();
    assert!(sampler.needs_logits());
    let history = [3, 0, 0, 2];
    assert_eq!(
        sampler.sample(&mut [1.0, 0.0, 4.0, 3.0], &history).unwrap(),
        3
    );
    assert_eq!(
        sampler.sample(&mut [1.0, 0.0, 4.0, 5.0], &[2, 3]).unwrap(),
        0
    );
}

#[test]
fn a_seed_fixes_the_draws() {
    let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
    let draw = |seed: u64| -> Vec<u32> {
        let mut s = Sampler::new(SamplingParams {
            seed,
            ..sampled(1.0)
        })
        .unwrap();
        (0..40)
            .map(|_| s.sample(&mut logits.clone(), &[]).unwrap())
            .collect()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
}

#[test]
fn bad_settings_are_refused_by_name() {
    let err = |p: SamplingParams| Sampler::new(p).err().unwrap().to_string();
    assert_eq!(
        err(SamplingParams {
            temperature: -0.5,
            ..Default::default()
        }),
        "temperature must be 0 (greedy) or positive, got -0.5"
    );
    assert_eq!(
        err(SamplingParams {
            top_p: 0.0,
            ..Default::default()
        }),
        "top_p must be in (0, 1], got 0"
    );
    assert_eq!(
        err(SamplingParams {
            repetition_penalty: 0.0,
            ..Default::default()
        }),
        "repetition_penalty must be positive, got 0"
    );
    let mut s = Sampler::new(sampled(1.0)).unwrap();
    assert_eq!(
        s.sample(&mut [], &[]).err().unwrap().to_string(),
        "cannot sample from an empty row of logits"
    );
}
