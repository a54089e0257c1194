//! Stored evaluations: loss and perplexity of a base with an adapter (a
//! run's checkpoint, an imported adapter, or none) on a dataset split.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{all_rows, Store, StoreResult};

/// Where the evaluated weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvalSource {
    /// The bare base model.
    Base,
    /// A run's checkpoint at `step`.
    Run { run_id: i64, step: i64 },
    /// An imported adapter.
    Adapter { adapter_id: i64 },
}

impl EvalSource {
    fn columns(self) -> (Option<i64>, Option<i64>, Option<i64>) {
        match self {
            EvalSource::Base => (None, None, None),
            EvalSource::Run { run_id, step } => (Some(run_id), Some(step), None),
            EvalSource::Adapter { adapter_id } => (None, None, Some(adapter_id)),
        }
    }
}

/// Everything that decides an evaluation's numbers; two evaluations with
/// the same key give the same loss, so one is reused for the other.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvaluation {
    pub source: EvalSource,
    pub label: String,
    pub model_id: Option<i64>,
    pub model_name: String,
    pub dataset_id: Option<i64>,
    pub dataset_name: String,
    pub split: String,
    pub settings_json: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationRecord {
    pub id: i64,
    pub source: EvalSource,
    pub label: String,
    pub model_name: String,
    pub dataset_id: Option<i64>,
    pub dataset_name: String,
    pub split: String,
    pub settings_json: String,
    pub loss: f64,
    pub perplexity: f64,
    pub tokens: i64,
    pub batches: i64,
    pub seconds: f64,
    pub created_at: String,
}

const COLUMNS: &str = "id, run_id, step, adapter_id, label, model_name, dataset_id, \
                       dataset_name, split, settings_json, loss, perplexity, tokens, \
                       batches, seconds, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<EvaluationRecord> {
    let run_id: Option<i64> = row.get(1)?;
    let step: Option<i64> = row.get(2)?;
    let adapter_id: Option<i64> = row.get(3)?;
    let source = match (run_id, step, adapter_id) {
        (Some(run_id), Some(step), _) => EvalSource::Run { run_id, step },
        (_, _, Some(adapter_id)) => EvalSource::Adapter { adapter_id },
        _ => EvalSource::Base,
    };
    Ok(EvaluationRecord {
        id: row.get(0)?,
        source,
        label: row.get(4)?,
        model_name: row.get(5)?,
        dataset_id: row.get(6)?,
        dataset_name: row.get(7)?,
        split: row.get(8)?,
        settings_json: row.get(9)?,
        loss: row.get(10)?,
        perplexity: row.get(11)?,
        tokens: row.get(12)?,
        batches: row.get(13)?,
        seconds: row.get(14)?,
        created_at: row.get(15)?,
    })
}

impl Store {
    /// Saves an evaluation's result; returns it as stored.
    pub fn insert_evaluation(
        &self,
        key: &NewEvaluation,
        loss: f64,
        tokens: i64,
        batches: i64,
        seconds: f64,
    ) -> StoreResult<EvaluationRecord> {
        let (run_id, step, adapter_id) = key.source.columns();
        let connection = self.connection();
        let id: i64 = connection.query_row(
            "INSERT INTO evaluations (run_id, step, adapter_id, label, model_id, model_name,
                                      dataset_id, dataset_name, split, settings_json, loss,
                                      perplexity, tokens, batches, seconds)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             RETURNING id",
            params![
                run_id,
                step,
                adapter_id,
                key.label,
                key.model_id,
                key.model_name,
                key.dataset_id,
                key.dataset_name,
                key.split,
                key.settings_json,
                loss,
                loss.exp(),
                tokens,
                batches,
                seconds
            ],
            |row| row.get(0),
        )?;
        connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM evaluations WHERE id = ?1"),
                [id],
                from_row,
            )
            .map_err(Into::into)
    }

    /// The newest evaluation with exactly this key, if any.
    pub fn find_evaluation(&self, key: &NewEvaluation) -> StoreResult<Option<EvaluationRecord>> {
        let (run_id, step, adapter_id) = key.source.columns();
        let connection = self.connection();
        connection
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM evaluations
                      WHERE run_id IS ?1 AND step IS ?2 AND adapter_id IS ?3
                        AND model_id IS ?4 AND dataset_id IS ?5 AND split = ?6
                        AND settings_json = ?7
                      ORDER BY id DESC LIMIT 1"
                ),
                params![
                    run_id,
                    step,
                    adapter_id,
                    key.model_id,
                    key.dataset_id,
                    key.split,
                    key.settings_json
                ],
                from_row,
            )
            .optional()
            .map_err(Into::into)
    }

    /// A run's evaluations, newest first.
    pub fn run_evaluations(&self, run_id: i64) -> StoreResult<Vec<EvaluationRecord>> {
        all_rows(
            &self.connection(),
            &format!("SELECT {COLUMNS} FROM evaluations WHERE run_id = ?1 ORDER BY id DESC"),
            [run_id],
            from_row,
        )
    }
}
