//! `loralab export-worker`: one export in a child process. The server
//! writes an `ExportCommand::Export` line and maybe a `Cancel`; the worker
//! answers with `ExportEvent` lines (progress, then one of done, cancelled,
//! failed). MLX lives only here.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use engine::export::{Cancelled, ExportProgress};
use engine::protocol::{ExportCommand, ExportEvent};

fn emit(event: &ExportEvent) {
    if let Ok(line) = serde_json::to_string(event) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    }
}

pub fn run() -> ExitCode {
    let mut first = String::new();
    let request = match std::io::stdin().lock().read_line(&mut first) {
        Ok(0) => Err("the server closed the export worker's input".to_string()),
        Ok(_) => match serde_json::from_str::<ExportCommand>(&first) {
            Ok(ExportCommand::Export { request }) => Ok(request),
            Ok(ExportCommand::Cancel) => return ExitCode::SUCCESS,
            Err(error) => Err(format!(
                "the export worker got a malformed command: {error}"
            )),
        },
        Err(error) => Err(format!("cannot read the export worker's input: {error}")),
    };
    let request = match request {
        Ok(request) => request,
        Err(reason) => {
            emit(&ExportEvent::Failed { reason });
            return ExitCode::FAILURE;
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A Cancel, or the server gone (stdin closed), stops the export:
        // nobody would receive it.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if matches!(
                    serde_json::from_str::<ExportCommand>(&line),
                    Ok(ExportCommand::Cancel)
                ) {
                    break;
                }
            }
            cancel.store(true, Ordering::SeqCst);
        });
    }
    // Progress at most every 100 ms (and the last one), not per tensor.
    let mut last = std::time::Instant::now();
    let mut progress = |p: ExportProgress| {
        if p.tensors_done == p.tensors_total || last.elapsed().as_millis() >= 100 {
            last = std::time::Instant::now();
            emit(&ExportEvent::Progress(p));
        }
    };
    match engine::export::export(&request, &mut progress, &cancel) {
        Ok(report) => {
            emit(&ExportEvent::Done(report));
            ExitCode::SUCCESS
        }
        Err(error) if error.is::<Cancelled>() => {
            emit(&ExportEvent::Cancelled);
            ExitCode::SUCCESS
        }
        Err(error) => {
            let reason = crate::failure::explain(format!("{error:#}"));
            let _ = writeln!(std::io::stderr(), "export failed: {reason}");
            emit(&ExportEvent::Failed { reason });
            ExitCode::FAILURE
        }
    }
}
