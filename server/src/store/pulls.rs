//! Stored Hub pulls: each pull's view as the API shows it. The row's id is
//! the pull's id; the one inside the JSON is not read back.

use app::dto::PullView;
use rusqlite::params;

use super::{all_rows, Store, StoreResult};

impl Store {
    /// Records a pull that starts now and gives it its id.
    pub fn insert_pull(&self, view: &PullView) -> StoreResult<u64> {
        let connection = self.connection();
        connection.execute(
            "INSERT INTO pulls (view_json) VALUES (?1)",
            params![to_json(view)],
        )?;
        Ok(connection.last_insert_rowid() as u64)
    }

    /// Replaces the stored view of pull `view.id`.
    pub fn save_pull(&self, view: &PullView) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE pulls SET view_json = ?2 WHERE id = ?1",
            params![view.id as i64, to_json(view)],
        )?;
        Ok(())
    }

    pub fn delete_pull(&self, id: u64) -> StoreResult<()> {
        self.connection()
            .execute("DELETE FROM pulls WHERE id = ?1", params![id as i64])?;
        Ok(())
    }

    /// Marks the pulls stored as running (the server stopped during them)
    /// failed, with `reason`. Returns how many there were.
    pub fn fail_running_pulls(&self, reason: &str) -> StoreResult<usize> {
        let changed = self.connection().execute(
            "UPDATE pulls
             SET view_json = json_set(view_json, '$.status', 'failed', '$.error', ?1)
             WHERE json_extract(view_json, '$.status') = 'running'",
            params![reason],
        )?;
        Ok(changed)
    }

    /// The newest `limit` pulls, oldest first. A view that no longer parses
    /// (written by another version) is left out.
    pub fn recent_pulls(&self, limit: usize) -> StoreResult<Vec<PullView>> {
        let rows: Vec<(i64, String)> = all_rows(
            &self.connection(),
            "SELECT id, view_json FROM (SELECT id, view_json FROM pulls ORDER BY id DESC LIMIT ?1)
             ORDER BY id",
            params![limit as i64],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, json)| {
                let view: PullView = serde_json::from_str(&json).ok()?;
                Some(PullView {
                    id: id as u64,
                    ..view
                })
            })
            .collect())
    }
}

fn to_json(view: &PullView) -> String {
    serde_json::to_string(view).expect("a pull view always serializes")
}
