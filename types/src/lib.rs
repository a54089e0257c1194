//! The types the pages (`app`, which cannot link MLX), the server and the
//! engine share: a run's training config with its one `validate()`, the
//! learning-rate schedules it names, the thermal guard's settings, and the
//! decoding settings of a generation.
//! Serde and plain Rust only, so every crate can depend on it.

pub mod config;
pub mod generation;
pub mod guard_config;
pub mod schedule;
