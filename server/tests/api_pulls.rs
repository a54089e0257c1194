//! `POST /api/models/pull` on the real binary against a local stand-in for
//! the Hub: the pull runs in the background, a second request joins it, its
//! SSE stream ends with `done`, and the model is registered like an
//! imported folder; a failed pull registers nothing; pulls are still listed
//! after a restart (one the restart cut short says so, and pulling again
//! finishes it); viewers reach none of it.

mod common;
mod fake_hub;

use std::path::Path;
use std::time::Duration;

use common::{
    create_run, get_json, get_status, no_redirects, poll_json, post_json, read_sse, text_of,
    tiny_run, wait_for_status, Server,
};
use fake_hub::{FakeHub, FakeRepo};
use serde_json::{json, Value};

const COMMIT: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9001122334";

async fn wait_pull(client: &reqwest::Client, server: &Server, id: u64) -> Value {
    let url = server.url(&format!("/api/models/pulls/{id}"));
    poll_json(client, &url, 60, "its end", |pull| {
        pull["status"] != "running"
    })
    .await
}

/// A server that pulls from `hub` into the HF cache `cache`.
fn hub_server(temp: &Path, hub: &FakeHub, cache: &Path) -> Server {
    let cache = cache.display().to_string();
    Server::start_with_env(
        temp.join("data"),
        &[],
        &[
            ("HF_ENDPOINT", hub.url.as_str()),
            ("HF_HUB_CACHE", cache.as_str()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_shows_progress_and_registers_the_model() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = temp.path().join("upstream");
    let repo = FakeRepo::tiny_llama(&upstream, 3, COMMIT);
    let total: u64 = repo.files.iter().map(|(_, b)| b.len() as u64).sum();
    let other = FakeRepo::tiny_llama(&temp.path().join("upstream-other"), 4, COMMIT);
    // Each ranged answer waits, so the pull is still running when the
    // second request and the event stream arrive.
    let hub = FakeHub::start(
        vec![
            ("test-org/tiny-llama", repo),
            ("test-org/tiny-other", other),
        ],
        Duration::from_millis(300),
    )
    .await;
    let cache = temp.path().join("hf-cache");
    let server = hub_server(temp.path(), &hub, &cache);
    let client = reqwest::Client::new();

    let pull_url = server.url("/api/models/pull");
    let (status, started) =
        post_json(&client, &pull_url, json!({"repo": "test-org/tiny-llama"})).await;
    assert_eq!(status, 202);
    let id = started["id"].as_u64().unwrap();
    assert_eq!(started["status"], "running");
    assert_eq!(started["spec"], "test-org/tiny-llama");
    assert_eq!(started["revision"], "main");

    let (_, joined) = post_json(
        &client,
        &pull_url,
        json!({"repo": "test-org/tiny-llama", "revision": ""}),
    )
    .await;
    assert_eq!(joined["id"].as_u64(), Some(id), "{joined:#}");
    let (status, other) = post_json(
        &client,
        &pull_url,
        json!({"repo": "test-org/tiny-llama", "revision": "v2"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        other["error"],
        "test-org/tiny-llama is being pulled; wait for it to end before pulling test-org/tiny-llama@v2"
    );

    let stream = client
        .get(server.url(&format!("/api/models/pulls/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let events = read_sse(stream, |(_, event, _)| event == "done" || event == "failed").await;
    let (_, last_kind, last) = events.last().unwrap();
    let last: Value = serde_json::from_str(last).unwrap();
    assert_eq!(last_kind, "done", "{last:#}");
    assert_eq!(last["done_bytes"].as_u64(), Some(total));
    assert_eq!(last["total_bytes"].as_u64(), Some(total));
    assert_eq!(last["commit"], COMMIT);
    assert!(events[..events.len() - 1]
        .iter()
        .all(|(_, kind, _)| kind == "progress"));
    let files: Vec<&str> = last["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors"
        ]
    );

    let pull = wait_pull(&client, &server, id).await;
    let snapshot = cache.join(format!("models--test-org--tiny-llama/snapshots/{COMMIT}"));
    assert_eq!(pull["path"], snapshot.display().to_string());
    let models = get_json(&client, &server.url("/api/models")).await;
    let model = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "test-org/tiny-llama")
        .unwrap_or_else(|| panic!("{models:#}"));
    assert_eq!(pull["model_id"], model["id"]);
    assert_eq!(model["source"], "hub");
    assert_eq!(model["location"], snapshot.display().to_string());
    assert_eq!(model["architecture"], "llama");
    assert_eq!(
        model["parameters"].as_u64(),
        Some(engine::memory::parameter_count(
            &engine::models::read_config(&upstream).unwrap()
        ))
    );
    // Sizes of the blobs, not of the snapshot's links.
    assert_eq!(model["size_bytes"].as_u64(), Some(total));

    // The models page lists the pull and the model.
    let page = text_of(client.get(server.url("/models"))).await;
    assert!(page.contains(&format!("id=\"pull-{id}\"")), "{page}");
    assert!(
        page.contains("Registered as <strong>test-org/tiny-llama</strong>"),
        "{page}"
    );
    assert!(page.contains("<td>test-org/tiny-llama</td>"), "{page}");

    // A run can use it at once.
    let run = client
        .post(server.url("/api/runs/estimate"))
        .json(&json!({"model": "test-org/tiny-llama", "dataset": "sample-ahoy", "iters": 1, "num_layers": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 200, "{}", run.text().await.unwrap());

    // Its adapter zip names the Hub repo, not this machine's snapshot path,
    // so `mlx_lm.generate --adapter-path` works elsewhere; the run's own
    // config keeps the local path.
    let run = create_run(
        &client,
        &server,
        tiny_run(json!({"model": "test-org/tiny-llama", "iters": 5})),
    )
    .await;
    wait_for_status(&client, &server, run, 120, "done").await;
    let zip = client
        .get(server.url(&format!("/api/runs/{run}/adapter.zip")))
        .send()
        .await
        .unwrap();
    assert_eq!(zip.status(), 200);
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip.bytes().await.unwrap())).unwrap();
    let shipped: Value = serde_json::from_reader(
        archive
            .by_name(&format!("run-{run}-step-5/adapter_config.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(shipped["model"], "test-org/tiny-llama", "{shipped:#}");
    let local: Value = serde_json::from_str(
        &std::fs::read_to_string(
            temp.path()
                .join(format!("data/runs/{run}/adapter_config.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(local["model"], snapshot.display().to_string());
    assert_eq!(shipped["lora_parameters"], local["lora_parameters"]);

    // A repo the Hub does not know: the pull fails, saying so, and no
    // model appears.
    let (_, failed) = post_json(&client, &pull_url, json!({"repo": "test-org/missing"})).await;
    let failed = wait_pull(&client, &server, failed["id"].as_u64().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"],
        format!(
            "test-org/missing: no such model repo on {}, or it is private (set HF_TOKEN to a token that can read it)",
            hub.url
        )
    );
    let models = get_json(&client, &server.url("/api/models")).await;
    assert!(!models.to_string().contains("test-org/missing"));

    // A bad id is a 422 naming the field.
    let (status, bad) = post_json(&client, &pull_url, json!({"repo": "not-a-repo"})).await;
    assert_eq!(status, 422);
    assert_eq!(bad["field"], "repo");
    assert_eq!(
        bad["error"],
        "repo: \"not-a-repo\" is not a Hub repo id: write it as org/name (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)"
    );
    let list = get_json(&client, &server.url("/api/models/pulls")).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let unknown = get_status(&client, &server.url("/api/models/pulls/99")).await;
    assert_eq!(unknown, 404);

    // The server is killed during a pull, and started again.
    let (status, cut) = post_json(&client, &pull_url, json!({"repo": "test-org/tiny-other"})).await;
    assert_eq!((status, &cut["status"]), (202, &json!("running")));
    let cut = cut["id"].as_u64().unwrap();
    server.kill();
    let server = hub_server(temp.path(), &hub, &cache);
    let list = get_json(&client, &server.url("/api/models/pulls")).await;
    let listed: Vec<(u64, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    let missing = failed["id"].as_u64().unwrap();
    assert_eq!(
        listed,
        [(cut, "failed"), (missing, "failed"), (id, "done")],
        "newest first: {list:#}"
    );
    assert_eq!(
        list[0]["error"],
        "the server stopped during this pull; pull again to resume from what was downloaded"
    );
    let kept = get_json(&client, &server.url(&format!("/api/models/pulls/{id}"))).await;
    assert_eq!(kept, pull, "the finished pull as it was");
    let page = text_of(client.get(server.url("/models"))).await;
    assert!(page.contains(&format!("id=\"pull-{cut}\"")), "{page}");

    // Pulling it again finishes it, under a new id.
    let pull_url = server.url("/api/models/pull");
    let (status, again) =
        post_json(&client, &pull_url, json!({"repo": "test-org/tiny-other"})).await;
    assert_eq!(status, 202);
    let again = again["id"].as_u64().unwrap();
    assert!(again > cut);
    assert_eq!(wait_pull(&client, &server, again).await["status"], "done");

    // Retry pulls a failed pull's model again in its place; Dismiss
    // forgets a failed pull; neither touches a pull that did not fail.
    let pull_of = |id: u64| server.url(&format!("/api/models/pulls/{id}"));
    let (status, retried) =
        post_json(&client, &format!("{}/retry", pull_of(missing)), json!({})).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["spec"], "test-org/missing");
    let retried = retried["id"].as_u64().unwrap();
    assert!(retried > again);
    assert_eq!(
        get_status(&client, &pull_of(missing)).await,
        404,
        "replaced by its retry"
    );
    let retried_view = wait_pull(&client, &server, retried).await;
    assert_eq!(
        retried_view["status"], "failed",
        "the repo is still missing"
    );
    let (status, refused) =
        post_json(&client, &format!("{}/retry", pull_of(again)), json!({})).await;
    assert_eq!(status, 409);
    assert_eq!(
        refused["error"],
        format!("pull {again} of test-org/tiny-other is done; only a failed pull can be retried")
    );
    let dismiss = |id: u64| client.delete(pull_of(id)).send();
    assert_eq!(dismiss(again).await.unwrap().status(), 409);
    assert_eq!(dismiss(retried).await.unwrap().status(), 204);
    assert_eq!(dismiss(retried).await.unwrap().status(), 404);
    let list = get_json(&client, &server.url("/api/models/pulls")).await;
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [again, cut, id], "{list:#}");
    // Dismissed for good: not back after a restart.
    server.kill();
    let server = hub_server(temp.path(), &hub, &cache);
    let list = get_json(&client, &server.url("/api/models/pulls")).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list:#}");
}

#[tokio::test]
async fn a_no_js_form_post_starts_a_pull_the_page_shows() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = temp.path().join("upstream");
    let repo = FakeRepo::tiny_llama(&upstream, 5, COMMIT);
    let hub = FakeHub::start(vec![("test-org/tiny-llama", repo)], Duration::ZERO).await;
    let server = hub_server(temp.path(), &hub, &temp.path().join("hf-cache"));
    let client = no_redirects();
    let posted = client
        .post(server.url("/fn/models/pull"))
        .header("accept", "text/html")
        .form(&[("repo", "test-org/tiny-llama"), ("revision", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 302);
    assert_eq!(posted.headers()["location"], "/models#pull-1");
    let pull = wait_pull(&client, &server, 1).await;
    assert_eq!(pull["status"], "done", "{pull:#}");
    let page = text_of(client.get(server.url("/models"))).await;
    assert!(page.contains("id=\"pull-1\""), "{page}");
    assert!(
        page.contains("<span class=\"status done\">done</span>"),
        "{page}"
    );
    assert!(page.contains("style=\"width: 100.0%;\""), "{page}");
}
