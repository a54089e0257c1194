//! The MLX training service. MLX work runs only inside worker processes
//! (`loralab worker`); the server uses the MLX-free parts (configs, the worker
//! protocol, dataset validation) and never calls MLX on its own threads.

pub mod batch;
pub mod blas;
pub mod chat_template;
pub use loralab_types::config;
pub mod data;
pub mod device;
pub mod distributed;
pub mod export;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod generate;
pub mod gguf;
pub use loralab_types::guard_config;
pub mod inference;
pub mod lora;
pub mod memory;
pub mod model_config;
pub mod models;
pub mod protocol;
pub mod tokenizer;
pub mod train;
