//! Pulls for the command line (`loralab models pull`, `loralab train` with
//! a repo id): progress lines on stderr, about one a second per file plus
//! one when a file is whole, so stdout keeps only the results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{HubEvent, HubSettings, HubSpec, Pulled};
use crate::models::format_size;

/// Pulls `spec` on a runtime of its own (the CLI has none), reporting on
/// stderr.
pub fn pull_with_stderr(spec: &HubSpec) -> Result<Pulled> {
    let settings = HubSettings::from_env();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let printer = Arc::new(Mutex::new(Printer::default()));
    let progress: super::ProgressFn = {
        let printer = printer.clone();
        Arc::new(move |event| printer.lock().unwrap_or_else(|p| p.into_inner()).on(event))
    };
    if settings.offline {
        eprintln!("HF_HUB_OFFLINE is set: {spec} comes from the cache only");
    } else {
        eprintln!(
            "Pulling {spec} from {} into {}",
            settings.endpoint,
            settings.cache_dir.display()
        );
    }
    let pulled = runtime.block_on(super::pull(&settings, spec, progress))?;
    if pulled.from_cache {
        eprintln!(
            "{spec}: every file is in the cache ({})",
            pulled.path.display()
        );
    } else {
        eprintln!(
            "{spec}: downloaded {} ({})",
            format_size(pulled.downloaded_bytes),
            pulled.path.display()
        );
    }
    Ok(pulled)
}

#[derive(Default)]
struct Printer {
    sizes: HashMap<String, u64>,
    done: HashMap<String, u64>,
    last: Option<Instant>,
    started: Option<Instant>,
}

impl Printer {
    fn on(&mut self, event: HubEvent) {
        match event {
            HubEvent::Plan { commit, files } => {
                let fetch: Vec<_> = files.iter().filter(|f| !f.cached).collect();
                let total: u64 = fetch.iter().map(|f| f.size).sum();
                eprintln!(
                    "Commit {commit}: {} file(s), {} to download",
                    files.len(),
                    format_size(total)
                );
                self.sizes = files.into_iter().map(|f| (f.name, f.size)).collect();
                self.started = Some(Instant::now());
            }
            HubEvent::Bytes { file, bytes } => {
                let done = self.done.entry(file.clone()).or_default();
                *done += bytes;
                let due = self
                    .last
                    .is_none_or(|last| last.elapsed() >= Duration::from_secs(1));
                if due {
                    self.last = Some(Instant::now());
                    let line = self.line(&file);
                    eprintln!("{line}");
                }
            }
            HubEvent::FileDone { file } => {
                let line = self.line(&file);
                eprintln!("{line} done");
            }
        }
    }

    fn line(&self, file: &str) -> String {
        let done = self.done.get(file).copied().unwrap_or(0);
        let size = self.sizes.get(file).copied().unwrap_or(done);
        let all: u64 = self.done.values().sum();
        let seconds = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let speed = if seconds > 0.0 {
            format!(", {}/s", format_size((all as f64 / seconds) as u64))
        } else {
            String::new()
        };
        format!(
            "  {file}: {} of {}{speed}",
            format_size(done.min(size)),
            format_size(size)
        )
    }
}
