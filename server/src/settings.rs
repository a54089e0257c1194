//! Where Loralab keeps its data and how it listens.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use crate::access::{AccessSettings, BodyLimits, DEFAULT_BODY_LIMIT};

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
    /// Address to listen on [default: 127.0.0.1, which keeps Loralab private
    /// to this machine; 0.0.0.0 with --lan]. Any address but loopback turns
    /// on LAN mode (see --lan).
    #[arg(long, env = "LORALAB_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "LORALAB_PORT", default_value_t = 8080)]
    pub port: u16,
    /// A model file to register as the built-in default (the SmolLM2 GGUF
    /// that `make run` installs).
    #[arg(long, env = "LORALAB_DEFAULT_MODEL")]
    pub default_model: Option<PathBuf>,
    /// Share with teammates on the network: listen on every interface
    /// (unless --host names one), print the LAN URLs and the owner link.
    /// Only holders of the owner (or operator) token may change anything.
    #[arg(long, env = "LORALAB_LAN")]
    pub lan: bool,
    /// With --lan: viewers must enter this password before they can watch.
    /// Prefer the environment variable: a flag shows in `ps`.
    #[arg(long, env = "LORALAB_VIEWER_PASSWORD", hide_env_values = true)]
    pub viewer_password: Option<String>,
    /// Live event streams one client address may hold open at once.
    #[arg(long, env = "LORALAB_MAX_STREAMS_PER_CLIENT", default_value_t = 8)]
    pub max_streams_per_client: usize,
    /// Largest upload (POST /api/datasets, routes under /api/uploads/), in
    /// MiB. Every other request body is limited to 1 MiB.
    #[arg(long, env = "LORALAB_MAX_UPLOAD_MB", default_value_t = 4096)]
    pub max_upload_mb: u64,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            host: None,
            port: 8080,
            default_model: None,
            lan: false,
            viewer_password: None,
            max_streams_per_client: 8,
            max_upload_mb: 4096,
        }
    }
}

impl ServeArgs {
    pub fn address(&self) -> SocketAddr {
        let host = self.host.unwrap_or(if self.lan {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        });
        SocketAddr::new(host, self.port)
    }

    /// Reachable from other machines (or shared through a proxy, with
    /// `--lan --host 127.0.0.1`): roles come from tokens, not from the
    /// address a request arrives from.
    pub fn lan_mode(&self) -> bool {
        self.lan || !self.address().ip().is_loopback()
    }

    pub fn access(&self) -> AccessSettings {
        AccessSettings {
            lan: self.lan_mode(),
            viewer_password: self.viewer_password.clone().filter(|p| !p.is_empty()),
            max_streams_per_client: self.max_streams_per_client.max(1),
            limits: BodyLimits {
                default: DEFAULT_BODY_LIMIT,
                upload: self.max_upload_mb.saturating_mul(1024 * 1024),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_by_default_lan_on_request() {
        let local = ServeArgs::default();
        assert_eq!(local.address().to_string(), "127.0.0.1:8080");
        assert!(!local.lan_mode());
        let lan = ServeArgs {
            lan: true,
            ..ServeArgs::default()
        };
        assert_eq!(lan.address().to_string(), "0.0.0.0:8080");
        assert!(lan.lan_mode());
        let host = ServeArgs {
            host: Some("10.1.2.3".parse().unwrap()),
            ..ServeArgs::default()
        };
        assert_eq!(host.address().to_string(), "10.1.2.3:8080");
        assert!(host.lan_mode(), "a non-loopback --host must require tokens");
        let proxied = ServeArgs {
            lan: true,
            host: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ..ServeArgs::default()
        };
        assert_eq!(proxied.address().to_string(), "127.0.0.1:8080");
        assert!(proxied.lan_mode());
    }
}
