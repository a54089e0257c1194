//! The trainer's data order: every epoch visits each batch once in a
//! permutation that depends only on (seed, epoch), so a run's position is
//! just (epoch, index) and resuming replays the same order.

use super::checkpoint::DataPosition;

/// splitmix64: tiny, well mixed, and stable across platforms and versions.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The batch order of `epoch` (Fisher-Yates).
pub fn epoch_order(seed: u64, epoch: usize, batches: usize) -> Vec<usize> {
    let mut state = seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut order: Vec<usize> = (0..batches).collect();
    for i in (1..batches).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Where step `step` (1-based) reads its batch: the epoch, and the index
/// into that epoch's order. A checkpoint after step `s` records step
/// `s + 1`'s, where it goes on.
pub fn data_position(step: usize, batches: usize) -> DataPosition {
    DataPosition {
        epoch: (step - 1) / batches,
        index: (step - 1) % batches,
    }
}

/// The dropout seed of a step: a function of (seed, step) only.
pub fn dropout_seed(seed: u64, step: usize) -> u64 {
    let mut state =
        seed ^ 0xA076_1D64_78BD_642F ^ (step as u64).wrapping_mul(0xE703_7ED1_A0B4_28DB);
    splitmix64(&mut state)
}
