//! Datasets registered in the data dir.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{all_rows, Store, StoreResult};
use crate::setup::DataDir;

/// Name of the sample dataset every data dir gets.
pub const SAMPLE_DATASET_NAME: &str = "sample-ahoy";

#[derive(Debug, Clone, PartialEq)]
pub struct NewDataset {
    pub name: String,
    pub directory: String,
    pub format: Option<String>,
    pub train_count: usize,
    pub valid_count: usize,
    pub test_count: usize,
    /// Validation problems found when the files were checked.
    pub problems: usize,
    pub builtin: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetRecord {
    pub id: i64,
    pub name: String,
    pub directory: String,
    pub format: Option<String>,
    pub train_count: i64,
    pub valid_count: i64,
    pub test_count: i64,
    pub problems: i64,
    pub builtin: bool,
    pub created_at: String,
}

const COLUMNS: &str = "id, name, directory, format, train_count, valid_count, test_count, \
                       problems, builtin, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<DatasetRecord> {
    Ok(DatasetRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        directory: row.get(2)?,
        format: row.get(3)?,
        train_count: row.get(4)?,
        valid_count: row.get(5)?,
        test_count: row.get(6)?,
        problems: row.get(7)?,
        builtin: row.get(8)?,
        created_at: row.get(9)?,
    })
}

impl Store {
    /// Registers a dataset, or updates the one of the same name.
    pub fn upsert_dataset(&self, dataset: &NewDataset) -> StoreResult<i64> {
        self.write_dataset(dataset, true)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows.into())
    }

    /// Registers a new dataset; `None` when the name is taken.
    pub fn insert_dataset(&self, dataset: &NewDataset) -> StoreResult<Option<i64>> {
        self.write_dataset(dataset, false)
    }

    fn write_dataset(&self, dataset: &NewDataset, replace: bool) -> StoreResult<Option<i64>> {
        self.write_named(
            "datasets",
            &[
                "name",
                "directory",
                "format",
                "train_count",
                "valid_count",
                "test_count",
                "problems",
                "builtin",
            ],
            params![
                dataset.name,
                dataset.directory,
                dataset.format,
                dataset.train_count as i64,
                dataset.valid_count as i64,
                dataset.test_count as i64,
                dataset.problems as i64,
                dataset.builtin
            ],
            replace,
        )
    }

    /// Where a dataset's files are, once they are in place.
    pub fn set_dataset_directory(&self, id: i64, directory: &str) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE datasets SET directory = ?2 WHERE id = ?1",
            params![id, directory],
        )?;
        Ok(())
    }

    /// Points a dataset that has problems at new files (a replacing
    /// upload), in one statement so the row never mixes old and new.
    /// False when it has no problems (any more): then it is not replaced.
    pub fn replace_unusable_dataset(&self, id: i64, dataset: &NewDataset) -> StoreResult<bool> {
        let replaced = self.connection().execute(
            "UPDATE datasets
                SET directory = ?2, format = ?3, train_count = ?4, valid_count = ?5,
                    test_count = ?6, problems = ?7
              WHERE id = ?1 AND problems > 0 AND NOT builtin",
            params![
                id,
                dataset.directory,
                dataset.format,
                dataset.train_count as i64,
                dataset.valid_count as i64,
                dataset.test_count as i64,
                dataset.problems as i64
            ],
        )?;
        Ok(replaced > 0)
    }

    pub fn dataset(&self, id: i64) -> StoreResult<Option<DatasetRecord>> {
        let row = self
            .connection()
            .query_row(
                &format!("SELECT {COLUMNS} FROM datasets WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?;
        Ok(row)
    }

    /// Forgets a dataset. Runs keep their configs (which name its folder)
    /// and lose the link (`ON DELETE SET NULL`).
    pub fn delete_dataset(&self, id: i64) -> StoreResult<bool> {
        let deleted = self
            .connection()
            .execute("DELETE FROM datasets WHERE id = ?1", [id])?;
        Ok(deleted > 0)
    }

    /// Runs of this dataset that a worker is (or will be) busy with.
    pub fn active_runs_of_dataset(&self, id: i64) -> StoreResult<i64> {
        let count = self.connection().query_row(
            "SELECT count(*) FROM runs
             WHERE dataset_id = ?1 AND status IN ('queued', 'running', 'stopping')",
            [id],
            |row| row.get(0),
        )?;
        Ok(count)
    }

    pub fn list_datasets(&self) -> StoreResult<Vec<DatasetRecord>> {
        all_rows(
            &self.connection(),
            &format!("SELECT {COLUMNS} FROM datasets ORDER BY name"),
            [],
            from_row,
        )
    }

    pub fn dataset_by_name(&self, name: &str) -> StoreResult<Option<DatasetRecord>> {
        let row = self
            .connection()
            .query_row(
                &format!("SELECT {COLUMNS} FROM datasets WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?;
        Ok(row)
    }
}

/// Writes the shipped sample dataset into `<data dir>/datasets/<id>/` and
/// registers it as `sample-ahoy`. Idempotent: the files are rewritten only
/// when missing.
pub fn register_sample_dataset(store: &Store, data_dir: &DataDir) -> Result<()> {
    let id = match store.dataset_by_name(SAMPLE_DATASET_NAME)? {
        Some(existing) => existing.id,
        None => store.upsert_dataset(&NewDataset {
            name: SAMPLE_DATASET_NAME.into(),
            directory: String::new(),
            format: None,
            train_count: 0,
            valid_count: 0,
            test_count: 0,
            problems: 0,
            builtin: true,
        })?,
    };
    let dir = data_dir.datasets().join(id.to_string());
    if !dir.join("train.jsonl").is_file() {
        engine::data::sample::write_sample_dataset(&dir)
            .with_context(|| format!("cannot write the sample dataset to {}", dir.display()))?;
    }
    let count = |name: &str| -> Result<usize> {
        let path: &Path = &dir.join(name);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(text.lines().filter(|l| !l.trim().is_empty()).count())
    };
    store.upsert_dataset(&NewDataset {
        name: SAMPLE_DATASET_NAME.into(),
        directory: dir.display().to_string(),
        format: Some("chat".into()),
        train_count: count("train.jsonl")?,
        valid_count: count("valid.jsonl")?,
        test_count: count("test.jsonl")?,
        problems: 0,
        builtin: true,
    })?;
    Ok(())
}
