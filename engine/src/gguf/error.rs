//! Errors of the GGUF reader. Every message starts with the file's path and
//! names the offset, metadata key or tensor it is about, so a user can tell
//! which file is broken and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    // The bytes found are not shown: the file may be anything (a key, a
    // password file) and the message goes to a browser.
    #[error("{}: not a GGUF file: it does not start with the bytes \"GGUF\"", path.display())]
    BadMagic { path: PathBuf },
    #[error("{}: GGUF version {version} at offset 4 is not supported (this reader reads versions 2 and 3)", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{}: file is truncated: {what} at offset {offset} needs {needed} bytes, the file has {file_len}", path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },
    #[error("{}: {what} at offset {offset}: unknown metadata value type {code}", path.display())]
    UnknownValueType {
        path: PathBuf,
        what: String,
        offset: u64,
        code: u32,
    },
    #[error("{}: tensor `{tensor}`: unknown ggml type {code}", path.display())]
    UnknownTensorType {
        path: PathBuf,
        tensor: String,
        code: u32,
    },
    #[error("{}: tensor `{tensor}`: {message}", path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    #[error("{}: metadata `{key}`: {message}", path.display())]
    Metadata {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: MLX: {source}", path.display())]
    Mlx {
        path: PathBuf,
        source: mlx_rs::error::Exception,
    },
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;
