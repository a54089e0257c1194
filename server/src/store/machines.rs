//! Machine sets: a name and an mlx.launch hostfile, with each host's last
//! check (`server/src/machines/`).

use rusqlite::{params, OptionalExtension};

use super::{all_rows, Store, StoreResult};

/// One stored machine set. `check_json` is the last check's per-host
/// results as `machines::check` wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSetRecord {
    pub id: i64,
    pub name: String,
    pub hostfile: String,
    pub created_at: String,
    pub checked_at: Option<String>,
    pub check_json: Option<String>,
}

const COLUMNS: &str = "id, name, hostfile, created_at, checked_at, check_json";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MachineSetRecord> {
    Ok(MachineSetRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        hostfile: row.get(2)?,
        created_at: row.get(3)?,
        checked_at: row.get(4)?,
        check_json: row.get(5)?,
    })
}

impl Store {
    /// Registers a machine set; `None` when the name is taken.
    pub fn insert_machine_set(&self, name: &str, hostfile: &str) -> StoreResult<Option<i64>> {
        self.write_named(
            "machine_sets",
            &["name", "hostfile"],
            &[&name, &hostfile],
            false,
        )
    }

    /// Every machine set, by name.
    pub fn machine_sets(&self) -> StoreResult<Vec<MachineSetRecord>> {
        all_rows(
            &self.connection(),
            &format!("SELECT {COLUMNS} FROM machine_sets ORDER BY name"),
            [],
            from_row,
        )
    }

    pub fn machine_set(&self, id: i64) -> StoreResult<Option<MachineSetRecord>> {
        Ok(self
            .connection()
            .query_row(
                &format!("SELECT {COLUMNS} FROM machine_sets WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?)
    }

    pub fn machine_set_by_name(&self, name: &str) -> StoreResult<Option<MachineSetRecord>> {
        Ok(self
            .connection()
            .query_row(
                &format!("SELECT {COLUMNS} FROM machine_sets WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?)
    }

    /// Whether there was such a set.
    pub fn delete_machine_set(&self, id: i64) -> StoreResult<bool> {
        let deleted = self
            .connection()
            .execute("DELETE FROM machine_sets WHERE id = ?1", [id])?;
        Ok(deleted > 0)
    }

    /// Stores a check's results, stamped with the store's clock.
    pub fn set_machine_check(&self, id: i64, check_json: &str) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE machine_sets SET check_json = ?2,
                    checked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
              WHERE id = ?1",
            params![id, check_json],
        )?;
        Ok(())
    }
}
