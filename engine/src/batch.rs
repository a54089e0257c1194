//! The unit of work handed from the data pipeline to the trainer. Plain Rust,
//! no MLX, so the server can build and inspect batches too.

/// One padded batch of token sequences.
///
/// Loss follows mlx-lm: the model reads `tokens[:, :-1]` and predicts
/// `tokens[:, 1:]`; for row `r`, the target `tokens[r, t]` counts when
/// `offsets[r] <= t <= lengths[r]` (see `train::loss`: like mlx-lm, this also
/// counts the first padding position of a row shorter than the batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Row-major `[rows, width]` token ids; padding is 0.
    pub tokens: Vec<u32>,
    pub rows: usize,
    pub width: usize,
    /// Per row: how many leading tokens are prompt (no loss); 0 without `mask_prompt`.
    pub offsets: Vec<usize>,
    /// Per row: the number of real (unpadded) tokens.
    pub lengths: Vec<usize>,
}
