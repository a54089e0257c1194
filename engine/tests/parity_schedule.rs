//! Learning-rate schedules against mlx-lm's `build_schedule`, step by step
//! (needs the peer: scripts/setup-peer.sh). MLX computes schedules in f32,
//! so values agree to a few float32 ulps (cos may differ in the last bit).

mod common;

use common::run_peer;
use engine::config::LrSchedule;
use engine::train::schedule::Schedule;

fn check(schedule: LrSchedule, steps: usize) {
    let json = serde_json::to_string(&schedule).unwrap();
    let theirs: Vec<f64> =
        serde_json::from_str(run_peer("peer_schedule.py", &[&json, &steps.to_string()]).trim())
            .unwrap();
    let ours = Schedule::from_lr_schedule(&schedule).unwrap();
    assert_eq!(theirs.len(), steps + 1);
    for (step, want) in theirs.iter().enumerate() {
        let got = ours.at(step);
        assert!(
            (got - want).abs() <= 4.0 * f64::from(f32::EPSILON) * want.abs() + 1e-12,
            "{}: step {step}: {got} vs mlx-lm {want}",
            schedule.name
        );
    }
}

#[test]
fn schedules_match_mlx_lm_step_by_step() {
    check(
        LrSchedule {
            name: "cosine_decay".into(),
            arguments: vec![2e-4, 40.0, 1e-6],
            warmup: 7,
            warmup_init: 1e-7,
        },
        60,
    );
    check(
        LrSchedule {
            name: "linear_schedule".into(),
            arguments: vec![1e-3, 0.0, 25.0],
            warmup: 0,
            warmup_init: 0.0,
        },
        30,
    );
    check(
        LrSchedule {
            name: "exponential_decay".into(),
            arguments: vec![1e-3, 0.9],
            warmup: 3,
            warmup_init: 0.0,
        },
        20,
    );
    check(
        LrSchedule {
            name: "step_decay".into(),
            arguments: vec![1e-3, 0.5, 4.0],
            warmup: 0,
            warmup_init: 0.0,
        },
        20,
    );
}
