//! Comparisons (columns, prompts, outputs, blind votes), imported adapters
//! and chats.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{all_rows, Store, StoreResult};

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

#[derive(Debug, Clone, PartialEq)]
pub struct NewAdapter {
    pub name: String,
    pub directory: String,
    pub model_id: Option<i64>,
    pub rank: i64,
    pub num_layers: i64,
    /// Where it was imported from.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdapterRecord {
    pub id: i64,
    pub name: String,
    pub directory: String,
    pub model: Option<String>,
    pub rank: i64,
    pub num_layers: i64,
    pub source: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewColumn {
    pub label: String,
    pub adapter_ref: String,
    pub adapter_path: Option<String>,
    pub run_id: Option<i64>,
    pub adapter_id: Option<i64>,
    pub val_loss: Option<f64>,
    pub test_loss: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPrompt {
    pub prompt_json: String,
    pub display: String,
    pub reference: Option<String>,
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewComparison {
    pub model_id: Option<i64>,
    pub model_name: String,
    pub model_location: String,
    pub dataset_name: Option<String>,
    pub split: Option<String>,
    pub settings_json: String,
    pub columns: Vec<NewColumn>,
    pub prompts: Vec<NewPrompt>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnRecord {
    pub position: usize,
    pub label: String,
    pub adapter_ref: String,
    pub adapter_path: Option<String>,
    pub run_id: Option<i64>,
    pub adapter_id: Option<i64>,
    pub val_loss: Option<f64>,
    pub test_loss: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptRecord {
    pub position: usize,
    pub prompt_json: String,
    pub display: String,
    pub reference: Option<String>,
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputRecord {
    pub id: i64,
    pub prompt_index: usize,
    pub column_index: usize,
    pub status: String,
    pub text: String,
    pub error: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub generated_tokens: Option<i64>,
    pub finish_reason: Option<String>,
    pub generation_tokens_per_sec: Option<f64>,
}

/// What a finished generation stores.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputResult {
    pub text: String,
    pub prompt_tokens: i64,
    pub generated_tokens: i64,
    pub finish_reason: String,
    pub generation_tokens_per_sec: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonRecord {
    pub id: i64,
    pub model_name: String,
    pub model_location: String,
    pub dataset_name: Option<String>,
    pub split: Option<String>,
    pub settings_json: String,
    pub status: String,
    pub failure: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub columns: Vec<ColumnRecord>,
    pub prompts: Vec<PromptRecord>,
    pub outputs: Vec<OutputRecord>,
    /// (prompt index, winning output id) per vote.
    pub votes: Vec<(usize, i64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewChat {
    pub model_name: String,
    pub model_location: String,
    pub adapter_ref: String,
    pub adapter_label: String,
    pub adapter_path: Option<String>,
    pub system_prompt: Option<String>,
    pub temperature: f32,
    pub max_tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRecord {
    pub id: i64,
    pub model_name: String,
    pub model_location: String,
    pub adapter_ref: String,
    pub adapter_label: String,
    pub adapter_path: Option<String>,
    pub system_prompt: Option<String>,
    pub temperature: f32,
    pub max_tokens: usize,
    pub messages_json: String,
}

fn output_from_row(row: &Row<'_>) -> rusqlite::Result<OutputRecord> {
    Ok(OutputRecord {
        id: row.get(0)?,
        prompt_index: row.get::<_, i64>(1)? as usize,
        column_index: row.get::<_, i64>(2)? as usize,
        status: row.get(3)?,
        text: row.get(4)?,
        error: row.get(5)?,
        prompt_tokens: row.get(6)?,
        generated_tokens: row.get(7)?,
        finish_reason: row.get(8)?,
        generation_tokens_per_sec: row.get(9)?,
    })
}

const OUTPUT_COLUMNS: &str = "id, prompt_index, column_index, status, text, error, \
     prompt_tokens, generated_tokens, finish_reason, generation_tokens_per_sec";

impl Store {
    pub fn insert_adapter(&self, adapter: &NewAdapter) -> StoreResult<i64> {
        let id = self.connection().query_row(
            "INSERT INTO adapters (name, directory, model_id, rank, num_layers, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            params![
                adapter.name,
                adapter.directory,
                adapter.model_id,
                adapter.rank,
                adapter.num_layers,
                adapter.source
            ],
            |row| row.get(0),
        )?;
        Ok(id)
    }

    pub fn set_adapter_directory(&self, id: i64, directory: &str) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE adapters SET directory = ?2 WHERE id = ?1",
            params![id, directory],
        )?;
        Ok(())
    }

    pub fn delete_adapter(&self, id: i64) -> StoreResult<()> {
        self.connection()
            .execute("DELETE FROM adapters WHERE id = ?1", [id])?;
        Ok(())
    }

    pub fn list_adapters(&self) -> StoreResult<Vec<AdapterRecord>> {
        self.adapters_where("1 = 1", params![])
    }

    pub fn adapter(&self, id: i64) -> StoreResult<Option<AdapterRecord>> {
        Ok(self.adapters_where("a.id = ?1", [id])?.pop())
    }

    pub fn adapter_by_name(&self, name: &str) -> StoreResult<Option<AdapterRecord>> {
        Ok(self.adapters_where("a.name = ?1", [name])?.pop())
    }

    fn adapters_where(
        &self,
        condition: &str,
        values: impl rusqlite::Params,
    ) -> StoreResult<Vec<AdapterRecord>> {
        all_rows(
            &self.connection(),
            &format!(
                "SELECT a.id, a.name, a.directory, m.name, a.rank, a.num_layers, a.source,
                        a.created_at
                   FROM adapters a LEFT JOIN models m ON m.id = a.model_id
                  WHERE {condition} ORDER BY a.name"
            ),
            values,
            |row| {
                Ok(AdapterRecord {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    directory: row.get(2)?,
                    model: row.get(3)?,
                    rank: row.get(4)?,
                    num_layers: row.get(5)?,
                    source: row.get(6)?,
                    created_at: row.get(7)?,
                })
            },
        )
    }

    /// A run's last validation loss and its test loss, from its events.
    pub fn run_losses(&self, run_id: i64) -> StoreResult<(Option<f64>, Option<f64>)> {
        let connection = self.connection();
        let val = connection
            .query_row(
                "SELECT json_extract(body, '$.val_loss') FROM run_events
                  WHERE run_id = ?1 AND kind = 'eval' ORDER BY seq DESC LIMIT 1",
                [run_id],
                |row| row.get::<_, Option<f64>>(0),
            )
            .optional()?
            .flatten();
        let test = connection
            .query_row(
                "SELECT json_extract(body, '$.test_loss') FROM run_events
                  WHERE run_id = ?1 AND kind = 'done' ORDER BY seq DESC LIMIT 1",
                [run_id],
                |row| row.get::<_, Option<f64>>(0),
            )
            .optional()?
            .flatten();
        Ok((val, test))
    }

    /// Saves a comparison with one pending output per (prompt, column).
    pub fn insert_comparison(&self, new: &NewComparison) -> StoreResult<i64> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        let id: i64 = transaction.query_row(
            "INSERT INTO comparisons (model_id, model_name, model_location, dataset_name, split,
                                      settings_json, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running') RETURNING id",
            params![
                new.model_id,
                new.model_name,
                new.model_location,
                new.dataset_name,
                new.split,
                new.settings_json
            ],
            |row| row.get(0),
        )?;
        for (position, column) in new.columns.iter().enumerate() {
            transaction.execute(
                "INSERT INTO comparison_columns (comparison_id, position, label, adapter_ref,
                     adapter_path, run_id, adapter_id, val_loss, test_loss)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    position as i64,
                    column.label,
                    column.adapter_ref,
                    column.adapter_path,
                    column.run_id,
                    column.adapter_id,
                    column.val_loss,
                    column.test_loss
                ],
            )?;
        }
        for (position, prompt) in new.prompts.iter().enumerate() {
            transaction.execute(
                "INSERT INTO comparison_prompts (comparison_id, position, prompt_json, display,
                     reference, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    position as i64,
                    prompt.prompt_json,
                    prompt.display,
                    prompt.reference,
                    prompt.origin
                ],
            )?;
            for column in 0..new.columns.len() {
                transaction.execute(
                    "INSERT INTO comparison_outputs (comparison_id, prompt_index, column_index, status)
                     VALUES (?1, ?2, ?3, 'pending')",
                    params![id, position as i64, column as i64],
                )?;
            }
        }
        transaction.commit()?;
        Ok(id)
    }

    pub fn comparison(&self, id: i64) -> StoreResult<Option<ComparisonRecord>> {
        let connection = self.connection();
        let header = connection
            .query_row(
                "SELECT id, model_name, model_location, dataset_name, split, settings_json,
                        status, failure, created_at, finished_at
                   FROM comparisons WHERE id = ?1",
                [id],
                |row| {
                    Ok(ComparisonRecord {
                        id: row.get(0)?,
                        model_name: row.get(1)?,
                        model_location: row.get(2)?,
                        dataset_name: row.get(3)?,
                        split: row.get(4)?,
                        settings_json: row.get(5)?,
                        status: row.get(6)?,
                        failure: row.get(7)?,
                        created_at: row.get(8)?,
                        finished_at: row.get(9)?,
                        columns: Vec::new(),
                        prompts: Vec::new(),
                        outputs: Vec::new(),
                        votes: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut record) = header else {
            return Ok(None);
        };
        record.columns = all_rows(
            &connection,
            "SELECT position, label, adapter_ref, adapter_path, run_id, adapter_id, val_loss,
                    test_loss
               FROM comparison_columns WHERE comparison_id = ?1 ORDER BY position",
            [id],
            |row| {
                Ok(ColumnRecord {
                    position: row.get::<_, i64>(0)? as usize,
                    label: row.get(1)?,
                    adapter_ref: row.get(2)?,
                    adapter_path: row.get(3)?,
                    run_id: row.get(4)?,
                    adapter_id: row.get(5)?,
                    val_loss: row.get(6)?,
                    test_loss: row.get(7)?,
                })
            },
        )?;
        record.prompts = all_rows(
            &connection,
            "SELECT position, prompt_json, display, reference, origin
               FROM comparison_prompts WHERE comparison_id = ?1 ORDER BY position",
            [id],
            |row| {
                Ok(PromptRecord {
                    position: row.get::<_, i64>(0)? as usize,
                    prompt_json: row.get(1)?,
                    display: row.get(2)?,
                    reference: row.get(3)?,
                    origin: row.get(4)?,
                })
            },
        )?;
        record.outputs = all_rows(
            &connection,
            &format!(
                "SELECT {OUTPUT_COLUMNS} FROM comparison_outputs WHERE comparison_id = ?1
              ORDER BY prompt_index, column_index"
            ),
            [id],
            output_from_row,
        )?;
        record.votes = all_rows(
            &connection,
            "SELECT prompt_index, output_id FROM comparison_votes
              WHERE comparison_id = ?1 ORDER BY id",
            [id],
            |row| Ok((row.get::<_, i64>(0)? as usize, row.get::<_, i64>(1)?)),
        )?;
        Ok(Some(record))
    }

    /// Every comparison, newest first: (id, model, column labels, prompt
    /// count, status, created_at).
    pub fn list_comparisons(&self) -> StoreResult<Vec<app::compare_dto::ComparisonSummary>> {
        all_rows(
            &self.connection(),
            "SELECT c.id, c.model_name, c.status, c.created_at,
                    (SELECT group_concat(label, char(31)) FROM
                        (SELECT label FROM comparison_columns WHERE comparison_id = c.id ORDER BY position)),
                    (SELECT count(*) FROM comparison_prompts WHERE comparison_id = c.id)
               FROM comparisons c ORDER BY c.id DESC",
            [],
            |row| {
                let labels: Option<String> = row.get(4)?;
                Ok(app::compare_dto::ComparisonSummary {
                    id: row.get(0)?,
                    model: row.get(1)?,
                    status: row.get(2)?,
                    created_at: row.get(3)?,
                    columns: labels
                        .map(|l| l.split('\u{1f}').map(str::to_string).collect())
                        .unwrap_or_default(),
                    prompts: row.get::<_, i64>(5)? as usize,
                })
            },
        )
    }

    /// Ids of comparisons still generating (after a restart: to continue).
    pub fn running_comparisons(&self) -> StoreResult<Vec<i64>> {
        all_rows(
            &self.connection(),
            "SELECT id FROM comparisons WHERE status = 'running' ORDER BY id",
            [],
            |row| row.get(0),
        )
    }

    pub fn finish_output(&self, output_id: i64, result: &OutputResult) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE comparison_outputs SET status = 'done', text = ?2, error = NULL,
                    prompt_tokens = ?3, generated_tokens = ?4, finish_reason = ?5,
                    generation_tokens_per_sec = ?6
              WHERE id = ?1",
            params![
                output_id,
                result.text,
                result.prompt_tokens,
                result.generated_tokens,
                result.finish_reason,
                result.generation_tokens_per_sec
            ],
        )?;
        Ok(())
    }

    pub fn fail_output(&self, output_id: i64, error: &str) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE comparison_outputs SET status = 'failed', error = ?2 WHERE id = ?1",
            params![output_id, error],
        )?;
        Ok(())
    }

    pub fn finish_comparison(
        &self,
        id: i64,
        status: &str,
        failure: Option<&str>,
    ) -> StoreResult<()> {
        self.connection().execute(
            &format!(
                "UPDATE comparisons SET status = ?2, failure = ?3, finished_at = {NOW} WHERE id = ?1"
            ),
            params![id, status, failure],
        )?;
        Ok(())
    }

    /// Records a blind vote for `output_id` on prompt `prompt_index`.
    /// Returns false when that output is not one of that prompt's.
    pub fn insert_vote(
        &self,
        comparison_id: i64,
        prompt_index: usize,
        output_id: i64,
    ) -> StoreResult<bool> {
        let connection = self.connection();
        let belongs: Option<i64> = connection
            .query_row(
                "SELECT id FROM comparison_outputs
                  WHERE id = ?1 AND comparison_id = ?2 AND prompt_index = ?3",
                params![output_id, comparison_id, prompt_index as i64],
                |row| row.get(0),
            )
            .optional()?;
        if belongs.is_none() {
            return Ok(false);
        }
        connection.execute(
            "INSERT INTO comparison_votes (comparison_id, prompt_index, output_id) VALUES (?1, ?2, ?3)",
            params![comparison_id, prompt_index as i64, output_id],
        )?;
        Ok(true)
    }

    pub fn insert_chat(&self, chat: &NewChat) -> StoreResult<i64> {
        let id = self.connection().query_row(
            "INSERT INTO chats (model_name, model_location, adapter_ref, adapter_label,
                                adapter_path, system_prompt, temperature, max_tokens)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            params![
                chat.model_name,
                chat.model_location,
                chat.adapter_ref,
                chat.adapter_label,
                chat.adapter_path,
                chat.system_prompt,
                chat.temperature,
                chat.max_tokens as i64
            ],
            |row| row.get(0),
        )?;
        Ok(id)
    }

    /// The newest chats' ids, newest first, at most `limit`.
    pub fn recent_chat_ids(&self, limit: usize) -> StoreResult<Vec<i64>> {
        let connection = self.connection();
        let mut statement = connection.prepare("SELECT id FROM chats ORDER BY id DESC LIMIT ?1")?;
        let ids = statement
            .query_map([limit as i64], |row| row.get(0))?
            .collect::<Result<Vec<i64>, _>>()?;
        Ok(ids)
    }

    pub fn chat(&self, id: i64) -> StoreResult<Option<ChatRecord>> {
        let chat = self
            .connection()
            .query_row(
                "SELECT id, model_name, model_location, adapter_ref, adapter_label, adapter_path,
                        system_prompt, temperature, max_tokens, messages_json
                   FROM chats WHERE id = ?1",
                [id],
                |row| {
                    Ok(ChatRecord {
                        id: row.get(0)?,
                        model_name: row.get(1)?,
                        model_location: row.get(2)?,
                        adapter_ref: row.get(3)?,
                        adapter_label: row.get(4)?,
                        adapter_path: row.get(5)?,
                        system_prompt: row.get(6)?,
                        temperature: row.get(7)?,
                        max_tokens: row.get::<_, i64>(8)?.max(0) as usize,
                        messages_json: row.get(9)?,
                    })
                },
            )
            .optional()?;
        Ok(chat)
    }

    /// The system message and generation settings for the chat's next replies.
    pub fn set_chat_settings(
        &self,
        id: i64,
        system_prompt: Option<&str>,
        temperature: f32,
        max_tokens: usize,
    ) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE chats SET system_prompt = ?2, temperature = ?3, max_tokens = ?4 WHERE id = ?1",
            params![id, system_prompt, temperature, max_tokens as i64],
        )?;
        Ok(())
    }

    pub fn set_chat_messages(&self, id: i64, messages_json: &str) -> StoreResult<()> {
        self.connection().execute(
            "UPDATE chats SET messages_json = ?2 WHERE id = ?1",
            params![id, messages_json],
        )?;
        Ok(())
    }
}
