//! Helpers shared by the integration tests: the real `loralab` binary on
//! port 0 with a fresh data dir.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running `loralab serve`, killed when dropped.
pub struct Server {
    pub base_url: String,
    pub data_dir: PathBuf,
    child: Child,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the server on a free port with a new, empty data dir.
    pub fn start(extra_args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::start_in(data_dir, extra_args);
        server._temp = Some(temp);
        server
    }

    /// Starts the server on a free port with the given data dir.
    pub fn start_in(data_dir: PathBuf, extra_args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loralab"))
            .arg("serve")
            .args(["--port", "0", "--data-dir"])
            .arg(&data_dir)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn loralab");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base_url = loop {
            let line = lines
                .next()
                .expect("loralab exited before printing its URL")
                .expect("read stdout");
            if let Some(url) = line.strip_prefix("Loralab is serving on ") {
                break url.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            base_url,
            data_dir,
            child,
            _temp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
