//! The inference worker process (`loralab inference-worker`) driven over
//! its JSON lines, on the tiny model and the shipped sample dataset:
//! `evaluate` gives what training's `evaluate` gives on the same batches,
//! several adapters are evaluated on one base load, bad splits and
//! datasets are named in errors, and `cancel` stops a generation between
//! tokens.

mod common;

use std::path::{Path, PathBuf};

use common::inference_worker::{write_adapter, Worker};
use engine::config::{ComputeDtype, TrainConfig};
use engine::data::Split;
use engine::lora;
use engine::models::load_hf_folder;
use engine::protocol::{
    EvalSettings, Evaluated, Finished, GenerationSettings, InferenceCommand, InferenceEvent,
    InferencePrompt,
};

fn write_sample_dataset(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("train.jsonl"), engine::data::sample::TRAIN_JSONL).unwrap();
    std::fs::write(dir.join("valid.jsonl"), engine::data::sample::VALID_JSONL).unwrap();
    std::fs::write(dir.join("test.jsonl"), engine::data::sample::TEST_JSONL).unwrap();
}

fn config() -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        max_seq_length: 128,
        mask_prompt: true,
        ..TrainConfig::default()
    }
}

/// Training's own figure: `train::loss::evaluate` on a freshly loaded
/// model (with the adapter attached) and freshly made batches.
fn reference_loss(model_dir: &Path, adapter: Option<&Path>, dataset: &Path, limit: i64) -> f64 {
    let mut model = load_hf_folder(model_dir, ComputeDtype::Auto).unwrap();
    if let Some(adapter) = adapter {
        lora::load_adapters(&mut model, adapter).unwrap();
    }
    let tokenizer = engine::tokenizer::TokenizerBundle::from_hf_folder(model_dir).unwrap();
    let data = engine::data::load_dataset(dataset, &tokenizer, &config()).unwrap();
    engine::train::loss::evaluate(&model, &data.valid, limit).unwrap()
}

fn evaluate(
    request: u64,
    adapter: Option<&Path>,
    weights: Option<&Path>,
    dataset: &Path,
    split: &str,
    limit: i64,
) -> InferenceCommand {
    let cfg = config();
    InferenceCommand::Evaluate {
        request,
        adapter: adapter.map(|p| p.display().to_string()),
        adapter_weights: weights.map(|p| p.display().to_string()),
        dataset: dataset.display().to_string(),
        split: split.into(),
        settings: EvalSettings {
            limit,
            ..EvalSettings::of_run(&cfg, Split::Valid)
        },
    }
}

/// The result of an evaluation's events: (loss, tokens, batches), with
/// the progress events checked to count 1..=batches of that total.
fn evaluated(events: &[InferenceEvent]) -> (f64, usize, usize) {
    let progress: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| match e {
            InferenceEvent::EvalProgress { batches, total, .. } => Some((*batches, *total)),
            _ => None,
        })
        .collect();
    match events.last().unwrap() {
        InferenceEvent::Evaluated {
            result:
                Evaluated {
                    loss,
                    perplexity,
                    tokens,
                    batches,
                    ..
                },
            ..
        } => {
            let expected: Vec<(usize, usize)> = (1..=*batches).map(|b| (b, *batches)).collect();
            assert_eq!(progress, expected);
            assert!((perplexity - loss.exp()).abs() < 1e-9 * perplexity);
            (*loss, *tokens, *batches)
        }
        other => panic!("expected `evaluated`, got {other:?} after {events:?}"),
    }
}

fn error_of(events: &[InferenceEvent], request: u64) -> String {
    match events.last().unwrap() {
        InferenceEvent::Error {
            request: Some(id),
            reason,
        } if *id == request => reason.clone(),
        other => panic!("expected an error for request {request}, got {other:?}"),
    }
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

struct Setup {
    _temp: tempfile::TempDir,
    model: PathBuf,
    dataset: PathBuf,
    root: PathBuf,
}

fn setup() -> Setup {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().to_path_buf();
    let model = root.join("tiny");
    engine::fixtures::write_tiny_llama(&model, 11).unwrap();
    let dataset = root.join("sample");
    write_sample_dataset(&dataset);
    Setup {
        _temp: temp,
        model,
        dataset,
        root,
    }
}

#[test]
fn evaluate_matches_training_and_swaps_adapters_on_one_base() {
    let s = setup();
    let adapters: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let dir = s.root.join(format!("adapter-{i}"));
            write_adapter(&s.model, &dir, i);
            dir
        })
        .collect();
    let mut worker = Worker::start();
    worker.send(&InferenceCommand::Load {
        model: s.model.display().to_string(),
    });
    match worker.until_end().last().unwrap() {
        InferenceEvent::Loaded { base_loads, .. } => assert_eq!(*base_loads, 1),
        other => panic!("{other:?}"),
    }

    // The bare base on every valid batch, then on the first 2.
    worker.send(&evaluate(1, None, None, &s.dataset, "valid", -1));
    let (base, tokens, batches) = evaluated(&worker.until_end());
    // 40 valid examples, 4 a batch.
    assert_eq!(batches, 10);
    assert!(tokens > 100, "{tokens}");
    let expected = reference_loss(&s.model, None, &s.dataset, -1);
    assert!(relative(base, expected) < 1e-6, "{base} vs {expected}");
    // A random byte-level model is far from the data: near ln(258).
    assert!(base > 3.0, "{base}");
    worker.send(&evaluate(2, None, None, &s.dataset, "valid", 2));
    let (first_two, two_tokens, two) = evaluated(&worker.until_end());
    assert_eq!(two, 2);
    assert!(two_tokens < tokens);
    let expected = reference_loss(&s.model, None, &s.dataset, 2);
    assert!(
        relative(first_two, expected) < 1e-6,
        "{first_two} vs {expected}"
    );

    // Three adapters: each read once, the base never again.
    let mut losses = Vec::new();
    for (i, adapter) in adapters.iter().enumerate() {
        let id = 10 + i as u64;
        worker.send(&evaluate(id, Some(adapter), None, &s.dataset, "valid", -1));
        let events = worker.until_end();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, InferenceEvent::Loaded { .. })),
            "{events:?}"
        );
        match &events[0] {
            InferenceEvent::AdapterSet {
                request,
                adapter_loads,
                ..
            } => {
                assert_eq!(*request, id);
                assert_eq!(*adapter_loads, i as u64 + 1);
            }
            other => panic!("{other:?}"),
        }
        let (loss, adapter_tokens, _) = evaluated(&events);
        assert_eq!(adapter_tokens, tokens, "the same batches");
        assert!(
            relative(loss, base) > 1e-3,
            "adapter {i}: {loss} vs base {base}"
        );
        losses.push(loss);
    }
    let expected = reference_loss(&s.model, Some(&adapters[0]), &s.dataset, -1);
    assert!(
        relative(losses[0], expected) < 1e-6,
        "{} vs {expected}",
        losses[0]
    );
    assert!(relative(losses[0], losses[1]) > 1e-4);

    // A checkpoint's weights file in place of the folder's own: adapter
    // 2's weights under adapter 1's config give adapter 2's loss.
    let checkpoint = s.root.join("0000004_adapters.safetensors");
    std::fs::copy(adapters[1].join(lora::ADAPTER_WEIGHTS_FILE), &checkpoint).unwrap();
    worker.send(&evaluate(
        20,
        Some(&adapters[0]),
        Some(&checkpoint),
        &s.dataset,
        "valid",
        -1,
    ));
    let (from_checkpoint, _, _) = evaluated(&worker.until_end());
    assert!(relative(from_checkpoint, losses[1]) < 1e-9);

    // Back to no adapter: the base's number again, without a reload.
    worker.send(&evaluate(21, None, None, &s.dataset, "valid", -1));
    let events = worker.until_end();
    let (again, _, _) = evaluated(&events);
    assert!(relative(again, base) < 1e-9, "{again} vs {base}");

    // The batches are kept between evaluations of one dataset, but not
    // past a change of its files.
    let first_eight: String = engine::data::sample::VALID_JSONL
        .lines()
        .take(8)
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(s.dataset.join("valid.jsonl"), first_eight).unwrap();
    worker.send(&evaluate(22, None, None, &s.dataset, "valid", -1));
    let (_, _, batches) = evaluated(&worker.until_end());
    assert_eq!(batches, 2);

    worker.send(&InferenceCommand::Shutdown);
    let status = worker.wait();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_splits_and_datasets_are_named() {
    let s = setup();
    let no_test = s.root.join("no-test");
    std::fs::create_dir_all(&no_test).unwrap();
    std::fs::write(
        no_test.join("train.jsonl"),
        engine::data::sample::TRAIN_JSONL,
    )
    .unwrap();
    std::fs::write(
        no_test.join("valid.jsonl"),
        engine::data::sample::VALID_JSONL,
    )
    .unwrap();
    let broken = s.root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("train.jsonl"),
        engine::data::sample::TRAIN_JSONL,
    )
    .unwrap();
    std::fs::write(
        broken.join("valid.jsonl"),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\nnot json\n",
    )
    .unwrap();

    let empty_test = s.root.join("empty-test");
    std::fs::create_dir_all(&empty_test).unwrap();
    std::fs::write(
        empty_test.join("train.jsonl"),
        engine::data::sample::TRAIN_JSONL,
    )
    .unwrap();
    std::fs::write(
        empty_test.join("valid.jsonl"),
        engine::data::sample::VALID_JSONL,
    )
    .unwrap();
    std::fs::write(empty_test.join("test.jsonl"), "").unwrap();

    let mut worker = Worker::start();
    // Before a load: said so.
    worker.send(&evaluate(1, None, None, &s.dataset, "valid", -1));
    assert!(error_of(&worker.until_end(), 1).contains("no model is loaded"));
    worker.send(&InferenceCommand::Load {
        model: s.model.display().to_string(),
    });
    worker.until_end();

    worker.send(&evaluate(2, None, None, &s.dataset, "validation", -1));
    let reason = error_of(&worker.until_end(), 2);
    assert_eq!(
        reason,
        "no such split \"validation\": use `train`, `valid` or `test`"
    );

    worker.send(&evaluate(3, None, None, &no_test, "test", -1));
    let reason = error_of(&worker.until_end(), 3);
    assert_eq!(
        reason,
        format!(
            "dataset {} has no test split (no test.jsonl file, and nothing is held out of a single file)",
            no_test.display()
        )
    );

    worker.send(&evaluate(4, None, None, &broken, "valid", -1));
    let reason = error_of(&worker.until_end(), 4);
    assert!(
        reason.starts_with(&format!("dataset {}: the dataset has", broken.display())),
        "{reason}"
    );
    assert!(reason.contains("valid.jsonl:2"), "{reason}");

    worker.send(&evaluate(41, None, None, &empty_test, "test", -1));
    let reason = error_of(&worker.until_end(), 41);
    assert_eq!(
        reason,
        format!(
            "dataset {}: the dataset has 1 problem:\n  test.jsonl: the file holds no examples",
            empty_test.display()
        )
    );

    let missing = s.root.join("nowhere");
    worker.send(&evaluate(5, None, None, &missing, "valid", -1));
    let reason = error_of(&worker.until_end(), 5);
    assert!(
        reason.starts_with(&format!("dataset {} does not exist", missing.display())),
        "{reason}"
    );

    worker.send(&evaluate(6, None, None, &s.dataset, "valid", 0));
    let reason = error_of(&worker.until_end(), 6);
    assert_eq!(reason, "limit must be -1 (all batches) or positive, got 0");

    let no_adapter = s.root.join("not-an-adapter");
    worker.send(&evaluate(
        7,
        Some(&no_adapter),
        None,
        &s.dataset,
        "valid",
        -1,
    ));
    let reason = error_of(&worker.until_end(), 7);
    assert!(reason.contains("adapter_config.json"), "{reason}");

    // Still serving after all that.
    worker.send(&evaluate(8, None, None, &s.dataset, "test", 1));
    let (loss, _, batches) = evaluated(&worker.until_end());
    assert_eq!(batches, 1);
    assert!(loss.is_finite());
}

#[test]
fn cancel_stops_a_generation_between_tokens() {
    let s = setup();
    let mut worker = Worker::start();
    worker.send(&InferenceCommand::Load {
        model: s.model.display().to_string(),
    });
    worker.until_end();
    let settings = GenerationSettings {
        max_tokens: 4096,
        ..GenerationSettings::default()
    };
    let prompt = InferencePrompt::Text {
        text: "Once upon a time".into(),
    };
    worker.send(&InferenceCommand::Generate {
        request: 1,
        adapter: None,
        prompt: prompt.clone(),
        settings: settings.clone(),
    });
    // Wait for text to flow, then cancel.
    let mut streamed = String::new();
    loop {
        match worker.next() {
            InferenceEvent::Text { request: 1, text } => {
                streamed.push_str(&text);
                break;
            }
            InferenceEvent::AdapterSet { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    worker.send(&InferenceCommand::Cancel { request: 1 });
    let finished = loop {
        match worker.next() {
            InferenceEvent::Text { request: 1, text } => streamed.push_str(&text),
            finished @ InferenceEvent::Finished { .. } => break finished,
            other => panic!("{other:?}"),
        }
    };
    match finished {
        InferenceEvent::Finished {
            request,
            result:
                Finished {
                    text,
                    generated_tokens,
                    finish_reason,
                    ..
                },
        } => {
            assert_eq!(request, 1);
            assert_eq!(finish_reason, "cancelled");
            assert!(generated_tokens >= 1, "{generated_tokens}");
            assert!(generated_tokens < 4096, "{generated_tokens}");
            assert_eq!(text, streamed);
        }
        _ => unreachable!(),
    }
    // A cancel for a request that has ended changes nothing; the next
    // generation runs to its length.
    worker.send(&InferenceCommand::Cancel { request: 1 });
    worker.send(&InferenceCommand::Generate {
        request: 2,
        adapter: None,
        prompt,
        settings: GenerationSettings {
            max_tokens: 16,
            ..settings
        },
    });
    match worker.until_end().last().unwrap() {
        InferenceEvent::Finished {
            request,
            result:
                Finished {
                    generated_tokens,
                    finish_reason,
                    ..
                },
        } => {
            assert_eq!(*request, 2);
            // The tiny model's greedy text from this prompt has no end token.
            assert_eq!(finish_reason, "length");
            assert_eq!(*generated_tokens, 16);
        }
        other => panic!("{other:?}"),
    }
}
