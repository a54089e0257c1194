//! `generate_batch` through the real inference worker process on the tiny
//! model: base and adapter rows decoded together give every row the text
//! that the one-at-a-time path gives, each adapter is read once, a bad
//! adapter fails only its rows, and a cancel stops every row between two
//! steps with its text kept (rows not started get none).

mod common;

use std::collections::BTreeMap;

use common::inference_worker::{write_adapter, Worker};
use engine::protocol::{
    BatchRowPrompt, Finished, GenerationSettings, InferenceCommand, InferenceEvent,
    InferencePrompt, PromptMessage,
};

/// What a batched request's events say, per row.
#[derive(Debug, Default)]
struct Rows {
    streamed: BTreeMap<usize, String>,
    finished: BTreeMap<usize, Finished>,
    failed: BTreeMap<usize, String>,
    /// The rows of each `rows_started`, in order.
    batches: Vec<Vec<usize>>,
    adapter_loads: u64,
    /// The worker's attached adapter once the batch ended.
    adapter_after: Option<String>,
}

/// Reads request `request`'s events to `batch_finished`; `on_text` is
/// called at each piece of text (to send a cancel).
fn collect(worker: &mut Worker, request: u64, mut on_text: impl FnMut(&mut Worker)) -> Rows {
    let mut rows = Rows::default();
    loop {
        match worker.next() {
            InferenceEvent::AdaptersLoaded { adapter_loads, .. } => {
                rows.adapter_loads = adapter_loads
            }
            InferenceEvent::RowsStarted {
                request: r,
                rows: ids,
            } if r == request => rows.batches.push(ids),
            InferenceEvent::RowText {
                request: r,
                row,
                text,
            } if r == request => {
                assert!(
                    !rows.finished.contains_key(&row),
                    "text after row {row} ended"
                );
                rows.streamed.entry(row).or_default().push_str(&text);
                on_text(worker);
            }
            InferenceEvent::RowFinished {
                request: r,
                row,
                result,
            } if r == request => {
                assert!(
                    rows.finished.insert(row, result).is_none(),
                    "row {row} twice"
                );
            }
            InferenceEvent::RowFailed {
                request: r,
                row,
                reason,
            } if r == request => {
                rows.failed.insert(row, reason);
            }
            InferenceEvent::BatchFinished {
                request: r,
                adapter,
                ..
            } if r == request => {
                rows.adapter_after = adapter;
                return rows;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
}

fn chat(text: &str) -> InferencePrompt {
    InferencePrompt::Chat {
        messages: vec![PromptMessage {
            role: "user".into(),
            content: text.into(),
        }],
    }
}

fn batch(
    request: u64,
    rows: &[BatchRowPrompt],
    max_tokens: usize,
    max_rows: usize,
) -> InferenceCommand {
    InferenceCommand::GenerateBatch {
        request,
        rows: rows.to_vec(),
        settings: GenerationSettings {
            max_tokens,
            ..GenerationSettings::default()
        },
        max_rows,
    }
}

#[test]
fn a_batch_of_adapters_equals_one_row_at_a_time_and_cancel_keeps_text() {
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("tiny");
    engine::fixtures::write_tiny_llama(&model, 11).unwrap();
    let adapters: Vec<String> = (1..=2)
        .map(|i| {
            let dir = temp.path().join(format!("adapter-{i}"));
            write_adapter(&model, &dir, i);
            dir.display().to_string()
        })
        .collect();
    let prompts = [
        chat("Hi"),
        chat("Tell me about the sea and its ships, please"),
        chat("Why?"),
    ];
    let columns = [None, Some(adapters[0].clone()), Some(adapters[1].clone())];
    // Column by column, as a comparison sends them.
    let rows: Vec<BatchRowPrompt> = columns
        .iter()
        .flat_map(|adapter| {
            prompts.iter().map(|prompt| BatchRowPrompt {
                adapter: adapter.clone(),
                prompt: prompt.clone(),
            })
        })
        .collect();
    let mut worker = Worker::start_loaded(&model);

    worker.send(&batch(1, &rows, 24, 64));
    let together = collect(&mut worker, 1, |_| {});
    assert_eq!(together.batches, vec![(0..9).collect::<Vec<_>>()]);
    // Each adapter folder read once for the 6 rows that use it.
    assert_eq!(together.adapter_loads, 2);
    worker.send(&batch(2, &rows, 24, 1));
    let alone = collect(&mut worker, 2, |_| {});
    assert_eq!(alone.batches, (0..9).map(|r| vec![r]).collect::<Vec<_>>());
    // One swap per column: the base, then each adapter once more.
    assert_eq!(alone.adapter_loads, 4);
    // Batched rows leave the session's adapter (none) as it was; one at a
    // time, the last row's adapter stays attached.
    assert_eq!(together.adapter_after, None);
    assert_eq!(alone.adapter_after.as_ref(), Some(&adapters[1]));
    assert!(together.failed.is_empty() && alone.failed.is_empty());
    for row in 0..9 {
        let (a, b) = (&together.finished[&row], &alone.finished[&row]);
        assert_eq!(a.text, b.text, "row {row}");
        assert_eq!(
            (a.prompt_tokens, a.generated_tokens, &a.finish_reason),
            (b.prompt_tokens, b.generated_tokens, &b.finish_reason),
            "row {row}"
        );
        assert_eq!(
            together.streamed.get(&row).cloned().unwrap_or_default(),
            a.text
        );
        assert!(a.generated_tokens >= 1, "row {row}: {a:?}");
    }
    let text = |r: usize| together.finished[&r].text.clone();
    assert_ne!(text(0), text(3), "the first adapter changed nothing");
    assert_ne!(text(3), text(6), "the adapters answer alike");

    // A broken adapter fails its rows; the others are generated.
    let broken = temp.path().join("not-an-adapter");
    std::fs::create_dir_all(&broken).unwrap();
    let mixed = vec![
        rows[0].clone(),
        BatchRowPrompt {
            adapter: Some(broken.display().to_string()),
            prompt: chat("Hi"),
        },
        rows[4].clone(),
    ];
    worker.send(&batch(3, &mixed, 24, 64));
    let outcome = collect(&mut worker, 3, |_| {});
    assert!(
        outcome.failed[&1].contains("adapter_config.json"),
        "{:?}",
        outcome.failed
    );
    assert_eq!(outcome.finished[&0].text, text(0));
    assert_eq!(outcome.finished[&2].text, text(4));

    // Bad settings refuse the whole request, named.
    worker.send(&batch(4, &rows, 0, 64));
    match worker.next() {
        InferenceEvent::Error {
            request: Some(4),
            reason,
        } => assert!(reason.contains("max_tokens"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // Cancel once text flows: every row of the batch stops and keeps what
    // it has. (The tiny model's greedy text after this prompt has no end
    // token.)
    let story = BatchRowPrompt {
        adapter: None,
        prompt: InferencePrompt::Text {
            text: "Once upon a time".into(),
        },
    };
    let long = 4000;
    let endless = [
        story.clone(),
        rows[1].clone(),
        rows[4].clone(),
        story.clone(),
    ];
    let mut cancelled = false;
    worker.send(&batch(5, &endless, long, 64));
    let stopped = collect(&mut worker, 5, |worker| {
        if !cancelled {
            worker.send(&InferenceCommand::Cancel { request: 5 });
            cancelled = true;
        }
    });
    for row in 0..4 {
        let finished = &stopped.finished[&row];
        if finished.finish_reason == "cancelled" {
            assert!(finished.generated_tokens < long, "row {row}: {finished:?}");
        } else {
            // The tiny model may say its end token before the cancel lands.
            assert_eq!(finished.finish_reason, "stop", "row {row}: {finished:?}");
        }
        assert_eq!(
            stopped.streamed.get(&row).cloned().unwrap_or_default(),
            finished.text,
            "row {row}"
        );
    }
    assert!(stopped
        .finished
        .values()
        .any(|f| f.finish_reason == "cancelled" && f.generated_tokens >= 1));

    // One at a time: the rows after the cancelled one are not started.
    let mut cancelled = false;
    worker.send(&batch(6, &[story.clone(), story.clone(), story], long, 1));
    let stopped = collect(&mut worker, 6, |worker| {
        if !cancelled {
            worker.send(&InferenceCommand::Cancel { request: 6 });
            cancelled = true;
        }
    });
    let first = stopped.finished.values().next().unwrap();
    let reasons: Vec<(&str, usize)> = stopped
        .finished
        .values()
        .map(|f| (f.finish_reason.as_str(), f.generated_tokens))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(first.generated_tokens >= 1, "{reasons:?}");
    let started = stopped.batches.len();
    for (reason, tokens) in &reasons[started..] {
        assert_eq!((*reason, *tokens), ("cancelled", 0), "{reasons:?}");
    }
}
