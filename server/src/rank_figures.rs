//! The run page's rows for a run on several ranks: where each rank trains
//! and its own figures from the latest `ranks` event (rank 0 gathers them
//! from every rank after each report, `engine::train::data_parallel`).

use app::dto::RankRow;
use engine::protocol::Event;

use engine::config::TrainConfig;

use crate::launch::Hostfile;
use crate::store::{Store, StoredEvent};

/// The stored kind of [`Event::Ranks`].
pub const EVENT_KIND: &str = "ranks";

/// Where each rank of a run trains: its machine set's hosts (by `ssh`
/// name, rank 0 first), else `gpus` ranks of this machine: one GPU each on
/// CUDA (`CUDA_VISIBLE_DEVICES` = the rank), all sharing the CPU otherwise.
pub fn places(store: &Store, config: &TrainConfig, on_gpu: bool) -> Vec<String> {
    if let Some(set) = &config.machine_set {
        let hosts = store
            .machine_set_by_name(set)
            .ok()
            .flatten()
            .and_then(|record| Hostfile::parse(&record.hostfile).ok());
        if let Some(hostfile) = hosts {
            return hostfile.hosts.into_iter().map(|host| host.ssh).collect();
        }
        return vec![format!("machine set `{set}` (deleted)")];
    }
    (0..config.gpus.max(1))
        .map(|rank| {
            if on_gpu {
                format!("this machine, GPU {rank}")
            } else {
                "this machine (CPU)".to_string()
            }
        })
        .collect()
}

/// One row per rank at `places` (none for a run on one), with the figures
/// of `latest` (a stored `ranks` event).
pub fn rank_rows(places: Vec<String>, latest: Option<&StoredEvent>) -> Vec<RankRow> {
    if places.len() < 2 {
        return Vec::new();
    }
    let figures = match latest.map(|stored| serde_json::from_str::<Event>(&stored.body)) {
        Some(Ok(Event::Ranks { ranks, .. })) => ranks,
        _ => Vec::new(),
    };
    places
        .into_iter()
        .enumerate()
        .map(|(rank, place)| {
            let own = figures.iter().find(|f| f.rank == rank);
            RankRow {
                rank,
                place,
                tokens_per_sec: own.map(|f| f.tokens_per_sec),
                peak_memory_gb: own.map(|f| f.peak_memory_gb),
            }
        })
        .collect()
}
