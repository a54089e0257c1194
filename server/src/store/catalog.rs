//! Models and datasets known to this Loralab.

use rusqlite::{params, OptionalExtension, Row};

use super::{all_rows, ModelSummary, Store, StoreResult};

/// A model to register.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    pub name: String,
    /// `gguf`, `folder` or `hub`.
    pub source: String,
    /// A file or folder path, or a Hub repo id.
    pub location: String,
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    pub quantization: Option<String>,
    pub size_bytes: Option<u64>,
    pub builtin: bool,
}

const MODEL_COLUMNS: &str = "id, name, source, location, architecture, parameters, \
                             quantization, size_bytes, builtin, created_at";

fn model_from_row(row: &Row<'_>) -> rusqlite::Result<ModelSummary> {
    Ok(ModelSummary {
        id: row.get(0)?,
        name: row.get(1)?,
        source: row.get(2)?,
        location: row.get(3)?,
        architecture: row.get(4)?,
        parameters: row.get(5)?,
        quantization: row.get(6)?,
        size_bytes: row.get(7)?,
        builtin: row.get(8)?,
        created_at: row.get(9)?,
    })
}

impl Store {
    /// Registers a model, or updates the one of the same name (so that a
    /// built-in model follows its file when the install moves).
    pub fn upsert_model(&self, model: &NewModel) -> StoreResult<i64> {
        self.write_model(model, true)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows.into())
    }

    /// Registers a new model; `None` when the name is taken.
    pub fn insert_model(&self, model: &NewModel) -> StoreResult<Option<i64>> {
        self.write_model(model, false)
    }

    fn write_model(&self, model: &NewModel, replace: bool) -> StoreResult<Option<i64>> {
        self.write_named(
            "models",
            &[
                "name",
                "source",
                "location",
                "architecture",
                "parameters",
                "quantization",
                "size_bytes",
                "builtin",
            ],
            params![
                model.name,
                model.source,
                model.location,
                model.architecture,
                model.parameters,
                model.quantization,
                model.size_bytes,
                model.builtin
            ],
            replace,
        )
    }

    pub fn list_models(&self) -> StoreResult<Vec<ModelSummary>> {
        all_rows(
            &self.connection(),
            &format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY name"),
            [],
            model_from_row,
        )
    }

    pub fn model_by_name(&self, name: &str) -> StoreResult<Option<ModelSummary>> {
        let connection = self.connection();
        let model = connection
            .query_row(
                &format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = ?1"),
                [name],
                model_from_row,
            )
            .optional()?;
        Ok(model)
    }

    pub fn model(&self, id: i64) -> StoreResult<Option<ModelSummary>> {
        let model = self
            .connection()
            .query_row(
                &format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = ?1"),
                [id],
                model_from_row,
            )
            .optional()?;
        Ok(model)
    }

    /// Forgets a model unless a queued or running run uses it; `false`
    /// when it was kept. Its files are the user's and stay.
    pub fn delete_idle_model(&self, id: i64) -> StoreResult<bool> {
        let deleted = self.connection().execute(
            "DELETE FROM models WHERE id = ?1 AND NOT EXISTS (
                 SELECT 1 FROM runs
                  WHERE model_id = ?1 AND status IN ('queued', 'running', 'stopping'))",
            [id],
        )?;
        Ok(deleted > 0)
    }
}
