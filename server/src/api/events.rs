//! SSE streams: one run's events (history from the store, then live), and
//! the runs list's status/progress changes. Both end when the server shuts
//! down.
//!
//! Many viewers: every stream reads the same broadcast channel, which never
//! waits for a receiver, so a slow client cannot hold up the supervisor or
//! other viewers. A run stream that falls a whole channel behind is ended
//! (the browser's EventSource reconnects with Last-Event-ID and reads the
//! rest from the store). Each client address holds a bounded number of
//! streams (`access::StreamSlots`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::ApiError;
use crate::access::{Client, StreamSlot, TooManyStreams};
use crate::state::SharedState;
use crate::store::{RunUpdate, StoredEvent};

/// Where a run stream starts: `?after=SEQ` lets a page that was rendered
/// with events up to SEQ ask for the rest only (a browser's first
/// EventSource request cannot set headers).
#[derive(Debug, Default, serde::Deserialize)]
pub struct StreamStart {
    after: Option<i64>,
}

/// `GET /api/runs/{id}/events`. Event ids are the store's `seq`; a client
/// that reconnects with `Last-Event-ID` gets exactly the events after it.
pub async fn run_stream(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    Query(start): Query<StreamStart>,
    client: Option<Extension<Client>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    let reject = IntoResponse::into_response;
    state
        .store
        .run(id)
        .map_err(|e| reject(ApiError::from(e)))?
        .ok_or_else(|| reject(ApiError::run_not_found(id)))?;
    let slot = open_slot(client).map_err(IntoResponse::into_response)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(start.after)
        .unwrap_or(0);
    // Subscribe before reading history: an event committed in between is
    // then in both, and the seq check drops the second copy.
    let live = state.supervisor.subscribe_events();
    let shutdown = state.supervisor.shutdown_signal();
    let history = state
        .store
        .events_since(id, after)
        .map_err(|e| reject(ApiError::from(e)))?;
    let cursor = RunCursor {
        _slot: slot,
        id,
        last: after,
        pending: history.into(),
        live,
        shutdown,
    };
    let stream = stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        let sse = SseEvent::default()
            .id(event.seq.to_string())
            .event(event.kind.clone())
            .data(event.body.clone());
        Some((Ok(sse), cursor))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A slot for one more stream of this client; None when the router runs
/// without the access layer.
pub(crate) fn open_slot(
    client: Option<Extension<Client>>,
) -> Result<Option<StreamSlot>, TooManyStreams> {
    client
        .map(|Extension(client)| client.open_stream())
        .transpose()
}

struct RunCursor {
    /// Held for as long as the stream lives.
    _slot: Option<StreamSlot>,
    id: i64,
    last: i64,
    pending: VecDeque<StoredEvent>,
    live: broadcast::Receiver<Arc<StoredEvent>>,
    shutdown: watch::Receiver<bool>,
}

impl RunCursor {
    async fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event.seq > self.last {
                    self.last = event.seq;
                    return Some(event);
                }
                continue;
            }
            if *self.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        return None;
                    }
                }
                received = self.live.recv() => match received {
                    Ok(event) => {
                        if event.run_id == self.id && event.seq > self.last {
                            self.pending.push_back((*event).clone());
                        }
                    }
                    // A whole channel behind: a client this slow is dropped
                    // rather than fed from the store while it stalls; its
                    // EventSource comes back with Last-Event-ID.
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(run = self.id, missed, "dropping a slow event stream");
                        return None;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }
}

/// `GET /api/runs/events`: a `run` event with the run's id, status, step,
/// total_steps and failure whenever one of them changes, and `resync` when
/// this stream fell behind and lost some (one may have been a status change
/// that no later update repeats): the page reads the runs again.
pub async fn runs_stream(
    State(state): State<SharedState>,
    client: Option<Extension<Client>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    let slot = open_slot(client).map_err(IntoResponse::into_response)?;
    let updates = state.supervisor.subscribe_updates();
    let shutdown = state.supervisor.shutdown_signal();
    let stream = stream::unfold(
        (updates, shutdown, slot),
        |(mut updates, mut shutdown, slot)| async move {
            let event = match next_update(&mut updates, &mut shutdown).await? {
                Some(update) => SseEvent::default()
                    .event("run")
                    .data(serde_json::to_string(&update).unwrap_or_default()),
                None => SseEvent::default().event("resync").data("{}"),
            };
            Some((Ok(event), (updates, shutdown, slot)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The next update; `Some(None)` when some were lost to a lag; `None` at
/// shutdown.
async fn next_update(
    updates: &mut broadcast::Receiver<RunUpdate>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Option<RunUpdate>> {
    loop {
        if *shutdown.borrow() {
            return None;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return None;
                }
            }
            received = updates.recv() => match received {
                Ok(update) => return Some(Some(update)),
                Err(RecvError::Lagged(_)) => return Some(None),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
