//! Stored dataset inspections (see `crate::inspections`).

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreResult};

impl Store {
    /// The inspection of `directory` with `settings`, if one is stored for
    /// exactly these `files`.
    pub fn inspection(
        &self,
        directory: &str,
        settings: &str,
        files: &str,
    ) -> StoreResult<Option<String>> {
        let json = self
            .connection()
            .query_row(
                "SELECT inspection_json FROM dataset_inspections
                  WHERE directory = ?1 AND settings = ?2 AND files = ?3",
                params![directory, settings, files],
                |row| row.get(0),
            )
            .optional()?;
        Ok(json)
    }

    /// Keeps an inspection, replacing one of older files.
    pub fn save_inspection(
        &self,
        directory: &str,
        settings: &str,
        files: &str,
        inspection_json: &str,
    ) -> StoreResult<()> {
        self.connection().execute(
            "INSERT INTO dataset_inspections (directory, settings, files, inspection_json)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (directory, settings)
             DO UPDATE SET files = excluded.files, inspection_json = excluded.inspection_json",
            params![directory, settings, files, inspection_json],
        )?;
        Ok(())
    }

    /// Forgets every inspection of a dataset folder (deleted or replaced).
    pub fn forget_inspections(&self, directory: &str) -> StoreResult<()> {
        self.connection().execute(
            "DELETE FROM dataset_inspections WHERE directory = ?1",
            params![directory],
        )?;
        Ok(())
    }
}
