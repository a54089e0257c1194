//! `loralab inference-worker`: keeps one base model loaded and answers
//! generation requests with any adapter, swapping adapters in place. The
//! server writes `InferenceCommand` JSON lines on stdin and reads
//! `InferenceEvent` lines on stdout; stderr is log text. Everything runs on
//! the main thread, since MLX is not thread-safe; commands are handled one
//! after another.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use engine::inference::{finish_reason_name, InferenceSession};
use engine::protocol::{InferenceCommand, InferenceEvent};

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

/// The worker's main: runs until `Shutdown`, stdin's end (the server is
/// gone), or stdout breaks.
pub fn run() -> ExitCode {
    let mut session: Option<InferenceSession> = None;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let command = match serde_json::from_str::<InferenceCommand>(&line) {
            Ok(command) => command,
            Err(error) => {
                let reason = format!("malformed command: {error}");
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
                None => emit(&InferenceEvent::Error {
                    request: Some(request),
                    reason: "no model is loaded; send `load` first".into(),
                }),
                Some(session) => generate(session, request, adapter.as_deref(), &prompt, &settings),
            },
            InferenceCommand::Shutdown => break,
        };
        if !delivered {
            break;
        }
    }
    ExitCode::SUCCESS
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

fn generate(
    session: &mut InferenceSession,
    request: u64,
    adapter: Option<&str>,
    prompt: &engine::protocol::InferencePrompt,
    settings: &engine::protocol::GenerationSettings,
) -> bool {
    let fail = |error: anyhow::Error| {
        emit(&InferenceEvent::Error {
            request: Some(request),
            reason: format!("{error:#}"),
        })
    };
    let started = Instant::now();
    if let Err(error) = session.set_adapter(adapter.map(Path::new)) {
        return fail(error);
    }
    if !emit(&InferenceEvent::AdapterSet {
        request,
        adapter: adapter.map(str::to_string),
        seconds: started.elapsed().as_secs_f64(),
        adapter_loads: session.adapter_loads,
    }) {
        return false;
    }
    let started = Instant::now();
    let mut delivered = true;
    let result = session.generate(prompt, settings, |text| {
        delivered &= emit(&InferenceEvent::Text {
            request,
            text: text.to_string(),
        });
    });
    if !delivered {
        return false;
    }
    match result {
        Ok(generation) => emit(&InferenceEvent::Finished {
            request,
            text: generation.text,
            prompt_tokens: generation.stats.prompt_tokens,
            generated_tokens: generation.stats.generated_tokens,
            finish_reason: finish_reason_name(generation.finish_reason).to_string(),
            prompt_tokens_per_sec: generation.stats.prompt_tokens_per_second(),
            generation_tokens_per_sec: generation.stats.generation_tokens_per_second(),
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(error) => fail(error),
    }
}
