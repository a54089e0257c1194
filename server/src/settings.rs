//! Where Loralab keeps its data and how it listens.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

/// Options shared by every command that touches the data dir.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Where the database, datasets and runs live
    /// [default: $XDG_DATA_HOME/loralab, else ~/.local/share/loralab].
    #[arg(long, env = "LORALAB_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    pub fn resolve(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
            })
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("loralab")
    }
}

/// `loralab serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. 127.0.0.1 keeps Loralab private to this machine.
    #[arg(long, env = "LORALAB_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "LORALAB_PORT", default_value_t = 8080)]
    pub port: u16,
    /// A model file to register as the built-in default (the SmolLM2 GGUF
    /// that `make run` installs).
    #[arg(long, env = "LORALAB_DEFAULT_MODEL")]
    pub default_model: Option<PathBuf>,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            default_model: None,
        }
    }
}

impl ServeArgs {
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}
