//! Stored exports: each export's view as the API shows it. The row's id is
//! the export's id.

use app::dto::ExportView;
use rusqlite::{params, OptionalExtension};

use super::{all_rows, Store, StoreResult};

fn to_json(view: &ExportView) -> String {
    serde_json::to_string(view).expect("an export view serializes")
}

/// A stored view with the row's id; None when it no longer parses
/// (written by another version).
fn from_row(id: i64, json: &str) -> Option<ExportView> {
    let view: ExportView = serde_json::from_str(json).ok()?;
    Some(ExportView { id, ..view })
}

impl Store {
    /// Records a new export; its id and creation time (the store's clock).
    pub fn insert_export(&self, view: &ExportView) -> StoreResult<(i64, String)> {
        let row = self.connection().query_row(
            "INSERT INTO exports (run_id, view_json) VALUES (?1, ?2) RETURNING id, created_at",
            params![view.run_id, to_json(view)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(row)
    }

    pub fn save_export(&self, view: &ExportView) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE exports SET view_json = ?2 WHERE id = ?1",
            params![view.id, to_json(view)],
        )?;
        Ok(())
    }

    pub fn export(&self, id: i64) -> StoreResult<Option<ExportView>> {
        let json: Option<String> = self
            .connection()
            .query_row("SELECT view_json FROM exports WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()?;
        Ok(json.and_then(|json| from_row(id, &json)))
    }

    /// Every export (of run `run_id` only, when given), newest first.
    pub fn exports(&self, run_id: Option<i64>) -> StoreResult<Vec<ExportView>> {
        let rows: Vec<(i64, String)> = all_rows(
            &self.connection(),
            "SELECT id, view_json FROM exports WHERE ?1 IS NULL OR run_id = ?1 ORDER BY id DESC",
            params![run_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, json)| from_row(id, &json))
            .collect())
    }

    /// Marks exports stored as queued or running (the server stopped during
    /// them) failed with `reason`; returns their ids.
    pub fn fail_unfinished_exports(&self, reason: &str) -> StoreResult<Vec<i64>> {
        let ids: Vec<i64> = all_rows(
            &self.connection(),
            "UPDATE exports
             SET view_json = json_set(view_json, '$.status', 'failed', '$.error', ?1)
             WHERE json_extract(view_json, '$.status') IN ('queued', 'running')
             RETURNING id",
            params![reason],
            |row| row.get(0),
        )?;
        Ok(ids)
    }

    pub fn delete_export(&self, id: i64) -> StoreResult<bool> {
        let deleted = self
            .connection()
            .execute("DELETE FROM exports WHERE id = ?1", [id])?;
        Ok(deleted > 0)
    }
}
