//! Runs and what their workers reported.

use app::dto::RunSummary;
use engine::config::TrainConfig;
use engine::protocol::Event;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{all_rows, Store, StoreResult};

impl Store {
    /// Every run, newest first, with its latest and best validation loss and
    /// its latest throughput.
    pub fn list_runs(&self) -> StoreResult<Vec<RunSummary>> {
        all_rows(
            &self.connection(),
            "SELECT r.id, r.name, r.status, coalesce(m.name, '(deleted model)'),
                    coalesce(d.name, '(deleted dataset)'), r.step, r.total_steps,
                    (SELECT json_extract(body, '$.val_loss') FROM run_events
                      WHERE run_id = r.id AND kind = 'eval' ORDER BY seq DESC LIMIT 1),
                    (SELECT min(json_extract(body, '$.val_loss')) FROM run_events
                      WHERE run_id = r.id AND kind = 'eval'),
                    (SELECT json_extract(body, '$.tokens_per_sec') FROM run_events
                      WHERE run_id = r.id AND kind = 'report' ORDER BY seq DESC LIMIT 1),
                    (SELECT json_extract(body, '$.it_per_sec') FROM run_events
                      WHERE run_id = r.id AND kind = 'report' ORDER BY seq DESC LIMIT 1),
                    r.created_at, r.started_at,
                    (julianday(coalesce(r.finished_at, 'now')) - julianday(r.started_at)) * 86400
               FROM runs r
               LEFT JOIN models m ON m.id = r.model_id
               LEFT JOIN datasets d ON d.id = r.dataset_id
              ORDER BY r.id DESC",
            [],
            |row| {
                Ok(RunSummary {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    status: row.get(2)?,
                    model: row.get(3)?,
                    dataset: row.get(4)?,
                    step: row.get(5)?,
                    total_steps: row.get(6)?,
                    latest_val_loss: row.get(7)?,
                    best_val_loss: row.get(8)?,
                    tokens_per_sec: row.get(9)?,
                    it_per_sec: row.get(10)?,
                    created_at: row.get(11)?,
                    started_at: row.get(12)?,
                    elapsed_seconds: row.get(13)?,
                    paused: false,
                })
            },
        )
    }
}

/// A run to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub name: String,
    pub model_id: Option<i64>,
    pub dataset_id: Option<i64>,
    /// The resolved config, with the registered model's and dataset's paths.
    pub config: TrainConfig,
}

/// Everything about one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub model: Option<String>,
    pub dataset: Option<String>,
    pub config: TrainConfig,
    pub step: i64,
    pub total_steps: i64,
    pub failure: Option<String>,
    /// Why a `done` run ended before its last step (early stopping).
    pub finish_reason: Option<String>,
    pub log_tail: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointRecord {
    pub step: i64,
    pub path: String,
    pub val_loss: Option<f64>,
}

/// The checkpoint with the lowest validation loss (the earliest on a tie):
/// the one the run page marks best and the adapter download ships.
pub fn best_checkpoint(checkpoints: &[CheckpointRecord]) -> Option<&CheckpointRecord> {
    checkpoints
        .iter()
        .filter(|checkpoint| checkpoint.val_loss.is_some())
        .min_by(|a, b| {
            let loss = |checkpoint: &CheckpointRecord| checkpoint.val_loss.unwrap_or(f64::MAX);
            loss(a).total_cmp(&loss(b))
        })
}

/// One stored worker event. `seq` is the SSE event id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub run_id: i64,
    pub seq: i64,
    pub kind: String,
    pub step: Option<i64>,
    /// The event's JSON, as the worker sent it.
    pub body: String,
}

/// A run's status and progress, as the runs list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunUpdate {
    pub id: i64,
    pub status: String,
    pub step: i64,
    pub total_steps: i64,
    pub failure: Option<String>,
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

fn event_step(event: &Event) -> Option<i64> {
    match event {
        Event::Started { start_step, .. } => Some(*start_step as i64),
        Event::Report { step, .. }
        | Event::Eval { step, .. }
        | Event::Ranks { step, .. }
        | Event::Checkpoint { step, .. }
        | Event::CheckpointRemoved { step, .. }
        | Event::Stopped { step }
        | Event::Done { step, .. } => Some(*step as i64),
        Event::Log { .. } | Event::Failed { .. } => None,
    }
}

fn event_kind(body: &serde_json::Value) -> String {
    body.get("event")
        .and_then(|k| k.as_str())
        .unwrap_or("unknown")
        .to_string()
}

impl Store {
    pub fn insert_run(&self, run: &NewRun) -> StoreResult<i64> {
        let config_json = serde_json::to_string(&run.config)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let id = self.connection().query_row(
            "INSERT INTO runs (name, model_id, dataset_id, status, config_json)
             VALUES (?1, ?2, ?3, 'queued', ?4) RETURNING id",
            params![run.name, run.model_id, run.dataset_id, config_json],
            |row| row.get(0),
        )?;
        Ok(id)
    }

    pub fn run(&self, id: i64) -> StoreResult<Option<RunRecord>> {
        let run = self
            .connection()
            .query_row(
                "SELECT r.id, r.name, r.status, m.name, d.name, r.config_json, r.step,
                        r.total_steps, r.failure, r.log_tail, r.created_at, r.started_at,
                        r.finished_at,
                        (SELECT json_extract(body, '$.reason') FROM run_events
                          WHERE run_id = r.id AND kind = 'done' ORDER BY seq DESC LIMIT 1)
                   FROM runs r
                   LEFT JOIN models m ON m.id = r.model_id
                   LEFT JOIN datasets d ON d.id = r.dataset_id
                  WHERE r.id = ?1",
                [id],
                |row| {
                    let config: String = row.get(5)?;
                    Ok(RunRecord {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        status: row.get(2)?,
                        model: row.get(3)?,
                        dataset: row.get(4)?,
                        // Written by `insert_run`: one this build cannot
                        // read is an error, not a run without settings.
                        config: serde_json::from_str(&config).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                5,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })?,
                        step: row.get(6)?,
                        total_steps: row.get(7)?,
                        failure: row.get(8)?,
                        log_tail: row.get(9)?,
                        created_at: row.get(10)?,
                        started_at: row.get(11)?,
                        finished_at: row.get(12)?,
                        finish_reason: row.get(13)?,
                    })
                },
            )
            .optional()?;
        Ok(run)
    }

    pub fn run_update(&self, id: i64) -> StoreResult<Option<RunUpdate>> {
        let update = self
            .connection()
            .query_row(
                "SELECT id, status, step, total_steps, failure FROM runs WHERE id = ?1",
                [id],
                |row| {
                    Ok(RunUpdate {
                        id: row.get(0)?,
                        status: row.get(1)?,
                        step: row.get(2)?,
                        total_steps: row.get(3)?,
                        failure: row.get(4)?,
                    })
                },
            )
            .optional()?;
        Ok(update)
    }

    /// Deletes a run with its events and checkpoints unless a worker is
    /// (or will be) busy with it; `false` when it was not deleted.
    pub fn delete_finished_run(&self, id: i64) -> StoreResult<bool> {
        let deleted = self.connection().execute(
            "DELETE FROM runs WHERE id = ?1 AND status NOT IN ('queued', 'running', 'stopping')",
            [id],
        )?;
        Ok(deleted > 0)
    }

    /// Ids of queued runs, oldest first.
    pub fn queued_runs(&self) -> StoreResult<Vec<i64>> {
        all_rows(
            &self.connection(),
            "SELECT id FROM runs WHERE status = 'queued' ORDER BY id",
            [],
            |row| row.get(0),
        )
    }

    /// Sets a run's status. `running` stamps `started_at`; an ending status
    /// stamps `finished_at`; `queued` clears the last outcome.
    pub fn set_status(&self, id: i64, status: &str, failure: Option<&str>) -> StoreResult<()> {
        let stamps = match status {
            "running" => format!(", started_at = coalesce(started_at, {NOW}), finished_at = NULL"),
            "queued" => ", finished_at = NULL".to_string(),
            "stopping" => String::new(),
            _ => format!(", finished_at = {NOW}"),
        };
        self.connection().execute(
            &format!("UPDATE runs SET status = ?2, failure = ?3 {stamps} WHERE id = ?1"),
            params![id, status, failure],
        )?;
        Ok(())
    }

    pub fn set_log_tail(&self, id: i64, tail: &str) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE runs SET log_tail = ?2 WHERE id = ?1",
            params![id, tail],
        )?;
        Ok(())
    }

    /// Stores a worker event and applies it to the run in one transaction,
    /// so what a client saw is exactly what survives a crash.
    pub fn record_event(&self, run_id: i64, event: &Event) -> StoreResult<StoredEvent> {
        let body = serde_json::to_value(event)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let kind = event_kind(&body);
        let step = event_step(event);
        let body = body.to_string();
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        let seq: i64 = transaction.query_row(
            "SELECT coalesce(max(seq), 0) + 1 FROM run_events WHERE run_id = ?1",
            [run_id],
            |row| row.get(0),
        )?;
        transaction.execute(
            "INSERT INTO run_events (run_id, seq, kind, step, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run_id, seq, kind, step, body],
        )?;
        match event {
            Event::Started {
                total_steps,
                start_step,
                ..
            } => {
                transaction.execute(
                    "UPDATE runs SET total_steps = ?2, step = ?3 WHERE id = ?1",
                    params![run_id, *total_steps as i64, *start_step as i64],
                )?;
            }
            Event::Report { step, .. } => {
                transaction.execute(
                    "UPDATE runs SET step = ?2 WHERE id = ?1",
                    params![run_id, *step as i64],
                )?;
            }
            Event::Checkpoint { step, path } => {
                transaction.execute(
                    "INSERT INTO checkpoints (run_id, step, path, val_loss)
                     VALUES (?1, ?2, ?3,
                        (SELECT json_extract(body, '$.val_loss') FROM run_events
                          WHERE run_id = ?1 AND kind = 'eval' AND step = ?2
                          ORDER BY seq DESC LIMIT 1))
                     ON CONFLICT (run_id, step) DO UPDATE SET
                        path = excluded.path, val_loss = excluded.val_loss",
                    params![run_id, *step as i64, path],
                )?;
            }
            Event::CheckpointRemoved { step, .. } => {
                transaction.execute(
                    "DELETE FROM checkpoints WHERE run_id = ?1 AND step = ?2",
                    params![run_id, *step as i64],
                )?;
            }
            Event::Stopped { step } => {
                transaction.execute(
                    &format!(
                        "UPDATE runs SET status = 'stopped', step = ?2, finished_at = {NOW} WHERE id = ?1"
                    ),
                    params![run_id, *step as i64],
                )?;
            }
            Event::Done { step, .. } => {
                transaction.execute(
                    &format!(
                        "UPDATE runs SET status = 'done', step = ?2, failure = NULL, finished_at = {NOW} WHERE id = ?1"
                    ),
                    params![run_id, *step as i64],
                )?;
            }
            Event::Failed { reason } => {
                transaction.execute(
                    &format!(
                        "UPDATE runs SET status = 'failed', failure = ?2, finished_at = {NOW} WHERE id = ?1"
                    ),
                    params![run_id, reason],
                )?;
            }
            Event::Eval { .. } | Event::Ranks { .. } | Event::Log { .. } => {}
        }
        transaction.commit()?;
        Ok(StoredEvent {
            run_id,
            seq,
            kind,
            step,
            body,
        })
    }

    /// A run's events after `after_seq`, in order.
    pub fn events_since(&self, run_id: i64, after_seq: i64) -> StoreResult<Vec<StoredEvent>> {
        all_rows(
            &self.connection(),
            "SELECT run_id, seq, kind, step, body FROM run_events
              WHERE run_id = ?1 AND seq > ?2 ORDER BY seq",
            params![run_id, after_seq],
            |row| {
                Ok(StoredEvent {
                    run_id: row.get(0)?,
                    seq: row.get(1)?,
                    kind: row.get(2)?,
                    step: row.get(3)?,
                    body: row.get(4)?,
                })
            },
        )
    }

    /// Seconds from run `run_id`'s first stored event to each of its
    /// events, by `seq`, and to now: the wall-time axis of its loss chart
    /// (the clock the live page continues from).
    pub fn event_seconds(
        &self,
        run_id: i64,
    ) -> StoreResult<(std::collections::HashMap<i64, f64>, f64)> {
        let connection = self.connection();
        let by_seq = all_rows(
            &connection,
            "SELECT seq, (julianday(created_at) - julianday(MIN(created_at) OVER ())) * 86400.0
               FROM run_events WHERE run_id = ?1",
            params![run_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let now: Option<f64> = connection.query_row(
            "SELECT (julianday('now') - julianday(MIN(created_at))) * 86400.0
               FROM run_events WHERE run_id = ?1",
            params![run_id],
            |row| row.get(0),
        )?;
        Ok((by_seq, now.unwrap_or(0.0)))
    }

    /// The bodies of run `run_id`'s stored events (to tell which events of
    /// a worker's journal are already here).
    pub fn event_bodies(&self, run_id: i64) -> StoreResult<std::collections::HashSet<String>> {
        all_rows(
            &self.connection(),
            "SELECT body FROM run_events WHERE run_id = ?1",
            [run_id],
            |row| row.get(0),
        )
    }

    pub fn checkpoints(&self, run_id: i64) -> StoreResult<Vec<CheckpointRecord>> {
        all_rows(
            &self.connection(),
            "SELECT step, path, val_loss FROM checkpoints WHERE run_id = ?1 ORDER BY step",
            [run_id],
            |row| {
                Ok(CheckpointRecord {
                    step: row.get(0)?,
                    path: row.get(1)?,
                    val_loss: row.get(2)?,
                })
            },
        )
    }

    /// After a restart: runs whose worker belonged to the previous server
    /// become `interrupted`. Returns their ids.
    pub fn interrupt_orphans(&self) -> StoreResult<Vec<i64>> {
        all_rows(
            &self.connection(),
            "UPDATE runs SET status = 'interrupted'
              WHERE status IN ('running', 'stopping') RETURNING id",
            [],
            |row| row.get(0),
        )
    }
}
