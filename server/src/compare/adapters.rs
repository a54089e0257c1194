//! What a comparison column or a chat can use: the bare base, a run's
//! adapter, or an adapter imported from an mlx-lm folder.

use std::path::{Path, PathBuf};

use app::compare_dto::AdapterChoice;
use engine::lora::{read_adapter_settings, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};

use super::error::CompareError;
use crate::state::AppState;
use crate::store::NewAdapter;

/// A column reference, checked and resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedAdapter {
    pub reference: String,
    pub label: String,
    /// The folder the worker loads; `None` for the bare base.
    pub path: Option<String>,
    pub run_id: Option<i64>,
    pub adapter_id: Option<i64>,
    pub val_loss: Option<f64>,
    pub test_loss: Option<f64>,
}

/// Resolves `base`, `run:ID` or `adapter:ID` for use on the model named
/// `model`; `field` names the request field in errors.
pub fn resolve_adapter(
    state: &AppState,
    reference: &str,
    model: &str,
    field: &str,
) -> Result<ResolvedAdapter, CompareError> {
    let reference = reference.trim();
    let bad = |message: String| CompareError::invalid(field, message);
    if reference == "base" {
        return Ok(ResolvedAdapter {
            reference: "base".into(),
            label: "base (no adapter)".into(),
            path: None,
            run_id: None,
            adapter_id: None,
            val_loss: None,
            test_loss: None,
        });
    }
    let parse_id = |text: &str| {
        text.parse::<i64>()
            .map_err(|_| bad(format!("{reference:?}: {text:?} is not an id")))
    };
    if let Some(id) = reference.strip_prefix("run:") {
        let id = parse_id(id)?;
        let run = state
            .store
            .run(id)?
            .ok_or_else(|| bad(format!("run {id} does not exist")))?;
        if run.model.as_deref() != Some(model) {
            return Err(bad(format!(
                "run {id} was trained on {:?}, not {model:?}",
                run.model.unwrap_or_else(|| "(deleted model)".into())
            )));
        }
        let dir = state.supervisor.run_dir(id);
        check_adapter_folder(&dir).map_err(|message| {
            bad(format!(
                "run {id} ({}) has no adapter yet: {message}",
                run.name
            ))
        })?;
        let (val_loss, test_loss) = state.store.run_losses(id)?;
        return Ok(ResolvedAdapter {
            reference: format!("run:{id}"),
            label: format!("{} (run {id})", run.name),
            path: Some(dir.display().to_string()),
            run_id: Some(id),
            adapter_id: None,
            val_loss,
            test_loss,
        });
    }
    if let Some(id) = reference.strip_prefix("adapter:") {
        let id = parse_id(id)?;
        let adapter = state
            .store
            .adapter(id)?
            .ok_or_else(|| bad(format!("imported adapter {id} does not exist")))?;
        if let Some(trained_on) = adapter.model.as_deref().filter(|m| *m != model) {
            return Err(bad(format!(
                "adapter {:?} was trained on {trained_on:?}, not {model:?}",
                adapter.name
            )));
        }
        return Ok(ResolvedAdapter {
            reference: format!("adapter:{id}"),
            label: format!("{} (imported)", adapter.name),
            path: Some(adapter.directory),
            run_id: None,
            adapter_id: Some(id),
            val_loss: None,
            test_loss: None,
        });
    }
    Err(bad(format!(
        "{reference:?} is not `base`, `run:ID` or `adapter:ID`"
    )))
}

/// Everything a column can show: the base, runs with an adapter on disk,
/// imported adapters.
pub fn adapter_choices(state: &AppState) -> Result<Vec<AdapterChoice>, CompareError> {
    let mut choices = vec![AdapterChoice {
        reference: "base".into(),
        label: "base (no adapter)".into(),
        model: None,
    }];
    for run in state.store.list_runs()? {
        if check_adapter_folder(&state.supervisor.run_dir(run.id)).is_ok() {
            choices.push(AdapterChoice {
                reference: format!("run:{}", run.id),
                label: format!("{} (run {}, {})", run.name, run.id, run.status),
                model: Some(run.model),
            });
        }
    }
    for adapter in state.store.list_adapters()? {
        choices.push(AdapterChoice {
            reference: format!("adapter:{}", adapter.id),
            label: format!("{} (imported)", adapter.name),
            model: adapter.model,
        });
    }
    Ok(choices)
}

/// Both files of an mlx-lm adapter folder, with a readable config.
fn check_adapter_folder(dir: &Path) -> Result<(i64, i64), String> {
    let weights = dir.join(ADAPTER_WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(format!("{} is missing", weights.display()));
    }
    let settings = read_adapter_settings(dir).map_err(|e| format!("{e:#}"))?;
    Ok((settings.rank as i64, settings.num_layers))
}

/// The tensor names in a safetensors file's header (no MLX needed).
fn safetensors_names(path: &Path) -> Result<Vec<String>, String> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut size = [0u8; 8];
    file.read_exact(&mut size)
        .map_err(|_| format!("{}: not a safetensors file (too short)", path.display()))?;
    let size = u64::from_le_bytes(size);
    if size > 100 << 20 {
        return Err(format!(
            "{}: not a safetensors file (header of {size} bytes)",
            path.display()
        ));
    }
    let mut header = vec![0u8; size as usize];
    file.read_exact(&mut header)
        .map_err(|_| format!("{}: the header is cut short", path.display()))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| format!("{}: the header is not JSON: {e}", path.display()))?;
    Ok(header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect())
}

/// Copies an mlx-lm adapter folder (on the server's disk) into the data
/// dir and registers it. Errors name the field or the file.
pub fn import_adapter(
    state: &AppState,
    name: &str,
    path: &str,
    model: Option<&str>,
) -> Result<i64, CompareError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(CompareError::invalid(
            "name",
            "required, at most 100 characters",
        ));
    }
    if state.store.adapter_by_name(name)?.is_some() {
        return Err(CompareError::invalid(
            "name",
            format!("an adapter named {name:?} already exists"),
        ));
    }
    let model_id = match model.map(str::trim).filter(|m| !m.is_empty()) {
        None => None,
        Some(model) => Some(
            state
                .store
                .model_by_name(model)?
                .ok_or_else(|| CompareError::invalid("model", format!("no model named {model:?}")))?
                .id,
        ),
    };
    let source = PathBuf::from(path.trim());
    if !source.is_dir() {
        return Err(CompareError::invalid(
            "path",
            format!(
                "{} is not a folder (expected {ADAPTER_CONFIG_FILE} and {ADAPTER_WEIGHTS_FILE})",
                source.display()
            ),
        ));
    }
    let (rank, num_layers) =
        check_adapter_folder(&source).map_err(|message| CompareError::invalid("path", message))?;
    let weights = source.join(ADAPTER_WEIGHTS_FILE);
    let names = safetensors_names(&weights).map_err(|m| CompareError::invalid("path", m))?;
    if names.is_empty() {
        return Err(CompareError::invalid(
            "path",
            format!("{}: holds no tensors", weights.display()),
        ));
    }
    if let Some(odd) = names
        .iter()
        .find(|n| !(n.ends_with(".lora_a") || n.ends_with(".lora_b")))
    {
        return Err(CompareError::invalid(
            "path",
            format!(
                "{}: tensor {odd:?} is not a LoRA matrix (names end in .lora_a or .lora_b)",
                weights.display()
            ),
        ));
    }
    let id = state.store.insert_adapter(&NewAdapter {
        name: name.to_string(),
        directory: String::new(),
        model_id,
        rank,
        num_layers,
        source: source.display().to_string(),
    })?;
    let target = state.data_dir.root.join("adapters").join(id.to_string());
    let copied = std::fs::create_dir_all(&target).and_then(|()| {
        for file in [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE] {
            std::fs::copy(source.join(file), target.join(file))?;
        }
        Ok(())
    });
    if let Err(error) = copied {
        let _ = state.store.delete_adapter(id);
        return Err(CompareError::Internal(anyhow::anyhow!(
            "cannot copy the adapter into {}: {error}",
            target.display()
        )));
    }
    state
        .store
        .set_adapter_directory(id, &target.display().to_string())?;
    Ok(id)
}
