//! Comparisons: a request is checked and saved with one pending output per
//! (prompt, column); a task then sends every pending output to the
//! inference worker as one batched request (the worker reads each adapter
//! once and decodes as many outputs together as its batch holds, see
//! `engine::inference::InferenceSession::generate_batch`), storing each
//! output as it finishes and streaming its text to listeners through the
//! [`ComparisonHub`]. A comparison can be cancelled ([`cancel`]): the
//! outputs being generated stop between two tokens and keep their text,
//! the ones not started are not generated; all are stored with the finish
//! reason `cancelled`.

pub mod actions;
pub mod adapters;
pub mod error;
pub mod request;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use engine::protocol::{BatchRowPrompt, GenerationSettings, InferencePrompt};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::inference::{CancelToken, Finished, Inference, InferenceError, RowUpdate};
use crate::state::AppState;
use crate::store::{OutputResult, Store};

pub use actions::{cast_vote, comparison_view, create_comparison, shuffle_seed, VoteRequest};
pub use adapters::{adapter_choices, import_adapter, resolve_adapter, ResolvedAdapter};
pub use error::CompareError;
pub use request::CompareRequest;

/// The finish reason of an output a cancel stopped (or kept from starting).
pub const CANCELLED: &str = "cancelled";

/// An output's status as pages and the API show it: a stored `done`
/// output that a cancel cut short reads `cancelled`.
pub fn output_status<'a>(status: &'a str, finish_reason: Option<&str>) -> &'a str {
    if status == "done" && finish_reason == Some(CANCELLED) {
        CANCELLED
    } else {
        status
    }
}

fn cancel_key(id: i64) -> String {
    format!("compare:{id}")
}

/// Stops comparison `id` if it is being generated here; false otherwise.
pub fn cancel(state: &AppState, id: i64) -> bool {
    state.inference.cancel(&cancel_key(id))
}

/// One message to a comparison's live listeners (an SSE event).
#[derive(Debug, Clone, PartialEq)]
pub struct HubEvent {
    pub comparison: i64,
    /// `text` (a new piece of an output), `output` (an output's whole state)
    /// or `done` (the comparison ended).
    pub kind: &'static str,
    pub data: serde_json::Value,
}

/// Comparisons being generated in this process: the text of outputs in
/// progress and a broadcast of every change.
pub struct ComparisonHub {
    state: Mutex<HubState>,
    events: broadcast::Sender<Arc<HubEvent>>,
}

#[derive(Default)]
struct HubState {
    /// Per running comparison: its outputs in progress and their text so far.
    live: HashMap<i64, HashMap<i64, String>>,
    /// Per running comparison: becomes true when it ends.
    finished: HashMap<i64, watch::Sender<bool>>,
}

impl Default for ComparisonHub {
    fn default() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            state: Mutex::new(HubState::default()),
            events,
        }
    }
}

/// What a listener gets when it joins: live events from now on, and the
/// text of the outputs in progress at that moment.
pub struct Subscription {
    pub events: broadcast::Receiver<Arc<HubEvent>>,
    pub in_progress: HashMap<i64, String>,
    pub running: bool,
}

impl ComparisonHub {
    fn state(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes and takes the snapshot under one lock, so no piece of
    /// text is missed or counted twice.
    pub fn subscribe(&self, comparison: i64) -> Subscription {
        let state = self.state();
        Subscription {
            events: self.events.subscribe(),
            in_progress: state.live.get(&comparison).cloned().unwrap_or_default(),
            running: state.finished.contains_key(&comparison),
        }
    }

    /// Text in progress of a comparison's outputs (after a lagging listener
    /// missed events).
    pub fn in_progress(&self, comparison: i64) -> HashMap<i64, String> {
        self.state()
            .live
            .get(&comparison)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `comparison` ends, if it is running in this process.
    pub async fn wait(&self, comparison: i64) {
        let receiver = self
            .state()
            .finished
            .get(&comparison)
            .map(watch::Sender::subscribe);
        if let Some(mut receiver) = receiver {
            let _ = receiver.wait_for(|done| *done).await;
        }
    }

    fn begin(&self, comparison: i64) -> bool {
        let mut state = self.state();
        if state.finished.contains_key(&comparison) {
            return false;
        }
        state.finished.insert(comparison, watch::channel(false).0);
        state.live.insert(comparison, HashMap::new());
        true
    }

    fn send(&self, comparison: i64, kind: &'static str, data: serde_json::Value) {
        let _ = self.events.send(Arc::new(HubEvent {
            comparison,
            kind,
            data,
        }));
    }

    fn start_output(&self, comparison: i64, output: i64) {
        let mut state = self.state();
        if let Some(live) = state.live.get_mut(&comparison) {
            live.insert(output, String::new());
        }
        self.send(
            comparison,
            "output",
            json!({ "output": output, "status": "running", "text": "" }),
        );
    }

    fn append(&self, comparison: i64, output: i64, piece: &str) {
        let mut state = self.state();
        if let Some(text) = state
            .live
            .get_mut(&comparison)
            .and_then(|live| live.get_mut(&output))
        {
            text.push_str(piece);
        }
        self.send(
            comparison,
            "text",
            json!({ "output": output, "text": piece }),
        );
    }

    fn end_output(&self, comparison: i64, output: i64, data: serde_json::Value) {
        let mut state = self.state();
        if let Some(live) = state.live.get_mut(&comparison) {
            live.remove(&output);
        }
        self.send(comparison, "output", data);
    }

    fn end(&self, comparison: i64, status: &str, failure: Option<&str>) {
        let mut state = self.state();
        state.live.remove(&comparison);
        if let Some(done) = state.finished.remove(&comparison) {
            done.send_replace(true);
        }
        self.send(
            comparison,
            "done",
            json!({ "status": status, "failure": failure }),
        );
    }
}

/// What the background generation of a comparison needs.
struct Runner {
    store: Arc<Store>,
    inference: Inference,
    comparisons: Arc<ComparisonHub>,
}

/// Starts generating a saved comparison's pending outputs in the
/// background (no-op when it is already being generated).
pub fn start(state: &AppState, id: i64) {
    if !state.comparisons.begin(id) {
        return;
    }
    let cancellable = state.inference.cancellable(&cancel_key(id));
    let state = Runner {
        store: state.store.clone(),
        inference: state.inference.clone(),
        comparisons: state.comparisons.clone(),
    };
    tokio::spawn(async move {
        let outcome = generate_all(&state, id, cancellable.token()).await;
        drop(cancellable);
        let (status, failure) = match outcome {
            Ok(()) => ("done".to_string(), None),
            Err(reason) => ("failed".to_string(), Some(reason)),
        };
        if let Err(error) = state
            .store
            .finish_comparison(id, &status, failure.as_deref())
        {
            tracing::error!(%error, comparison = id, "storing the end of a comparison");
        }
        state.comparisons.end(id, &status, failure.as_deref());
    });
}

/// Continues the comparisons a previous server left generating.
pub fn resume_unfinished(state: &AppState) {
    match state.store.running_comparisons() {
        Ok(ids) => {
            for id in ids {
                tracing::info!(comparison = id, "continuing a comparison");
                start(state, id);
            }
        }
        Err(error) => tracing::error!(%error, "reading unfinished comparisons"),
    }
}

/// Generates every pending output. An error is a reason that ends the
/// whole comparison (no slot, unreadable record); a failed output is
/// stored as such and the others go on.
async fn generate_all(state: &Runner, id: i64, cancel: CancelToken) -> Result<(), String> {
    let record = state
        .store
        .comparison(id)
        .map_err(|e| format!("cannot read comparison {id}: {e}"))?
        .ok_or_else(|| format!("comparison {id} does not exist"))?;
    let settings: GenerationSettings = serde_json::from_str(&record.settings_json)
        .map_err(|e| format!("the stored settings are invalid: {e}"))?;
    let mut pending: Vec<_> = record
        .outputs
        .iter()
        .filter(|o| o.status == "pending")
        .collect();
    // Column by column, as the outputs were generated one at a time before
    // batching (and still are with a batch of 1: one adapter swap per
    // column).
    pending.sort_by_key(|o| (o.column_index, o.prompt_index));
    if cancel.is_cancelled() {
        for output in &pending {
            cancel_output(
                state,
                id,
                output.id,
                output.column_index,
                output.prompt_index,
            );
        }
        return Ok(());
    }
    let mut outputs = Vec::new();
    let mut rows = Vec::new();
    for output in pending {
        let prompt = record
            .prompts
            .get(output.prompt_index)
            .and_then(|p| serde_json::from_str::<InferencePrompt>(&p.prompt_json).ok());
        let column = record.columns.get(output.column_index);
        let (Some(prompt), Some(column)) = (prompt, column) else {
            fail_output(
                state,
                id,
                output.id,
                "the stored prompt or column is invalid",
            );
            continue;
        };
        outputs.push(output);
        rows.push(BatchRowPrompt {
            adapter: column.adapter_path.clone(),
            prompt,
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    let hub = &state.comparisons;
    let mut ended = vec![false; outputs.len()];
    let result = state
        .inference
        .generate_batch(
            &record.model_location,
            rows,
            settings,
            state.inference.batch_rows(),
            &mut |update: RowUpdate<'_>| match update {
                RowUpdate::Started(rows) => {
                    for &row in rows {
                        hub.start_output(id, outputs[row].id);
                    }
                }
                RowUpdate::Text { row, text } => hub.append(id, outputs[row].id, text),
                RowUpdate::Finished { row, result } => {
                    ended[row] = true;
                    let output = outputs[row];
                    store_output(
                        state,
                        id,
                        output.id,
                        output.column_index,
                        output.prompt_index,
                        &result,
                    );
                }
                RowUpdate::Failed { row, reason } => {
                    ended[row] = true;
                    fail_output(state, id, outputs[row].id, &reason);
                }
            },
            Some(cancel),
        )
        .await;
    let unfinished = outputs
        .iter()
        .zip(&ended)
        .filter(|(_, &ended)| !ended)
        .map(|(output, _)| output.id);
    match result {
        Ok(()) => Ok(()),
        Err(InferenceError::Busy(reason)) => {
            for output in unfinished {
                fail_output(state, id, output, &reason);
            }
            Err(reason)
        }
        Err(InferenceError::Failed(reason)) => {
            for output in unfinished {
                fail_output(state, id, output, &reason);
            }
            Ok(())
        }
    }
}

/// Stores a generated output (cancelled ones included) and tells listeners.
fn store_output(
    state: &Runner,
    comparison: i64,
    output: i64,
    column: usize,
    prompt: usize,
    finished: &Finished,
) {
    let stored = OutputResult {
        text: finished.text.clone(),
        prompt_tokens: finished.prompt_tokens as i64,
        generated_tokens: finished.generated_tokens as i64,
        finish_reason: finished.finish_reason.clone(),
        generation_tokens_per_sec: finished.generation_tokens_per_sec,
    };
    if let Err(error) = state.store.finish_output(output, &stored) {
        tracing::error!(%error, output, "storing an output");
    }
    state.comparisons.end_output(
        comparison,
        output,
        json!({
            "output": output,
            "column": column,
            "prompt": prompt,
            "status": output_status("done", Some(&finished.finish_reason)),
            "text": finished.text,
            "generated_tokens": finished.generated_tokens,
            "finish_reason": finished.finish_reason,
            "tokens_per_sec": finished.generation_tokens_per_sec,
        }),
    );
}

/// Stores an output that a cancel kept from being generated.
fn cancel_output(state: &Runner, comparison: i64, output: i64, column: usize, prompt: usize) {
    let stored = OutputResult {
        text: String::new(),
        prompt_tokens: 0,
        generated_tokens: 0,
        finish_reason: CANCELLED.into(),
        generation_tokens_per_sec: 0.0,
    };
    if let Err(error) = state.store.finish_output(output, &stored) {
        tracing::error!(%error, output, "storing a cancelled output");
    }
    state.comparisons.end_output(
        comparison,
        output,
        json!({
            "output": output,
            "column": column,
            "prompt": prompt,
            "status": CANCELLED,
            "text": "",
            "generated_tokens": 0,
            "finish_reason": CANCELLED,
        }),
    );
}

fn fail_output(state: &Runner, comparison: i64, output: i64, reason: &str) {
    if let Err(error) = state.store.fail_output(output, reason) {
        tracing::error!(%error, output, "storing a failed output");
    }
    state.comparisons.end_output(
        comparison,
        output,
        json!({ "output": output, "status": "failed", "error": reason, "text": "" }),
    );
}
