//! A teammate on another machine, played by a network namespace joined to
//! this one by a veth pair: the server listens on the host end's address
//! and the teammate runs curl inside the namespace. Needs root and
//! iproute2; where namespaces cannot be created the test says why and
//! passes without checking anything.

mod common;

use std::process::{Command, Output};

use common::{badge, Server};

/// The namespace and veth pair, removed when dropped.
struct Link {
    namespace: String,
    host_end: String,
    host_ip: String,
}

impl Link {
    fn create() -> Result<Self, String> {
        let id = std::process::id();
        let namespace = format!("loralab-lan-{id}");
        // Interface names are at most 15 bytes.
        let host_end = format!("llh{}", id % 1_000_000);
        let peer_end = format!("llt{}", id % 1_000_000);
        let subnet = format!("10.213.{}", id % 250);
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("`ip` (iproute2) is not installed".into());
        }
        let added = Command::new("ip")
            .args(["netns", "add", &namespace])
            .output()
            .unwrap();
        if !added.status.success() {
            return Err(format!(
                "`ip netns add` is not permitted here: {}",
                String::from_utf8_lossy(&added.stderr).trim()
            ));
        }
        let link = Self {
            namespace: namespace.clone(),
            host_end: host_end.clone(),
            host_ip: format!("{subnet}.1"),
        };
        for args in [
            vec![
                "link", "add", &host_end, "type", "veth", "peer", "name", &peer_end,
            ],
            vec!["link", "set", &peer_end, "netns", &namespace],
            vec!["addr", "add", &format!("{subnet}.1/24"), "dev", &host_end],
            vec!["link", "set", &host_end, "up"],
            vec![
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{subnet}.2/24"),
                "dev",
                &peer_end,
            ],
            vec!["-n", &namespace, "link", "set", &peer_end, "up"],
            vec!["-n", &namespace, "link", "set", "lo", "up"],
        ] {
            let output = Command::new("ip").args(&args).output().unwrap();
            assert!(
                output.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(link)
    }

    /// curl inside the namespace: (HTTP status, body). Status 0 when no
    /// connection could be made.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let output: Output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespace,
                "curl",
                "-sS",
                "--max-time",
                "10",
            ])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl inside the namespace");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_end])
            .output();
    }
}

#[test]
fn a_teammate_reads_and_needs_the_token_to_change_anything() {
    if Command::new("curl").arg("--version").output().is_err() {
        println!("SKIPPED: curl is not installed (scripts/setup.sh installs it)");
        return;
    }
    let link = match Link::create() {
        Ok(link) => link,
        Err(reason) => {
            println!("SKIPPED: {reason}");
            return;
        }
    };

    // The default bind is loopback: the teammate cannot even connect.
    let private = Server::start(&[]);
    let port = private.base_url.rsplit(':').next().unwrap().to_string();
    let (status, _) = link.curl(&[&format!("http://{}:{port}/", link.host_ip)]);
    assert_eq!(
        status, 0,
        "a default server must not be reachable from the LAN"
    );
    drop(private);

    // On the LAN address (any non-loopback --host means LAN mode).
    let server = Server::start(&["--host", &link.host_ip]);
    assert!(server
        .base_url
        .starts_with(&format!("http://{}:", link.host_ip)));
    let url = |path: &str| server.url(path);
    let (status, page) = link.curl(&[&url("/")]);
    assert_eq!(status, 200);
    assert!(
        page.contains("<h1>Runs</h1>") && badge(&page) == "viewer",
        "{page}"
    );
    let (status, runs) = link.curl(&[&url("/api/runs")]);
    assert_eq!((status, runs.as_str()), (200, "[]"));

    let stop = ["-X", "POST", "-H", "accept: application/json"];
    let (status, body) = link.curl(&[&stop[..], &[&url("/api/runs/7/stop")]].concat());
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        r#"{"error":"viewers cannot change anything here; the owner's link grants that"}"#
    );

    // The owner's link, followed by a browser-like cookie jar.
    let token = std::fs::read_to_string(server.data_dir.join("access/owner.token")).unwrap();
    let jar = format!("/tmp/loralab-lan-{}.cookies", std::process::id());
    let (status, _) = link.curl(&["-c", &jar, &url(&format!("/auth?token={}", token.trim()))]);
    assert_eq!(status, 303);
    let (status, body) = link.curl(&[&stop[..], &["-b", &jar, &url("/api/runs/7/stop")]].concat());
    let _ = std::fs::remove_file(&jar);
    // Past the access check: the run does not exist.
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"run 7 does not exist"}"#)
    );
    // And as a bearer token, the way scripts use it.
    let bearer = format!("authorization: Bearer {}", token.trim());
    let (status, _) = link.curl(&[&stop[..], &["-H", &bearer, &url("/api/runs/7/stop")]].concat());
    assert_eq!(status, 404);
    // A page on another origin cannot borrow the owner's rights.
    let (status, body) = link.curl(
        &[
            &stop[..],
            &[
                "-H",
                &bearer,
                "-H",
                "origin: http://evil.example",
                &url("/api/runs/7/stop"),
            ],
        ]
        .concat(),
    );
    assert_eq!(status, 403, "{body}");
}
