//! A real OpenSSH server for tests: Debian's `sshd` (scripts/setup.sh
//! installs openssh-server) started as the current user on a free port of
//! 127.0.0.1, with a host key and one authorized client key made in a temp
//! dir, and an ssh client config naming hosts that all reach it. Loralab is
//! pointed at that config with `LORALAB_SSH_OPTIONS="-F <config>"`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Child,
    /// The client config: `Host` entries for every name given to
    /// [`Sshd::start`], plus `closed` (a port nothing listens on).
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen (openssh-client)");
    assert!(status.success(), "ssh-keygen {}", path.display());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

impl Sshd {
    /// Starts sshd; `hosts` become names in the client config for it.
    pub fn start(hosts: &[&str]) -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: scripts/setup.sh installs Debian's openssh-server"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        keygen(&path("host_key"));
        keygen(&path("client_key"));
        std::fs::copy(path("client_key.pub"), path("authorized_keys")).unwrap();
        // As root, sshd insists on its privilege separation directory.
        if current_user() == "root" {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let port = free_port();
        let server_config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
            path("host_key").display(),
            path("authorized_keys").display(),
            path("sshd.pid").display(),
        );
        std::fs::write(path("sshd_config"), server_config).unwrap();
        let client = |names: &str, port: u16| {
            format!(
                "Host {names}\n  HostName 127.0.0.1\n  Port {port}\n  User {}\n  IdentityFile {}\n  \
                 IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
                 LogLevel ERROR\n",
                current_user(),
                path("client_key").display()
            )
        };
        let config = path("ssh_config");
        std::fs::write(
            &config,
            format!(
                "{}{}",
                client(&hosts.join(" "), port),
                client("closed", free_port())
            ),
        )
        .unwrap();
        let child = Command::new(SSHD)
            .arg("-f")
            .arg(path("sshd_config"))
            .args(["-D", "-e"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            config,
            _dir: dir,
        }
    }

    /// `LORALAB_SSH_OPTIONS` for Loralab to reach the config's hosts.
    pub fn ssh_options(&self) -> String {
        format!("-F {}", self.config.display())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
