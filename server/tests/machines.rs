//! The Machines page on the real binary: machine sets registered from an
//! mlx.launch hostfile with the page's plain forms (errors name the host
//! entry and field), checked host by host over a real sshd (reachable, the
//! same Loralab at the same path, free memory; an unreachable host says
//! why), deleted; and kept from everyone but the owner.

mod common;
#[path = "common/sshd.rs"]
mod sshd;

use common::{
    get_json, no_redirects, owner_token, post_json, text_of, tiny_run, tiny_setup,
    two_ranks_train_as_one, Server,
};
use reqwest::StatusCode;
use serde_json::json;

/// Posts a page's form without JavaScript; the redirect's location (a
/// refusal goes back to the page that posted, with `?error=`).
async fn post_form(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    form: &[(&str, &str)],
) -> String {
    let response = client
        .post(server.url(path))
        .header("accept", "text/html")
        .header("referer", server.url("/machines"))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND, "{path}");
    let location = response.headers()["location"].to_str().unwrap();
    location
        .strip_prefix(server.url("").trim_end_matches('/'))
        .unwrap_or(location)
        .to_string()
}

/// The row of host `host` in machine set `set`'s table.
fn host_row<'a>(page: &'a str, set: i64, host: &str) -> &'a str {
    let panel = page
        .split(&format!(r#"id="set-{set}""#))
        .nth(1)
        .unwrap_or_else(|| panic!("no machine set {set}: {page}"));
    let row = panel
        .split(&format!(r#"data-host="{host}""#))
        .nth(1)
        .unwrap_or_else(|| panic!("no host {host} in set {set}: {panel}"));
    &row[..row.find("</tr>").unwrap()]
}

fn unescape(html: &str) -> String {
    html.replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&#x60;", "`")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn machine_sets_are_registered_checked_over_ssh_and_deleted() {
    let sshd = sshd::Sshd::start(&["alpha", "beta"]);
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        temp.path().join("data"),
        &[],
        &[("LORALAB_SSH_OPTIONS", &sshd.ssh_options())],
    );
    let client = no_redirects();

    // A hostfile the launcher would refuse is refused here, naming the entry.
    let bad = r#"[{"ssh": "alpha", "ips": ["127.0.0.1"]}, {"ssh": "beta", "ips": ["not-an-ip"]}]"#;
    let back = post_form(
        &client,
        &server,
        "/fn/machines/register",
        &[("name", "lab"), ("hostfile", bad)],
    )
    .await;
    let page = unescape(&text_of(client.get(server.url(&back))).await);
    assert!(
        page.contains("hostfile: host 1: `ips` must hold IP addresses, got \"not-an-ip\""),
        "{back}\n{page}"
    );
    let lab = r#"[{"ssh": "alpha", "ips": ["127.0.0.1"]}, {"ssh": "beta", "ips": ["127.0.0.1"]}]"#;
    let to = post_form(
        &client,
        &server,
        "/fn/machines/register",
        &[("name", "lab"), ("hostfile", lab)],
    )
    .await;
    assert_eq!(to, "/machines#set-1");
    let far =
        r#"[{"ssh": "alpha", "ips": ["127.0.0.1"]}, {"ssh": "closed", "ips": ["127.0.0.1"]}]"#;
    let to = post_form(
        &client,
        &server,
        "/fn/machines/register",
        &[("name", "far"), ("hostfile", far)],
    )
    .await;
    assert_eq!(to, "/machines#set-2");
    let back = post_form(
        &client,
        &server,
        "/fn/machines/register",
        &[("name", "lab"), ("hostfile", lab)],
    )
    .await;
    let page = unescape(&text_of(client.get(server.url(&back))).await);
    assert!(
        page.contains("a machine set named `lab` exists already"),
        "{page}"
    );

    let page = text_of(client.get(server.url("/machines"))).await;
    assert!(host_row(&page, 1, "alpha").contains(r#"data-check="unchecked""#));
    assert!(page.contains("not checked yet"));

    // Both hosts are the test's sshd: reachable, this very binary.
    assert_eq!(
        post_form(&client, &server, "/fn/machines/check", &[("id", "1")]).await,
        "/machines#set-1"
    );
    let page = text_of(client.get(server.url("/machines"))).await;
    for host in ["alpha", "beta"] {
        let row = host_row(&page, 1, host);
        assert!(row.contains(r#"data-check="ok""#), "{row}");
        assert!(
            row.contains(&format!(">loralab {}<", env!("CARGO_PKG_VERSION"))),
            "{row}"
        );
        // MemAvailable of this machine, in whole units.
        assert!(row.contains(" GiB<") || row.contains(" MiB<"), "{row}");
    }
    assert!(page.contains("every host passed"), "{page}");

    // A host nobody listens for fails with ssh's reason; the other passes.
    post_form(&client, &server, "/fn/machines/check", &[("id", "2")]).await;
    let page = unescape(&text_of(client.get(server.url("/machines"))).await);
    assert!(host_row(&page, 2, "alpha").contains(r#"data-check="ok""#));
    let closed = host_row(&page, 2, "closed");
    assert!(closed.contains(r#"data-check="failed""#), "{closed}");
    assert!(
        closed.contains("unreachable over ssh: ") && closed.contains("Connection refused"),
        "{closed}"
    );
    assert!(page.contains("a host failed its check"), "{page}");

    assert_eq!(
        post_form(&client, &server, "/fn/machines/delete", &[("id", "2")]).await,
        "/machines"
    );
    let page = text_of(client.get(server.url("/machines"))).await;
    assert!(!page.contains(r#"id="set-2""#));
    assert!(page.contains(r#"id="set-1""#));
    // The results are stored: a restart shows them.
    server.kill();
    let server = Server::start_in(temp.path().join("data"), &[]);
    let page = text_of(client.get(server.url("/machines"))).await;
    assert!(host_row(&page, 1, "beta").contains(r#"data-check="ok""#));
}

#[tokio::test]
async fn only_the_owner_sees_and_changes_machine_sets() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start_in(temp.path().join("data"), &["--lan", "--host", "127.0.0.1"]);
    let viewer = no_redirects();
    let page = text_of(viewer.get(server.url("/machines"))).await;
    assert!(page.contains(r#"id="machines-refused""#), "{page}");
    assert!(
        !page.contains(r#"href="/machines""#),
        "a viewer's nav offers it"
    );
    let refused = viewer
        .post(server.url("/fn/machines/register"))
        .form(&[("name", "lab"), ("hostfile", r#"[{"ssh": "localhost"}]"#)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let token = owner_token(&server);
    let owner = |request: reqwest::RequestBuilder| request.bearer_auth(&token);
    let registered = owner(viewer.post(server.url("/fn/machines/register")))
        .header("accept", "text/html")
        .form(&[
            ("name", "lab"),
            (
                "hostfile",
                r#"[{"ssh": "localhost", "ips": ["127.0.0.1"]}]"#,
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::FOUND);
    let page = text_of(owner(viewer.get(server.url("/machines")))).await;
    assert!(page.contains(r#"href="/machines""#));
    assert!(page.contains(r#"data-machine-set="lab""#), "{page}");
    // A host named as this machine is checked without ssh, as the launcher starts it.
    let checked = owner(viewer.post(server.url("/fn/machines/check")))
        .header("accept", "text/html")
        .form(&[("id", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(checked.status(), StatusCode::FOUND);
    let page = text_of(owner(viewer.get(server.url("/machines")))).await;
    assert!(
        host_row(&page, 1, "localhost").contains(r#"data-check="ok""#),
        "{page}"
    );
    // Nor may a viewer check or delete it.
    for path in ["/fn/machines/check", "/fn/machines/delete"] {
        let refused = viewer
            .post(server.url(path))
            .form(&[("id", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let page = text_of(viewer.get(server.url("/machines"))).await;
    assert!(!page.contains("data-machine-set"), "{page}");
}

#[test]
fn dataset_files_reach_every_host_checksummed_and_matching_copies_are_skipped() {
    use server::machines::copy::{copy_to_hosts, sha256_file, under};
    let sshd = sshd::Sshd::start(&["alpha", "beta"]);
    // Only this test's ssh commands run in this process.
    std::env::set_var("LORALAB_SSH_OPTIONS", sshd.ssh_options());
    let temp = tempfile::tempdir().unwrap();
    let here = temp.path().join("data");
    let dataset = here.join("datasets/1");
    std::fs::create_dir_all(&dataset).unwrap();
    std::fs::write(
        dataset.join("train.jsonl"),
        "{\"text\": \"ahoy\"}\n".repeat(500),
    )
    .unwrap();
    std::fs::write(dataset.join("valid.jsonl"), "{\"text\": \"arr\"}\n").unwrap();
    let files = [dataset.join("train.jsonl"), dataset.join("valid.jsonl")];
    // The hosts' data dir: another folder, so a copy shows (both hosts
    // are this machine through the sshd, so beta finds alpha's copy).
    let there = temp.path().join("host data");
    let copies = under(&files, &here, &there);
    let hosts = |text: &str| server::launch::Hostfile::parse(text).unwrap().hosts;
    let lab =
        hosts(r#"[{"ssh": "alpha", "ips": ["127.0.0.1"]}, {"ssh": "beta", "ips": ["127.0.0.1"]}]"#);

    let first = copy_to_hosts(&lab, &copies).unwrap();
    let train = there.join("datasets/1/train.jsonl");
    let valid = there.join("datasets/1/valid.jsonl");
    assert_eq!(first[0].host, "alpha");
    assert_eq!(first[0].copied, vec![train.clone(), valid.clone()]);
    assert!(first[1].copied.is_empty(), "{first:?}");
    for (ours, theirs) in files.iter().zip([&train, &valid]) {
        assert_eq!(std::fs::read(ours).unwrap(), std::fs::read(theirs).unwrap());
    }
    let again = copy_to_hosts(&lab, &copies).unwrap();
    assert!(again.iter().all(|h| h.copied.is_empty()), "{again:?}");

    // A copy that differs is sent again, whole.
    std::fs::write(&valid, "{\"text\": \"changed\"}\n").unwrap();
    let fixed = copy_to_hosts(&lab, &copies).unwrap();
    assert_eq!(fixed[0].copied, vec![valid.clone()]);
    assert_eq!(
        sha256_file(&valid).unwrap(),
        sha256_file(&files[1]).unwrap()
    );
    let names: Vec<_> = std::fs::read_dir(there.join("datasets/1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "a partial file was left: {names:?}");

    // A host that cannot be reached fails the copy with its name.
    let far = hosts(
        r#"[{"ssh": "alpha", "ips": ["127.0.0.1"]}, {"ssh": "closed", "ips": ["127.0.0.1"]}]"#,
    );
    let error = copy_to_hosts(&far, &copies).unwrap_err().to_string();
    assert!(
        error.starts_with("cannot copy the dataset to `closed`: unreachable over ssh: ")
            && error.contains("Connection refused"),
        "{error}"
    );
}

/// The server starts a run's ranks on a machine set's hosts over ssh (both
/// hosts are the test's sshd), with the dataset checked there first; the
/// run trains as one rank does. A set whose check failed is refused before
/// anything starts.
#[tokio::test]
async fn a_run_on_a_checked_machine_set_trains_as_one_rank() {
    let sshd = sshd::Sshd::start(&["alpha", "beta"]);
    let setup = tiny_setup();
    let server = setup.serve(&[("LORALAB_SSH_OPTIONS", &sshd.ssh_options())]);
    let client = no_redirects();
    let lab = r#"[{"ssh": "alpha", "ips": ["127.0.0.1"]}, {"ssh": "beta", "ips": ["127.0.0.1"]}]"#;
    post_form(
        &client,
        &server,
        "/fn/machines/register",
        &[("name", "lab"), ("hostfile", lab)],
    )
    .await;
    let far =
        r#"[{"ssh": "alpha", "ips": ["127.0.0.1"]}, {"ssh": "closed", "ips": ["127.0.0.1"]}]"#;
    post_form(
        &client,
        &server,
        "/fn/machines/register",
        &[("name", "far"), ("hostfile", far)],
    )
    .await;

    // Unchecked, then failing its check: refused, naming the field.
    let (status, body) = post_json(
        &client,
        &server.url("/api/runs"),
        tiny_run(json!({"machine_set": "lab"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "machine_set", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("has not been checked yet"),
        "{body}"
    );
    post_form(&client, &server, "/fn/machines/check", &[("id", "1")]).await;
    post_form(&client, &server, "/fn/machines/check", &[("id", "2")]).await;
    let (status, body) = post_json(
        &client,
        &server.url("/api/runs"),
        tiny_run(json!({"machine_set": "far"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("`far` failed its last check: host `closed`: unreachable over ssh"),
        "{error}"
    );
    let (status, body) = post_json(
        &client,
        &server.url("/api/runs"),
        tiny_run(json!({"machine_set": "lab", "batch_size": 3})),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("batch_size")),
        "{body}"
    );
    let runs = get_json(&client, &server.url("/api/runs")).await;
    assert!(runs.as_array().unwrap().is_empty(), "{runs}");

    // The new-run form offers the registered sets.
    let form = text_of(client.get(server.url("/runs/new"))).await;
    let field = form
        .split(r#"name="form[machine_set]""#)
        .nth(1)
        .expect("no machine set field");
    let field = &field[..field.find("</select>").unwrap()];
    assert!(
        field.contains(r#"value="lab""#) && field.contains(r#"value="far""#),
        "{field}"
    );

    let (two, _) = two_ranks_train_as_one(&client, &server, json!({"machine_set": "lab"})).await;
    let page = text_of(client.get(server.url(&format!("/runs/{two}")))).await;
    for (rank, host) in [(0, "alpha"), (1, "beta")] {
        let row = page
            .split(&format!(r#"<tr data-rank="{rank}">"#))
            .nth(1)
            .unwrap();
        assert!(
            row[..row.find("</tr>").unwrap()].contains(host),
            "rank {rank}: {row}"
        );
    }
}
