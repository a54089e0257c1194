//! Models users bring: a GGUF file or a Hugging Face folder on this
//! machine, described from its header or `config.json` (no weights are
//! loaded) and registered under a name. Shared by `POST /api/models` and the
//! models page.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::access::{safe_name, NameError};
use crate::store::{ModelSummary, NewModel, Store};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("a model named {0:?} already exists; choose another name")]
    NameTaken(String),
    #[error("model {0} does not exist")]
    NotFound(i64),
    #[error("model {0:?} is used by a queued or running run; stop it first")]
    InUse(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a model file or folder is, from its metadata: architecture,
/// parameters, quantization and size on disk.
pub fn describe(name: &str, path: &Path, builtin: bool) -> Result<NewModel> {
    let location = path
        .canonicalize()
        .with_context(|| format!("{} does not exist", path.display()))?
        .display()
        .to_string();
    if path.is_dir() {
        let config = engine::models::check_model_folder(path)?;
        let size = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            // Followed links: a Hub snapshot's files link into `blobs/`.
            .filter_map(|entry| std::fs::metadata(entry.ok()?.path()).ok())
            .filter(|metadata| metadata.is_file())
            .map(|metadata| metadata.len())
            .sum();
        return Ok(NewModel {
            name: name.to_string(),
            source: "folder".to_string(),
            location,
            parameters: Some(engine::memory::parameter_count(&config)),
            quantization: config
                .quantization
                .map(|q| format!("{}-bit (group {})", q.bits, q.group_size)),
            architecture: Some(config.model_type),
            size_bytes: Some(size),
            builtin,
        });
    }
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let (config, summary) = engine::gguf::inspect_gguf(path)
        .map_err(|error| anyhow!("{} is not a usable GGUF file: {error}", path.display()))?;
    Ok(NewModel {
        name: name.to_string(),
        source: "gguf".to_string(),
        location,
        architecture: Some(config.model_type),
        parameters: Some(summary.parameter_count),
        // The mix the file names; a file without `general.file_type` by its
        // most common tensor type.
        quantization: summary.file_type.clone().or_else(|| {
            summary
                .tensor_types
                .iter()
                .max_by_key(|(_, count)| **count)
                .map(|(name, _)| name.clone())
        }),
        size_bytes: Some(size),
        builtin,
    })
}

/// Registers the GGUF file or model folder at `path`, under `name` or the
/// file or folder's own name.
pub fn import(store: &Store, name: Option<&str>, path: &str) -> Result<ModelSummary, ModelError> {
    let invalid = |field, message: String| ModelError::Invalid { field, message };
    let path = Path::new(path.trim());
    if path.as_os_str().is_empty() {
        return Err(invalid(
            "path",
            "give the path of a GGUF file or a model folder".into(),
        ));
    }
    if !path.is_absolute() {
        return Err(invalid(
            "path",
            format!("{} is not an absolute path", path.display()),
        ));
    }
    if !path.exists() {
        return Err(invalid(
            "path",
            format!("{} does not exist", path.display()),
        ));
    }
    let default_name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = safe_name(
        name.filter(|name| !name.trim().is_empty())
            .unwrap_or(&default_name),
    )
    .map_err(|error| match error {
        NameError::Empty => invalid("name", "give the model a name".into()),
        other => invalid("name", other.to_string()),
    })?;
    let model =
        describe(&name, path, false).map_err(|error| invalid("path", format!("{error:#}")))?;
    let id = store
        .insert_model(&model)
        .context("cannot register the model")?
        .ok_or_else(|| ModelError::NameTaken(name.clone()))?;
    store
        .model(id)
        .context("cannot read the new model")?
        .ok_or_else(|| anyhow!("model {id} vanished while it was being registered").into())
}

/// Registers a model pulled from the Hub under its spec
/// (`org/name[/file.gguf][@revision]`, which no imported name can be: those
/// have no `/`), described like an imported folder or file, located at its
/// snapshot in the HF cache. Pulling again updates the entry.
pub fn register_pulled(
    store: &Store,
    spec: &crate::hub::HubSpec,
    pulled: &crate::hub::Pulled,
) -> Result<ModelSummary, ModelError> {
    let name = spec.to_string();
    let mut model = describe(&name, &pulled.path, false)
        .with_context(|| format!("{} is not a usable model", pulled.path.display()))?;
    model.source = "hub".into();
    // The snapshot path, not the blob its link resolves to: readable, and
    // what other tools of the cache show.
    model.location = pulled.path.display().to_string();
    if let Some(existing) = store
        .model_by_name(&name)
        .context("cannot read the models")?
    {
        if existing.source != "hub" {
            return Err(ModelError::NameTaken(name));
        }
    }
    let id = store
        .upsert_model(&model)
        .context("cannot register the model")?;
    store
        .model(id)
        .context("cannot read the new model")?
        .ok_or_else(|| anyhow!("model {id} vanished while it was being registered").into())
}

/// Forgets a model (its files stay where they are).
pub fn delete(store: &Store, id: i64) -> Result<(), ModelError> {
    let model = store
        .model(id)
        .context("cannot read the model")?
        .ok_or(ModelError::NotFound(id))?;
    if !store
        .delete_idle_model(id)
        .context("cannot delete the model")?
    {
        return Err(ModelError::InUse(model.name));
    }
    Ok(())
}

/// Bytes as a short figure in binary units (as the pages write them), for
/// console lines and messages.
pub fn format_size(bytes: u64) -> String {
    app::pages::catalog::format_bytes(bytes)
}
