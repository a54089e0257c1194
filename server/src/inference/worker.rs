//! `loralab inference-worker`: keeps one base model loaded and answers
//! generation and evaluation requests with any adapter, swapping adapters
//! in place. The server writes `InferenceCommand` JSON lines on stdin and
//! reads `InferenceEvent` lines on stdout; stderr is log text.
//!
//! MLX is not thread-safe, so the model lives on the main thread and
//! requests run one after another. A reader thread owns stdin and hands
//! commands over a channel: that is what lets a `cancel` reach a
//! generation while it runs (checked between tokens) or an evaluation
//! (between batches).

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Instant;

use engine::inference::{
    AdapterSource, BatchPrompt, BatchUpdate, GenerationOutcome, InferenceSession,
};
use engine::protocol::{
    BatchRowPrompt, EvalSettings, Evaluated, Finished, GenerationSettings, InferenceCommand,
    InferenceEvent, InferencePrompt,
};

fn emit(event: &InferenceEvent) -> bool {
    let Ok(line) = serde_json::to_string(event) else {
        return true;
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_ok()
}

fn log(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// What the reader thread hands over: a command, or a line that is not one.
enum Input {
    Command(InferenceCommand),
    Malformed(String),
}

/// Reads stdin on its own thread; the channel closes at stdin's end.
fn spawn_reader() -> Receiver<Input> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let input = match serde_json::from_str::<InferenceCommand>(&line) {
                Ok(command) => Input::Command(command),
                Err(error) => Input::Malformed(format!("malformed command: {error}")),
            };
            if sender.send(input).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Commands as the main loop sees them, with what arrived during a request
/// kept for after it.
struct Inbox {
    receiver: Receiver<Input>,
    held: VecDeque<Input>,
    /// stdin ended or `shutdown` came while a request ran.
    closing: bool,
}

impl Inbox {
    fn next(&mut self) -> Option<Input> {
        if let Some(input) = self.held.pop_front() {
            return Some(input);
        }
        if self.closing {
            return None;
        }
        self.receiver.recv().ok()
    }

    /// Whether request `request` should stop now: a `cancel` for it came,
    /// or the server is going away. Other commands wait their turn.
    fn cancelled(&mut self, request: u64) -> bool {
        loop {
            match self.receiver.try_recv() {
                Ok(Input::Command(InferenceCommand::Cancel { request: id })) if id == request => {
                    return true;
                }
                // A cancel for a request that already ended.
                Ok(Input::Command(InferenceCommand::Cancel { .. })) => {}
                Ok(Input::Command(InferenceCommand::Shutdown)) => {
                    self.closing = true;
                    return true;
                }
                Ok(other) => self.held.push_back(other),
                Err(TryRecvError::Empty) => return self.closing,
                Err(TryRecvError::Disconnected) => {
                    self.closing = true;
                    return true;
                }
            }
        }
    }
}

/// The worker's main: runs until `Shutdown`, stdin's end (the server is
/// gone), or stdout breaks.
pub fn run() -> ExitCode {
    let mut session: Option<InferenceSession> = None;
    let mut inbox = Inbox {
        receiver: spawn_reader(),
        held: VecDeque::new(),
        closing: false,
    };
    while let Some(input) = inbox.next() {
        let command = match input {
            Input::Command(command) => command,
            Input::Malformed(reason) => {
                log(&reason);
                if !emit(&InferenceEvent::Error {
                    request: None,
                    reason,
                }) {
                    break;
                }
                continue;
            }
        };
        let delivered = match command {
            InferenceCommand::Load { model } => load(&mut session, &model),
            InferenceCommand::Generate {
                request,
                adapter,
                prompt,
                settings,
            } => match session.as_mut() {
                None => no_model(request),
                Some(session) => generate(
                    session,
                    &mut inbox,
                    request,
                    adapter.as_deref(),
                    &prompt,
                    &settings,
                ),
            },
            InferenceCommand::GenerateBatch {
                request,
                rows,
                settings,
                max_rows,
            } => match session.as_mut() {
                None => no_model(request),
                Some(session) => {
                    generate_batch(session, &mut inbox, request, &rows, &settings, max_rows)
                }
            },
            InferenceCommand::Evaluate {
                request,
                adapter,
                adapter_weights,
                dataset,
                split,
                settings,
            } => match session.as_mut() {
                None => no_model(request),
                Some(session) => {
                    let source = adapter.as_deref().map(|dir| AdapterSource {
                        dir: dir.into(),
                        weights: adapter_weights.as_deref().map(Into::into),
                    });
                    evaluate(
                        session,
                        &mut inbox,
                        request,
                        source.as_ref(),
                        Path::new(&dataset),
                        &split,
                        &settings,
                    )
                }
            },
            // Nothing runs between commands: a late cancel has nothing to stop.
            InferenceCommand::Cancel { .. } => true,
            InferenceCommand::Shutdown => break,
        };
        if !delivered {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn no_model(request: u64) -> bool {
    emit(&InferenceEvent::Error {
        request: Some(request),
        reason: "no model is loaded; send `load` first".into(),
    })
}

fn load(session: &mut Option<InferenceSession>, model: &str) -> bool {
    let path = Path::new(model);
    let started = Instant::now();
    let result = match session {
        Some(current) if current.model_path() == path => Ok(()),
        Some(current) => {
            log(&format!(
                "Loading model {model} (replacing {})",
                current.model_path().display()
            ));
            current.reload(path)
        }
        None => {
            log(&format!("Loading model {model}"));
            InferenceSession::load(path).map(|loaded| *session = Some(loaded))
        }
    };
    match result {
        Ok(()) => emit(&InferenceEvent::Loaded {
            model: model.to_string(),
            seconds: started.elapsed().as_secs_f64(),
            base_loads: session.as_ref().map_or(0, |s| s.base_loads),
        }),
        // A failed reload keeps the previous model (it is replaced only
        // once the new one is built).
        Err(error) => emit(&InferenceEvent::Error {
            request: None,
            reason: format!("{error:#}"),
        }),
    }
}

/// Swaps in the request's adapter and says so (`adapter_set`). `None`
/// when the swap failed (the error is already sent); `Some(false)` when
/// stdout broke.
fn set_adapter(
    session: &mut InferenceSession,
    request: u64,
    source: Option<&AdapterSource>,
) -> Option<bool> {
    let started = Instant::now();
    if let Err(error) = session.set_adapter_source(source) {
        let delivered = emit(&InferenceEvent::Error {
            request: Some(request),
            reason: format!("{error:#}"),
        });
        return if delivered { None } else { Some(false) };
    }
    Some(emit(&InferenceEvent::AdapterSet {
        request,
        adapter: source.map(|s| s.dir.display().to_string()),
        seconds: started.elapsed().as_secs_f64(),
        adapter_loads: session.adapter_loads,
    }))
}

fn generate(
    session: &mut InferenceSession,
    inbox: &mut Inbox,
    request: u64,
    adapter: Option<&str>,
    prompt: &InferencePrompt,
    settings: &GenerationSettings,
) -> bool {
    let source = adapter.map(|dir| AdapterSource::folder(Path::new(dir)));
    match set_adapter(session, request, source.as_ref()) {
        None => return true,
        Some(false) => return false,
        Some(true) => {}
    }
    let started = Instant::now();
    let delivered = Cell::new(true);
    let result = session.generate_until(
        prompt,
        settings,
        |text| {
            if !emit(&InferenceEvent::Text {
                request,
                text: text.to_string(),
            }) {
                delivered.set(false);
            }
        },
        // A broken stdout ends the generation too: nobody reads it.
        || !delivered.get() || inbox.cancelled(request),
    );
    if !delivered.get() {
        return false;
    }
    match result {
        Ok(generation) => emit(&InferenceEvent::Finished {
            request,
            result: finished(generation, started.elapsed().as_secs_f64()),
        }),
        Err(error) => emit(&InferenceEvent::Error {
            request: Some(request),
            reason: format!("{error:#}"),
        }),
    }
}

fn finished(generation: GenerationOutcome, seconds: f64) -> Finished {
    Finished {
        text: generation.text,
        prompt_tokens: generation.stats.prompt_tokens,
        generated_tokens: generation.stats.generated_tokens,
        finish_reason: generation.finish_reason.to_string(),
        prompt_tokens_per_sec: generation.stats.prompt_tokens_per_second(),
        generation_tokens_per_sec: generation.stats.generation_tokens_per_second(),
        seconds,
    }
}

/// Generates the rows of a batched request, each row's events as they
/// come; a cancel stops every row between two steps.
fn generate_batch(
    session: &mut InferenceSession,
    inbox: &mut Inbox,
    request: u64,
    rows: &[BatchRowPrompt],
    settings: &GenerationSettings,
    max_rows: usize,
) -> bool {
    let started = Instant::now();
    let rows: Vec<BatchPrompt> = rows
        .iter()
        .map(|row| BatchPrompt {
            adapter: row
                .adapter
                .as_deref()
                .map(|dir| AdapterSource::folder(Path::new(dir))),
            prompt: row.prompt.clone(),
        })
        .collect();
    let delivered = Cell::new(true);
    let send = |event: InferenceEvent| {
        if !emit(&event) {
            delivered.set(false);
        }
    };
    // Each row's clock starts when its batch does.
    let mut row_started = vec![started; rows.len()];
    let adapter_loads = Cell::new(session.adapter_loads);
    let mut on_update = |update: BatchUpdate<'_>| match update {
        BatchUpdate::AdaptersLoaded { count, seconds } => {
            adapter_loads.set(adapter_loads.get() + count as u64);
            send(InferenceEvent::AdaptersLoaded {
                request,
                adapters: count,
                seconds,
                adapter_loads: adapter_loads.get(),
            })
        }
        BatchUpdate::Started(ids) => {
            let now = Instant::now();
            for &row in ids {
                row_started[row] = now;
            }
            send(InferenceEvent::RowsStarted {
                request,
                rows: ids.to_vec(),
            })
        }
        BatchUpdate::Text { row, text } => send(InferenceEvent::RowText {
            request,
            row,
            text: text.to_string(),
        }),
        BatchUpdate::Finished { row, outcome } => send(InferenceEvent::RowFinished {
            request,
            row,
            result: finished(outcome, row_started[row].elapsed().as_secs_f64()),
        }),
        BatchUpdate::Failed { row, reason } => send(InferenceEvent::RowFailed {
            request,
            row,
            reason,
        }),
    };
    // A broken stdout ends the generation too: nobody reads it.
    let mut cancelled = || !delivered.get() || inbox.cancelled(request);
    let result = session.generate_batch(&rows, settings, max_rows, &mut on_update, &mut cancelled);
    if !delivered.get() {
        return false;
    }
    match result {
        Ok(()) => emit(&InferenceEvent::BatchFinished {
            request,
            seconds: started.elapsed().as_secs_f64(),
            adapter: session.adapter().map(|dir| dir.display().to_string()),
        }),
        Err(error) => emit(&InferenceEvent::Error {
            request: Some(request),
            reason: format!("{error:#}"),
        }),
    }
}

fn evaluate(
    session: &mut InferenceSession,
    inbox: &mut Inbox,
    request: u64,
    source: Option<&AdapterSource>,
    dataset: &Path,
    split: &str,
    settings: &EvalSettings,
) -> bool {
    match set_adapter(session, request, source) {
        None => return true,
        Some(false) => return false,
        Some(true) => {}
    }
    let delivered = Cell::new(true);
    let result = session.evaluate(
        dataset,
        split,
        settings,
        |batches, total| {
            if !emit(&InferenceEvent::EvalProgress {
                request,
                batches,
                total,
            }) {
                delivered.set(false);
            }
        },
        || !delivered.get() || inbox.cancelled(request),
    );
    if !delivered.get() {
        return false;
    }
    match result {
        Ok(evaluation) => emit(&InferenceEvent::Evaluated {
            request,
            result: Evaluated {
                loss: evaluation.loss,
                perplexity: evaluation.perplexity,
                tokens: evaluation.tokens,
                batches: evaluation.batches,
                seconds: evaluation.seconds,
            },
        }),
        Err(error) => emit(&InferenceEvent::Error {
            request: Some(request),
            reason: format!("{error:#}"),
        }),
    }
}
