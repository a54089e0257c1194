//! Loralab's server process: the CLI, the HTTP server (pages, JSON API, SSE),
//! the SQLite store and the supervisor of worker processes. Nothing here calls
//! MLX: training and inference run in `loralab worker` child processes.

pub mod access;
pub mod api;
mod archive;
pub mod chat;
mod child;
pub mod cli;
pub mod compare;
pub mod datasets;
pub mod estimate;
pub mod evaluations;
pub mod export_cli;
pub mod exports;
pub mod failure;
pub mod http;
pub mod hub;
pub mod inference;
pub mod inspections;
pub mod launch;
pub mod machines;
pub mod models;
mod pages_backend;
pub mod rank_figures;
pub mod run_comparison;
pub mod settings;
pub mod setup;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod system;
pub mod train_cli;
pub mod worker;
