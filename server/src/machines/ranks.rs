//! The workers of a run on a machine set, as the supervisor starts them:
//! the set checked again against the run, its dataset copied to every
//! host (`copy`), then one `loralab worker` per host in the hostfile's
//! order (rank 0 first), over ssh for other machines, on the hostfile's
//! backend (`ring` unless it names another).

use std::path::Path;

use engine::config::TrainConfig;

use super::copy::{copy_to_hosts, under};
use crate::store::Store;

/// The ranks' commands, rank 0 first; a reason naming the set, the host or
/// the file when something is not ready.
pub fn worker_commands(
    store: &Store,
    config: &TrainConfig,
    set: &str,
    data_dir: &Path,
    program: &Path,
    run_dir: &Path,
) -> Result<Vec<std::process::Command>, String> {
    let hostfile = super::ready_for(store, set, config.batch_size).map_err(|e| e.to_string())?;
    let backend = hostfile.backend.clone().unwrap_or_else(|| "ring".into());
    engine::distributed::check_backend(&backend).map_err(|e| format!("{e:#}"))?;
    // The run's dataset, at the same place under each host's data dir
    // (hosts keep it at this server's path, as they keep Loralab's).
    let dataset = Path::new(&config.data);
    let files = dataset_files(dataset)?;
    copy_to_hosts(&hostfile.hosts, &under(&files, data_dir, data_dir))
        .map_err(|e| e.to_string())?;
    crate::launch::hostfile_worker_commands(&hostfile, &backend, program, run_dir)
        .map_err(|e| format!("cannot set up the ranks of `{set}`: {e:#}"))
}

/// The dataset's files: a folder's JSONL files, or the one file.
fn dataset_files(dataset: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    if dataset.is_file() {
        return Ok(vec![dataset.to_path_buf()]);
    }
    let entries = std::fs::read_dir(dataset)
        .map_err(|e| format!("cannot read the dataset {}: {e}", dataset.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}
