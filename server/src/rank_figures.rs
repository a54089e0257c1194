//! The run page's rows for a run on several ranks: where each rank trains
//! and its own figures from the latest `ranks` event (rank 0 gathers them
//! from every rank after each report, `engine::train::data_parallel`).

use app::dto::RankRow;
use engine::protocol::Event;

use crate::store::StoredEvent;

/// The stored kind of [`Event::Ranks`].
pub const EVENT_KIND: &str = "ranks";

/// One row per rank of a run on `ranks` ranks of this machine (none for a
/// run on one), with the figures of `latest` (a stored `ranks` event).
pub fn rank_rows(ranks: usize, on_gpu: bool, latest: Option<&StoredEvent>) -> Vec<RankRow> {
    if ranks < 2 {
        return Vec::new();
    }
    let figures = match latest.map(|stored| serde_json::from_str::<Event>(&stored.body)) {
        Some(Ok(Event::Ranks { ranks, .. })) => ranks,
        _ => Vec::new(),
    };
    (0..ranks)
        .map(|rank| {
            let own = figures.iter().find(|f| f.rank == rank);
            RankRow {
                rank,
                // Local ranks: one GPU each on CUDA (`CUDA_VISIBLE_DEVICES`
                // = the rank), all sharing the CPU otherwise.
                place: if on_gpu {
                    format!("this machine, GPU {rank}")
                } else {
                    "this machine (CPU)".to_string()
                },
                tokens_per_sec: own.map(|f| f.tokens_per_sec),
                peak_memory_gb: own.map(|f| f.peak_memory_gb),
            }
        })
        .collect()
}
