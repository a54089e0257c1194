//! GGUF files (llama.cpp's format): our own reader and writer, ggml's
//! quantizers and dequantizers, conversion of tensors to MLX arrays, and a
//! model (config, HF-named weights, tokenizer) built from one file.

pub mod config;
pub mod dequant;
pub mod error;
pub mod ggml_type;
pub mod model;
pub mod names;
pub mod quantize;
pub mod reader;
mod sentencepiece;
pub mod to_mlx;
pub mod tokenizer;
pub mod value;
pub mod writer;

pub use error::GgufError;
pub use ggml_type::GgmlType;
pub use model::{inspect_gguf, load_gguf_model, GgufModel, GgufSummary};
pub use reader::{GgufFile, TensorInfo};
pub use to_mlx::{mlx_quantization, tensor_to_mlx, MlxTensor};
pub use value::{MetadataValue, ValueType};
pub use writer::{GgufWriter, TensorSpec};
