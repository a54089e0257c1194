//! A new comparison's request (`POST /api/compare`, or the compare form
//! turned into one): checked field by field, then resolved into what the
//! store saves.

use std::path::Path;

use app::compare_dto::NewComparisonForm;
use engine::data::format::{Example, FormatKeys, Role};
use engine::data::source::Split;
use engine::protocol::{GenerationSettings, InferencePrompt, PromptMessage};
use serde::Deserialize;

use super::adapters::resolve_adapter;
use super::error::CompareError;
use crate::state::AppState;
use crate::store::{NewColumn, NewComparison, NewPrompt};

/// Most columns side by side.
pub const MAX_COLUMNS: usize = 6;
/// Most prompts drawn from a dataset.
pub const MAX_DATASET_PROMPTS: usize = 20;
/// Longest output a comparison may ask for.
pub const MAX_COMPARE_TOKENS: usize = 1024;

/// `POST /api/compare`'s body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareRequest {
    /// A registered model's name.
    pub model: String,
    /// Column references: `base`, `run:ID`, `adapter:ID`.
    pub columns: Vec<String>,
    /// A typed prompt (a user message)...
    #[serde(default)]
    pub prompt: Option<String>,
    /// ...with an optional system message.
    #[serde(default)]
    pub system: Option<String>,
    /// ...or prompts drawn from a registered dataset's split.
    #[serde(default)]
    pub dataset: Option<String>,
    /// `valid` (default) or `test`.
    #[serde(default)]
    pub split: Option<String>,
    /// How many (the split's first N examples); default 3.
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default)]
    pub settings: GenerationSettings,
}

impl CompareRequest {
    /// The compare form as a request; text fields are parsed and a bad one
    /// is named.
    pub fn from_form(form: NewComparisonForm) -> Result<Self, CompareError> {
        fn field<T: std::str::FromStr>(
            name: &str,
            value: &Option<String>,
            default: T,
        ) -> Result<T, CompareError> {
            match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(text) => text.parse().map_err(|_| {
                    CompareError::invalid(name, format!("{text:?} is not a valid number"))
                }),
            }
        }
        let defaults = GenerationSettings::default();
        let settings = GenerationSettings {
            max_tokens: field("max_tokens", &form.max_tokens, defaults.max_tokens)?,
            temperature: field("temperature", &form.temperature, defaults.temperature)?,
            top_p: field("top_p", &form.top_p, defaults.top_p)?,
            top_k: field("top_k", &form.top_k, defaults.top_k)?,
            repetition_penalty: field(
                "repetition_penalty",
                &form.repetition_penalty,
                defaults.repetition_penalty,
            )?,
            seed: field("seed", &form.seed, defaults.seed)?,
        };
        let from_dataset = form.source.as_deref() == Some("dataset");
        let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        Ok(Self {
            columns: form.columns(),
            prompt: if from_dataset {
                None
            } else {
                nonempty(&form.prompt)
            },
            system: if from_dataset {
                None
            } else {
                nonempty(&form.system)
            },
            dataset: if from_dataset {
                nonempty(&form.dataset)
            } else {
                None
            },
            split: nonempty(&form.split),
            count: Some(field("count", &form.count, 3usize)?),
            model: form.model,
            settings,
        })
    }
}

/// Refuses decoding settings no generation should run with.
pub fn check_settings(settings: &GenerationSettings) -> Result<(), CompareError> {
    let s = settings;
    if s.max_tokens == 0 || s.max_tokens > MAX_COMPARE_TOKENS {
        return Err(CompareError::invalid(
            "max_tokens",
            format!("must be between 1 and {MAX_COMPARE_TOKENS}"),
        ));
    }
    if !s.temperature.is_finite() || s.temperature < 0.0 {
        return Err(CompareError::invalid(
            "temperature",
            "must be 0 (greedy) or positive",
        ));
    }
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        return Err(CompareError::invalid("top_p", "must be in (0, 1]"));
    }
    if !s.repetition_penalty.is_finite() || s.repetition_penalty <= 0.0 {
        return Err(CompareError::invalid(
            "repetition_penalty",
            "must be positive (1 is off)",
        ));
    }
    Ok(())
}

/// Checks and resolves a request into the comparison to save.
pub fn resolve(state: &AppState, request: &CompareRequest) -> Result<NewComparison, CompareError> {
    let model = state
        .store
        .model_by_name(request.model.trim())?
        .ok_or_else(|| {
            CompareError::invalid(
                "model",
                format!(
                    "no model named {:?} (GET /api/models lists them)",
                    request.model
                ),
            )
        })?;
    if request.columns.is_empty() {
        return Err(CompareError::invalid(
            "columns",
            "pick at least one adapter (or `base`)",
        ));
    }
    if request.columns.len() > MAX_COLUMNS {
        return Err(CompareError::invalid(
            "columns",
            format!("at most {MAX_COLUMNS}, got {}", request.columns.len()),
        ));
    }
    let mut columns: Vec<NewColumn> = Vec::new();
    for (i, reference) in request.columns.iter().enumerate() {
        let field = format!("columns[{i}]");
        let resolved = resolve_adapter(state, reference, &model.name, &field)?;
        if columns.iter().any(|c| c.adapter_ref == resolved.reference) {
            return Err(CompareError::invalid(
                field,
                format!("{:?} is already a column", resolved.reference),
            ));
        }
        columns.push(NewColumn {
            label: resolved.label,
            adapter_ref: resolved.reference,
            adapter_path: resolved.path,
            run_id: resolved.run_id,
            adapter_id: resolved.adapter_id,
            val_loss: resolved.val_loss,
            test_loss: resolved.test_loss,
        });
    }
    check_settings(&request.settings)?;
    let settings = request.settings.clone();
    let (prompts, dataset_name, split) = match (&request.prompt, &request.dataset) {
        (Some(_), Some(_)) => {
            return Err(CompareError::invalid(
                "prompt",
                "give a prompt or a dataset, not both",
            ))
        }
        (None, None) => {
            return Err(CompareError::invalid(
                "prompt",
                "required: type a prompt or pick a dataset",
            ))
        }
        (Some(prompt), None) => (
            vec![typed_prompt(prompt, request.system.as_deref())?],
            None,
            None,
        ),
        (None, Some(dataset)) => {
            let record = state
                .store
                .dataset_by_name(dataset.trim())?
                .ok_or_else(|| {
                    CompareError::invalid("dataset", format!("no dataset named {dataset:?}"))
                })?;
            let split = match request.split.as_deref().unwrap_or("valid") {
                "valid" => Split::Valid,
                "test" => Split::Test,
                other => {
                    return Err(CompareError::invalid(
                        "split",
                        format!("{other:?} is not `valid` or `test`"),
                    ))
                }
            };
            let count = request.count.unwrap_or(3);
            if count == 0 || count > MAX_DATASET_PROMPTS {
                return Err(CompareError::invalid(
                    "count",
                    format!("must be between 1 and {MAX_DATASET_PROMPTS}"),
                ));
            }
            let prompts = dataset_prompts(Path::new(&record.directory), split, count)
                .map_err(|message| CompareError::invalid("dataset", message))?;
            (
                prompts,
                Some(record.name),
                Some(split.file_name().trim_end_matches(".jsonl").to_string()),
            )
        }
    };
    Ok(NewComparison {
        model_id: Some(model.id),
        model_name: model.name,
        model_location: model.location,
        dataset_name,
        split,
        settings_json: serde_json::to_string(&settings).map_err(anyhow::Error::from)?,
        columns,
        prompts,
    })
}

fn typed_prompt(prompt: &str, system: Option<&str>) -> Result<NewPrompt, CompareError> {
    let prompt = prompt.trim();
    if prompt.is_empty() {
        return Err(CompareError::invalid("prompt", "is empty"));
    }
    let mut messages = Vec::new();
    if let Some(system) = system.map(str::trim).filter(|s| !s.is_empty()) {
        messages.push(message("system", system));
    }
    messages.push(message("user", prompt));
    Ok(NewPrompt {
        prompt_json: prompt_json(&InferencePrompt::Chat { messages })?,
        display: prompt.to_string(),
        reference: None,
        origin: None,
    })
}

fn message(role: &str, content: &str) -> PromptMessage {
    PromptMessage {
        role: role.to_string(),
        content: content.to_string(),
    }
}

fn prompt_json(prompt: &InferencePrompt) -> Result<String, CompareError> {
    Ok(serde_json::to_string(prompt).map_err(anyhow::Error::from)?)
}

/// The first `count` examples of a dataset split as prompts: a chat up to
/// its last assistant message (the reference answer), or a completion's
/// prompt (its completion is the reference). The split is training's: a
/// one-file dataset's valid and test are held out of it as a run with the
/// default seed and `split_fraction` holds them out (and as Evaluate does).
/// Errors name the file and line.
pub fn dataset_prompts(dir: &Path, split: Split, count: usize) -> Result<Vec<NewPrompt>, String> {
    let name = split.file_name().trim_end_matches(".jsonl");
    let (records, problems) = engine::data::split_records(
        dir,
        &FormatKeys::default(),
        &engine::config::TrainConfig::default(),
        split,
    );
    if records.is_empty() && problems.is_empty() {
        return Err(format!(
            "{} has no {name} examples: pick another split or add {}",
            dir.display(),
            split.file_name()
        ));
    }
    let mut prompts = Vec::new();
    for record in records.iter().take(count) {
        let origin = format!("{}:{}", record.file, record.line);
        let (messages, reference) = match &record.example {
            Example::Chat { messages, .. } => {
                let last_answer = messages.iter().rposition(|m| m.role == Role::Assistant);
                let (context, reference) = match last_answer {
                    Some(i) if i > 0 => (&messages[..i], Some(messages[i].content.clone())),
                    _ => (&messages[..], None),
                };
                let messages: Vec<PromptMessage> = context
                    .iter()
                    .map(|m| message(role_name(m.role), &m.content))
                    .collect();
                (messages, reference)
            }
            Example::Completions {
                prompt, completion, ..
            } => (vec![message("user", prompt)], Some(completion.clone())),
            Example::Text { .. } => {
                return Err(format!(
                    "{origin}: a plain text example has no prompt to answer; use a chat or completions dataset"
                ))
            }
        };
        let display = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .or(messages.last())
            .map(|m| m.content.clone())
            .unwrap_or_default();
        prompts.push(NewPrompt {
            prompt_json: serde_json::to_string(&InferencePrompt::Chat { messages })
                .map_err(|e| e.to_string())?,
            display,
            reference,
            origin: Some(origin),
        });
    }
    if prompts.len() < count {
        if let Some(problem) = problems.first() {
            return Err(problem.to_string());
        }
        if prompts.is_empty() {
            return Err(format!("{} holds no {name} examples", dir.display()));
        }
    }
    Ok(prompts)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}
