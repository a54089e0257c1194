//! Dataset inspections with a model's tokenizer, computed once: tokenizing
//! every example takes seconds for a large dataset, and the dataset page,
//! the memory estimate of every run creation and the form's Check all ask
//! for the same figures. An inspection is stored (SQLite) under the dataset
//! folder and what the figures depend on, with the files' sizes and times:
//! an upload that replaces the files, or an edit by hand, makes it stale.

use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use engine::config::TrainConfig;
use engine::data::{FormatKeys, Inspection, Split};
use serde_json::json;

use crate::datasets::TokenizerCache;
use crate::store::{ModelSummary, Store};

/// `dir_or_file` inspected with `model`'s tokenizer and the settings of
/// `cfg` that change the figures, with previews of the first
/// `preview_limit` training examples: from the store when it holds one for
/// these files, else computed (blocking: call it off the async runtime)
/// and stored.
pub fn inspect(
    store: &Store,
    tokenizers: &TokenizerCache,
    model: &ModelSummary,
    dir_or_file: &Path,
    cfg: &TrainConfig,
    preview_limit: usize,
) -> anyhow::Result<Inspection> {
    let directory = dir_or_file.display().to_string();
    let settings = settings_key(model, cfg, preview_limit);
    let files = files_signature(dir_or_file);
    if let Some(json) = store.inspection(&directory, &settings, &files)? {
        if let Ok(inspection) = serde_json::from_str(&json) {
            return Ok(inspection);
        }
        // Written by another version: computed again below.
    }
    let tokenizer = tokenizers.get(model)?;
    let inspection = engine::data::inspect_with_tokenizer(
        dir_or_file,
        &FormatKeys::default(),
        &tokenizer,
        cfg,
        Split::Train,
        preview_limit,
    );
    let json = serde_json::to_string(&inspection).context("cannot store the inspection")?;
    // The files may have changed while they were read: such figures are
    // not stored under the new files' signature.
    if files_signature(dir_or_file) == files {
        store.save_inspection(&directory, &settings, &files, &json)?;
    }
    Ok(inspection)
}

/// What an inspection's figures depend on besides the files: the
/// tokenizer (and chat template) of the model, as its file is now, and the
/// settings `engine::data` reads.
fn settings_key(model: &ModelSummary, cfg: &TrainConfig, preview_limit: usize) -> String {
    json!({
        "tokenizer": model.location,
        "tokenizer_file": signature_of(Path::new(&model.location)),
        "max_seq_length": cfg.max_seq_length,
        "mask_prompt": cfg.mask_prompt,
        "split_fraction": cfg.split_fraction,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "previews": preview_limit,
    })
    .to_string()
}

/// Sizes and modification times of the dataset's files.
fn files_signature(dir_or_file: &Path) -> String {
    if dir_or_file.is_dir() {
        Split::ALL
            .iter()
            .map(|split| {
                let name = split.file_name();
                format!("{name}:{}", signature_of(&dir_or_file.join(name)))
            })
            .collect::<Vec<_>>()
            .join(";")
    } else {
        signature_of(dir_or_file)
    }
}

/// `size:mtime_ns` of a file, or of a folder's `tokenizer.json` and
/// `tokenizer_config.json` (a model folder); `-` when missing.
fn signature_of(path: &Path) -> String {
    let one = |path: &Path| match std::fs::metadata(path) {
        Ok(meta) => {
            let modified = meta
                .modified()
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |elapsed| elapsed.as_nanos());
            format!("{}:{modified}", meta.len())
        }
        Err(_) => "-".to_string(),
    };
    if path.is_dir() {
        ["tokenizer.json", "tokenizer_config.json"]
            .iter()
            .map(|name| one(&path.join(name)))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        one(path)
    }
}
