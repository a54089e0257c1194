//! Runs and what their workers reported.

use app::dto::RunSummary;

use super::{Store, StoreResult};

impl Store {
    /// Every run, newest first, with its latest and best validation loss and
    /// its latest throughput.
    pub fn list_runs(&self) -> StoreResult<Vec<RunSummary>> {
        let connection = self.connection();
        let mut statement = connection.prepare(
            "SELECT r.id, r.name, r.status, coalesce(m.name, '(deleted model)'),
                    coalesce(d.name, '(deleted dataset)'), r.step, r.total_steps,
                    (SELECT json_extract(body, '$.val_loss') FROM run_events
                      WHERE run_id = r.id AND kind = 'eval' ORDER BY seq DESC LIMIT 1),
                    (SELECT min(json_extract(body, '$.val_loss')) FROM run_events
                      WHERE run_id = r.id AND kind = 'eval'),
                    (SELECT json_extract(body, '$.tokens_per_sec') FROM run_events
                      WHERE run_id = r.id AND kind = 'report' ORDER BY seq DESC LIMIT 1),
                    r.created_at
               FROM runs r
               LEFT JOIN models m ON m.id = r.model_id
               LEFT JOIN datasets d ON d.id = r.dataset_id
              ORDER BY r.id DESC",
        )?;
        let runs = statement
            .query_map([], |row| {
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
                    created_at: row.get(10)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(runs)
    }
}
