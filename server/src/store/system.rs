//! What the server itself adds to a run's events: machine samples
//! (`system`) and the guard's `paused` / `resumed`. They share `run_events`
//! (and so the SSE stream and its seq) with the worker's events, and apply
//! nothing to the run.

use rusqlite::params;

use super::{Store, StoreResult, StoredEvent};

/// Samples older than this are thinned to one per `THIN_BUCKET_SECS`.
const KEEP_DENSE_SECS: f64 = 3600.0;
const THIN_BUCKET_SECS: f64 = 10.0;

impl Store {
    /// Stores a server event `body` (a JSON object whose `event` is its kind).
    pub fn record_server_event(
        &self,
        run_id: i64,
        step: Option<i64>,
        body: &serde_json::Value,
    ) -> StoreResult<StoredEvent> {
        let kind = body
            .get("event")
            .and_then(|kind| kind.as_str())
            .unwrap_or("unknown")
            .to_string();
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
        transaction.commit()?;
        Ok(StoredEvent {
            run_id,
            seq,
            kind,
            step,
            body,
        })
    }

    /// Keeps one `system` sample (the first) per `THIN_BUCKET_SECS` among
    /// those taken before `now - KEEP_DENSE_SECS`; returns how many went.
    pub fn thin_system_samples(&self, run_id: i64, now: f64) -> StoreResult<usize> {
        let removed = self.connection().execute(
            "DELETE FROM run_events
              WHERE run_id = ?1 AND kind = 'system'
                AND json_extract(body, '$.time') < ?2
                AND seq NOT IN (
                    SELECT min(seq) FROM run_events
                     WHERE run_id = ?1 AND kind = 'system'
                       AND json_extract(body, '$.time') < ?2
                     GROUP BY CAST(json_extract(body, '$.time') / ?3 AS INTEGER))",
            params![run_id, now - KEEP_DENSE_SECS, THIN_BUCKET_SECS],
        )?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRun;
    use serde_json::json;

    #[test]
    fn samples_older_than_an_hour_keep_one_per_ten_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("loralab.db")).unwrap();
        let run = store
            .insert_run(&NewRun {
                name: "r".into(),
                model_id: None,
                dataset_id: None,
                config: Default::default(),
            })
            .unwrap();
        let now = 100_000.0;
        // Two hours of one sample a second, then a pause event.
        for second in 0..7200 {
            let time = now - 7200.0 + f64::from(second);
            store
                .record_server_event(run, Some(1), &json!({"event": "system", "time": time}))
                .unwrap();
        }
        store
            .record_server_event(
                run,
                Some(1),
                &json!({"event": "paused", "time": now - 7000.0}),
            )
            .unwrap();
        let removed = store.thin_system_samples(run, now).unwrap();
        assert_eq!(removed, 3600 - 360);
        let events = store.events_since(run, 0).unwrap();
        let times: Vec<f64> = events
            .iter()
            .filter(|e| e.kind == "system")
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["time"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        assert_eq!(times.len(), 360 + 3600);
        assert_eq!(times[0], now - 7200.0);
        assert_eq!(times[1], now - 7190.0);
        assert_eq!(times[359], now - 3610.0);
        assert_eq!(times[360], now - 3600.0);
        assert!(
            events.iter().any(|e| e.kind == "paused"),
            "other events stay"
        );
        assert_eq!(store.thin_system_samples(run, now).unwrap(), 0);
    }
}
