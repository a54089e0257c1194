//! Datasets as users bring them: uploads staged beside the data dir's
//! datasets and moved into place only once complete, inspection with a
//! model's tokenizer for the dataset page, and deletion.
//!
//! The JSON API (`api::datasets`) and the pages (`pages_backend`) both call
//! in here, so an upload or a delete behaves the same from either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use app::dto::{
    DatasetDetail, DatasetProblem, DatasetQuery, DatasetSummary, ExamplePreview,
    InspectionProgress, PreviewSegment, SplitInfo, SplitTokens,
};
use engine::config::TrainConfig;
use engine::data::{DatasetReport, FormatKeys, Split, SplitSource};
use engine::tokenizer::TokenizerBundle;

use crate::access::{safe_name, NameError};
use crate::inspections::{Inspected, Inspections};
use crate::store::{DatasetRecord, ModelSummary, NewDataset, Store};

/// Examples the dataset page renders.
const PREVIEW_EXAMPLES: usize = 3;

/// Why an upload or a delete was refused; each names what to change.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("a dataset named {0:?} already exists and has no problems; delete it first or choose another name")]
    NameTaken(String),
    #[error("the upload is over the server's limit; split the file or start the server with a larger --max-upload-mb")]
    TooLarge,
    #[error("dataset {0} does not exist")]
    NotFound(i64),
    #[error("dataset {name:?} is used by {runs} queued or running run(s); stop them first")]
    InUse { name: String, runs: i64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl DatasetError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Checks a dataset name with the rules of every name a user gives
/// ([`safe_name`]); the error names the form field.
pub fn check_dataset_name(name: &str) -> Result<String, DatasetError> {
    safe_name(name).map_err(|error| match error {
        NameError::Empty => DatasetError::invalid("name", "give the dataset a name"),
        other => DatasetError::invalid("name", other.to_string()),
    })
}

/// Removes the `.upload-*` folders of uploads a server killed midway left
/// behind. Called when `serve` starts, before it takes uploads, so no live
/// upload owns one; says in the log what it removed.
pub fn remove_unfinished_uploads(datasets_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(datasets_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(".upload-") {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed an unfinished upload's folder")
            }
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot remove an unfinished upload's folder")
            }
        }
    }
}

/// An upload being received: files land in a hidden folder next to the
/// datasets and are removed with it unless [`Staging::commit`] moves them
/// into place.
pub struct Staging {
    dir: tempfile::TempDir,
    splits: Vec<Split>,
}

impl Staging {
    pub fn new(datasets_dir: &Path) -> Result<Self, DatasetError> {
        let dir = tempfile::Builder::new()
            .prefix(".upload-")
            .tempdir_in(datasets_dir)
            .with_context(|| {
                format!(
                    "cannot create an upload folder in {}",
                    datasets_dir.display()
                )
            })?;
        Ok(Self {
            dir,
            splits: Vec::new(),
        })
    }

    /// The split an upload field holds: `file` is the whole dataset (it
    /// becomes `train.jsonl`, and valid/test are held out of it), or one of
    /// `train`, `valid`, `test`. `None` for other fields.
    pub fn split_of_field(field: &str) -> Option<Split> {
        match field {
            "file" | "train" => Some(Split::Train),
            "valid" => Some(Split::Valid),
            "test" => Some(Split::Test),
            _ => None,
        }
    }

    /// Where a split's file goes.
    pub fn path_for(&self, split: Split) -> Result<PathBuf, DatasetError> {
        if self.splits.contains(&split) {
            return Err(DatasetError::invalid(
                "file",
                "give either one file, or train/valid/test files, each once",
            ));
        }
        Ok(self.dir.path().join(split.file_name()))
    }

    /// A file arrived whole (`file_name` as the browser named it). An empty
    /// file is refused by its name: it holds no examples.
    pub fn received(
        &mut self,
        split: Split,
        path: &Path,
        file_name: &str,
        bytes: u64,
    ) -> Result<(), DatasetError> {
        if bytes == 0 {
            std::fs::remove_file(path).ok();
            let field = match split {
                Split::Train => "file",
                Split::Valid => "valid",
                Split::Test => "test",
            };
            return Err(DatasetError::invalid(
                field,
                format!("{file_name} is empty: it has no examples"),
            ));
        }
        self.splits.push(split);
        Ok(())
    }

    /// Checks the files, registers the dataset and moves the files into
    /// `<datasets>/<id>/`. On any error nothing is left behind.
    pub fn commit(
        self,
        store: &Store,
        datasets_dir: &Path,
        name: &str,
    ) -> Result<(DatasetRecord, DatasetReport), DatasetError> {
        if !self.splits.contains(&Split::Train) {
            return Err(DatasetError::invalid(
                "file",
                "choose a JSONL file (or a train.jsonl with optional valid.jsonl and test.jsonl)",
            ));
        }
        let report = engine::data::inspect_dataset(
            self.dir.path(),
            &FormatKeys::default(),
            &TrainConfig::default(),
        );
        let count = |split| report.split(split).examples;
        let mut dataset = NewDataset {
            name: name.to_string(),
            directory: String::new(),
            format: report.format.map(|format| format.to_string()),
            train_count: count(Split::Train),
            valid_count: count(Split::Valid),
            test_count: count(Split::Test),
            problems: report.problems.len(),
            builtin: false,
        };
        let Some(id) = store
            .insert_dataset(&dataset)
            .context("cannot register the dataset")?
        else {
            let record = self.replace_unusable(store, datasets_dir, &mut dataset)?;
            return Ok((record, report));
        };
        let target = datasets_dir.join(id.to_string());
        let placed = move_into_place(self.dir, &target)
            .and_then(|()| Ok(store.set_dataset_directory(id, &target.display().to_string())?));
        if let Err(error) = placed {
            store.delete_dataset(id).ok();
            std::fs::remove_dir_all(&target).ok();
            return Err(error.into());
        }
        let record = store
            .dataset(id)
            .context("cannot read the new dataset")?
            .ok_or_else(|| anyhow!("dataset {id} vanished while it was being registered"))?;
        Ok((record, report))
    }
}

impl Staging {
    /// Replaces the files of the dataset named `dataset.name` when it has
    /// problems: no run, evaluation or comparison can use such a dataset,
    /// so nothing refers to its files, and fixing the file and uploading it
    /// again under its name is what a user does. A usable dataset's name
    /// stays taken.
    ///
    /// The new files go to a folder of their own, the row then points at
    /// them in one update, and only then the old folder goes: a server
    /// killed at any point leaves the dataset whole, old or new.
    fn replace_unusable(
        self,
        store: &Store,
        datasets_dir: &Path,
        dataset: &mut NewDataset,
    ) -> Result<DatasetRecord, DatasetError> {
        let taken = || DatasetError::NameTaken(dataset.name.clone());
        let existing = store
            .dataset_by_name(&dataset.name)
            .context("cannot read the dataset")?
            .ok_or_else(taken)?;
        if existing.problems == 0 || existing.builtin {
            return Err(taken());
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis())
            .unwrap_or_default();
        let target = datasets_dir.join(format!("{}-{stamp}", existing.id));
        move_into_place(self.dir, &target)?;
        dataset.directory = target.display().to_string();
        let replaced = store
            .replace_unusable_dataset(existing.id, dataset)
            .context("cannot register the new files");
        if !matches!(replaced, Ok(true)) {
            std::fs::remove_dir_all(&target).ok();
            return Err(replaced.err().map(DatasetError::from).unwrap_or_else(taken));
        }
        if let Err(error) = store.forget_inspections(&existing.directory) {
            tracing::warn!(%error, "cannot forget a replaced dataset's inspections");
        }
        let old = PathBuf::from(&existing.directory);
        // Only folders Loralab made are removed, as on delete.
        if old.parent() == Some(datasets_dir) && old.is_dir() {
            if let Err(error) = std::fs::remove_dir_all(&old) {
                tracing::warn!(%error, path = %old.display(), "cannot remove a replaced dataset's files");
            }
        }
        Ok(store
            .dataset(existing.id)
            .context("cannot read the replaced dataset")?
            .ok_or_else(|| anyhow!("dataset {} vanished while it was replaced", existing.id))?)
    }
}

fn move_into_place(staging: tempfile::TempDir, target: &Path) -> Result<()> {
    // A folder left by a dataset deleted by hand must not mix with the new files.
    if target.exists() {
        std::fs::remove_dir_all(target)
            .with_context(|| format!("cannot clear {}", target.display()))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, target).with_context(|| {
        std::fs::remove_dir_all(&staged).ok();
        format!("cannot move the upload to {}", target.display())
    })
}

/// Forgets a dataset and removes its files, unless a run still needs them.
pub fn delete_dataset(store: &Store, datasets_dir: &Path, id: i64) -> Result<(), DatasetError> {
    let dataset = store
        .dataset(id)
        .context("cannot read the dataset")?
        .ok_or(DatasetError::NotFound(id))?;
    let runs = store
        .active_runs_of_dataset(id)
        .context("cannot read the dataset's runs")?;
    if runs > 0 {
        return Err(DatasetError::InUse {
            name: dataset.name,
            runs,
        });
    }
    store
        .delete_dataset(id)
        .context("cannot delete the dataset")?;
    store
        .forget_inspections(&dataset.directory)
        .context("cannot forget the dataset's inspections")?;
    // Only folders Loralab made are removed; a dataset registered from
    // elsewhere keeps its files.
    let directory = PathBuf::from(&dataset.directory);
    if directory.parent() == Some(datasets_dir) && directory.is_dir() {
        std::fs::remove_dir_all(&directory)
            .with_context(|| format!("cannot remove {}", directory.display()))?;
    }
    Ok(())
}

/// Tokenizers of registered models, loaded once: reading a GGUF's
/// vocabulary takes a noticeable part of a second.
#[derive(Default)]
pub struct TokenizerCache {
    loaded: Mutex<HashMap<String, Arc<TokenizerBundle>>>,
}

impl TokenizerCache {
    pub fn get(&self, model: &ModelSummary) -> Result<Arc<TokenizerBundle>> {
        if let Some(tokenizer) = self.lock().get(&model.location) {
            return Ok(tokenizer.clone());
        }
        let path = Path::new(&model.location);
        let tokenizer = if path.is_dir() {
            TokenizerBundle::from_hf_folder(path)?
        } else {
            TokenizerBundle::from_gguf_path(path)
                .map_err(|error| anyhow!("model {}: {error}", model.name))?
        };
        let tokenizer = Arc::new(tokenizer);
        self.lock()
            .insert(model.location.clone(), tokenizer.clone());
        Ok(tokenizer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TokenizerBundle>>> {
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn summary(dataset: DatasetRecord) -> DatasetSummary {
    DatasetSummary {
        id: dataset.id,
        name: dataset.name,
        format: dataset.format,
        train_count: dataset.train_count.max(0) as u64,
        valid_count: dataset.valid_count.max(0) as u64,
        test_count: dataset.test_count.max(0) as u64,
        problems: dataset.problems.max(0) as u64,
        builtin: dataset.builtin,
    }
}

/// The dataset page's content: files, splits, every problem and, with a
/// model, token figures and rendered examples. `None` when there is no such
/// dataset. With `patience`, a tokenization that takes longer answers how
/// far it is (`inspecting`) and goes on; without, this waits for it.
pub fn inspect(
    store: &Store,
    inspections: &Inspections,
    tokenizers: &TokenizerCache,
    id: i64,
    query: DatasetQuery,
    patience: Option<Duration>,
) -> Result<Option<DatasetDetail>, DatasetError> {
    let Some(dataset) = store.dataset(id).context("cannot read the dataset")? else {
        return Ok(None);
    };
    let models = store.list_models().context("cannot read the models")?;
    let model =
        match &query.model {
            Some(name) => Some(models.iter().find(|model| &model.name == name).ok_or_else(
                || DatasetError::invalid("model", format!("no model named {name:?}")),
            )?),
            None => models.first(),
        };
    let defaults = TrainConfig::default();
    let cfg = TrainConfig {
        max_seq_length: query.max_seq_length.unwrap_or(defaults.max_seq_length),
        mask_prompt: query.mask_prompt.unwrap_or(true),
        split_fraction: query.split_fraction.unwrap_or(defaults.split_fraction),
        seed: query.seed.unwrap_or(defaults.seed),
        ..defaults
    };
    let directory = Path::new(&dataset.directory);
    let query = DatasetQuery {
        model: model.map(|model| model.name.clone()),
        max_seq_length: Some(cfg.max_seq_length),
        mask_prompt: Some(cfg.mask_prompt),
        split_fraction: Some(cfg.split_fraction),
        seed: Some(cfg.seed),
    };
    let files = Split::ALL
        .iter()
        .filter_map(|split| {
            let path = directory.join(split.file_name());
            let bytes = std::fs::metadata(&path).ok()?.len();
            Some((split.file_name().to_string(), bytes))
        })
        .collect();
    let (report, previews) = match model {
        Some(model) => {
            let inspected = match patience {
                Some(patience) => inspections.inspect_or_progress(
                    tokenizers,
                    model,
                    directory,
                    &cfg,
                    PREVIEW_EXAMPLES,
                    patience,
                )?,
                None => Inspected::Ready(inspections.inspect(
                    tokenizers,
                    model,
                    directory,
                    &cfg,
                    PREVIEW_EXAMPLES,
                )?),
            };
            match inspected {
                Inspected::Ready(inspection) => (inspection.report, inspection.previews),
                Inspected::Running(progress) => {
                    return Ok(Some(DatasetDetail {
                        summary: summary(dataset),
                        files,
                        format: None,
                        splits: Vec::new(),
                        problems: Vec::new(),
                        previews: Vec::new(),
                        query,
                        inspecting: Some(InspectionProgress {
                            encoded: progress.encoded as u64,
                            total: progress.total as u64,
                        }),
                    }))
                }
            }
        }
        None => (
            engine::data::inspect_dataset(directory, &FormatKeys::default(), &cfg),
            Vec::new(),
        ),
    };
    Ok(Some(DatasetDetail {
        summary: summary(dataset),
        files,
        format: report.format.map(|format| format.to_string()),
        splits: report.splits.iter().map(split_info).collect(),
        problems: report
            .problems
            .into_iter()
            .map(|problem| DatasetProblem {
                file: problem.file,
                line: problem.line,
                field: problem.field,
                message: problem.message,
            })
            .collect(),
        previews: previews
            .into_iter()
            .map(|preview| ExamplePreview {
                file: preview.file,
                line: preview.line,
                segments: preview
                    .segments
                    .into_iter()
                    .map(|segment| PreviewSegment {
                        kind: serde_json::to_value(segment.kind)
                            .ok()
                            .and_then(|kind| kind.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        text: segment.text,
                        tokens: segment.tokens as u64,
                    })
                    .collect(),
            })
            .collect(),
        query,
        inspecting: None,
    }))
}

fn split_info(split: &engine::data::SplitReport) -> SplitInfo {
    let name = |split: Split| split.file_name().trim_end_matches(".jsonl").to_string();
    SplitInfo {
        split: name(split.split),
        source: match &split.source {
            SplitSource::File { name } => name.clone(),
            SplitSource::HeldOut { from } => format!("held out of {from}"),
            SplitSource::Missing => "none".to_string(),
        },
        examples: split.examples as u64,
        tokens: split.tokens.as_ref().map(|tokens| {
            let histogram = tokens
                .histogram
                .clone()
                .unwrap_or(engine::data::LengthHistogram {
                    bucket_width: 0,
                    counts: Vec::new(),
                });
            SplitTokens {
                tokens: tokens.tokens as u64,
                trained_tokens: tokens.trained_tokens as u64,
                min_length: tokens.min_length as u64,
                max_length: tokens.max_length as u64,
                truncated_examples: tokens.truncated_examples as u64,
                truncated_tokens: tokens.truncated_tokens as u64,
                untrainable_examples: tokens.untrainable_examples as u64,
                histogram_bucket_width: histogram.bucket_width as u64,
                histogram: histogram.counts.into_iter().map(|c| c as u64).collect(),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names_follow_the_shared_rules_and_name_the_field() {
        assert_eq!(
            check_dataset_name("  my data_v2.1 ").unwrap(),
            "my data_v2.1"
        );
        for (bad, why) in [
            ("", "name: give the dataset a name"),
            ("../etc", "name: name contains '/'"),
            (".hidden", "name: name starts with '.'"),
            ("a\nb", "name: name contains the control character U+000A"),
        ] {
            let message = check_dataset_name(bad).unwrap_err().to_string();
            assert!(message.starts_with(why), "{bad:?}: {message}");
        }
    }
}
