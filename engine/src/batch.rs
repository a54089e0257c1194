//! The unit of work handed from the data pipeline to the trainer. Plain Rust,
//! no MLX, so the server can build and inspect batches too.

/// One padded batch of token sequences.
///
/// Loss follows mlx-lm: the model reads `tokens[:, :-1]` and predicts
/// `tokens[:, 1:]`; for row `r`, target position `t` (1-based, in the shifted
/// sequence) counts when `offsets[r] < t <= lengths[r]`.
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

impl Batch {
    /// Number of target tokens that count in the loss.
    pub fn loss_tokens(&self) -> usize {
        self.offsets
            .iter()
            .zip(&self.lengths)
            .map(|(&offset, &length)| length.saturating_sub(1).saturating_sub(offset))
            .sum()
    }
}
