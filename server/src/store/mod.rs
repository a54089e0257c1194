//! The SQLite store: one file in the data dir, WAL mode, migrations embedded
//! in the binary and applied in order at open (tracked by `user_version`).

mod catalog;
mod comparisons;
mod datasets;
mod evaluations;
mod exports;
mod inspections;
mod machines;
mod pulls;
mod runs;
mod system;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Params, Row, ToSql};

// A registered model's row is what the pages and the API show of it.
pub use app::dto::ModelSummary;
pub use catalog::NewModel;
pub use comparisons::{
    AdapterRecord, ChatRecord, ColumnRecord, ComparisonRecord, NewAdapter, NewChat, NewColumn,
    NewComparison, NewPrompt, OutputRecord, OutputResult, PromptRecord,
};
pub use datasets::{register_sample_dataset, DatasetRecord, NewDataset, SAMPLE_DATASET_NAME};
pub use evaluations::{EvalSource, EvaluationRecord, NewEvaluation};
pub use machines::MachineSetRecord;
pub use runs::{best_checkpoint, CheckpointRecord, NewRun, RunRecord, RunUpdate, StoredEvent};

/// Migrations in order; the database's `user_version` is how many are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_run_log_tail.sql"),
    include_str!("../../migrations/0003_dataset_problems.sql"),
    include_str!("../../migrations/0004_comparisons.sql"),
    include_str!("../../migrations/0005_evaluations.sql"),
    include_str!("../../migrations/0006_pulls.sql"),
    include_str!("../../migrations/0007_exports.sql"),
    include_str!("../../migrations/0008_chat_settings.sql"),
    include_str!("../../migrations/0009_dataset_inspections.sql"),
    include_str!("../../migrations/0010_machine_sets.sql"),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database migration {number}: {source}")]
    Migration {
        number: usize,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} was written by a newer Loralab (schema {found}, this build knows {known})"
    )]
    TooNew {
        path: String,
        found: usize,
        known: usize,
    },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A handle on the database. Queries are short, so one connection behind a
/// mutex serves the whole server; SQLite work never waits on a network.
pub struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> StoreResult<Self> {
        let open_error = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut connection = Connection::open(path).map_err(open_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(open_error)?;
        migrate(&mut connection, path)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    pub(crate) fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Inserts a row into `table`, whose `name` column is unique, and
    /// returns its id. With `replace` a row of the same name takes the new
    /// values (all of `columns` but the name); without, that row is left
    /// alone and the answer is `None`. Models and datasets are registered
    /// this way.
    fn write_named(
        &self,
        table: &str,
        columns: &[&str],
        values: &[&dyn ToSql],
        replace: bool,
    ) -> StoreResult<Option<i64>> {
        let on_conflict = if replace {
            let updates: Vec<String> = columns
                .iter()
                .filter(|column| **column != "name")
                .map(|column| format!("{column} = excluded.{column}"))
                .collect();
            format!("DO UPDATE SET {}", updates.join(", "))
        } else {
            "DO NOTHING".to_string()
        };
        let placeholders: Vec<String> = (1..=columns.len()).map(|n| format!("?{n}")).collect();
        let id = self
            .connection()
            .query_row(
                &format!(
                    "INSERT INTO {table} ({}) VALUES ({})
                     ON CONFLICT (name) {on_conflict}
                     RETURNING id",
                    columns.join(", "),
                    placeholders.join(", ")
                ),
                values,
                |row| row.get(0),
            )
            .optional()?;
        Ok(id)
    }

    /// The number of applied migrations.
    pub fn schema_version(&self) -> StoreResult<usize> {
        schema_version(&self.connection())
    }
}

/// Every row `sql` answers with, each turned into a value by `from_row`.
fn all_rows<T, C: FromIterator<T>>(
    connection: &Connection,
    sql: &str,
    params: impl Params,
    from_row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<C> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement
        .query_map(params, from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn schema_version(connection: &Connection) -> StoreResult<usize> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(version as usize)
}

fn migrate(connection: &mut Connection, path: &Path) -> StoreResult<()> {
    let applied = schema_version(connection)?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: applied,
            known: MIGRATIONS.len(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let number = index + 1;
        let migration_error = |source| StoreError::Migration { number, source };
        let transaction = connection.transaction().map_err(migration_error)?;
        transaction.execute_batch(sql).map_err(migration_error)?;
        transaction
            .pragma_update(None, "user_version", number as i64)
            .map_err(migration_error)?;
        transaction.commit().map_err(migration_error)?;
    }
    Ok(())
}
