//! Viewers watch live: with --lan, a browser without a token (a viewer)
//! follows a run that the owner started, on both streams; each client
//! address holds a bounded number of streams.

mod common;

use std::net::IpAddr;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_viewer_sees_a_run_update_live() {
    let setup = tiny_setup();
    let server = Server::start_in(setup.data_dir.clone(), &["--lan", "--host", "127.0.0.1"]);
    let token = owner_token(&server);
    let viewer = reqwest::Client::new();

    // The viewer watches the runs list before anything happens.
    let updates = viewer
        .get(server.url("/api/runs/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(updates.status(), 200);
    let updates = tokio::spawn(read_sse(updates, |(_, _, data)| data.contains("\"done\"")));

    // The viewer may not start it...
    let refused = viewer
        .post(server.url("/api/runs"))
        .json(&tiny_run(json!({"iters": 8})))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // ...the owner may.
    let created = viewer
        .post(server.url("/api/runs"))
        .bearer_auth(&token)
        .json(&tiny_run(json!({"iters": 8})))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();

    let stream = viewer
        .get(server.url(&format!("/api/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let events = read_sse(stream, |(_, kind, _)| kind == "done").await;
    let report_steps: Vec<u64> = events
        .iter()
        .filter(|(_, kind, _)| kind == "report")
        .map(|(_, _, data)| {
            serde_json::from_str::<Value>(data).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(report_steps, (1..=8).collect::<Vec<_>>(), "{events:?}");
    assert_eq!(events.first().unwrap().1, "started");

    let updates = updates.await.unwrap();
    let statuses = statuses(&updates);
    assert!(statuses.contains(&"running".to_string()), "{statuses:?}");
    assert_eq!(statuses.last().unwrap(), "done");

    // The run page a viewer loads has the live stream and no buttons.
    let page = text_of(viewer.get(server.url(&format!("/runs/{id}")))).await;
    assert!(
        page.contains(&format!("data-live-run=\"/api/runs/{id}/events?after=")),
        "{page}"
    );
    assert!(
        !page.contains("id=\"resume\"") && !page.contains("Clone"),
        "{page}"
    );

    // This machine's paths are the owner's: checkpoints, model and dataset
    // locations, the config's paths, on every JSON route and stream.
    let root = setup.temp.path().display().to_string();
    let mut checked = 0;
    for path in [
        format!("/api/runs/{id}"),
        "/api/runs".to_string(),
        "/api/models".to_string(),
        "/api/datasets".to_string(),
        "/api/datasets/1".to_string(),
        "/api/exports".to_string(),
        "/api/compare/adapters".to_string(),
    ] {
        let as_owner = text_of(viewer.get(server.url(&path)).bearer_auth(&token)).await;
        let as_viewer = text_of(viewer.get(server.url(&path))).await;
        assert!(!as_viewer.contains(&root), "{path}: {as_viewer}");
        if as_owner.contains(&root) {
            checked += 1;
            assert!(as_viewer.contains("[path hidden]"), "{path}: {as_viewer}");
            // Only the paths differ.
            let shown: Value = serde_json::from_str(&as_viewer).unwrap();
            let full: Value = serde_json::from_str(&as_owner).unwrap();
            assert_eq!(
                shown.as_array().map(Vec::len),
                full.as_array().map(Vec::len)
            );
        }
    }
    assert!(checked >= 3, "the owner sees paths on {checked} routes");
    let replay = viewer
        .get(server.url(&format!("/api/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    let replayed = read_sse(replay, |(_, kind, _)| kind == "done").await;
    assert!(
        replayed.iter().all(|(_, _, data)| !data.contains(&root)),
        "{replayed:?}"
    );
}

#[tokio::test]
async fn streams_per_client_address_are_capped() {
    let server = Server::start(&["--max-streams-per-client", "3"]);
    let client = reqwest::Client::new();
    let mut open = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(server.url("/api/runs/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let refused = client
        .get(server.url("/api/runs/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.text().await.unwrap(),
        r#"{"error":"too many live streams from this address (at most 3); close a tab or wait"}"#
    );
    // The comparison and chat streams count against the same cap.
    let comparison = get_status(&client, &server.url("/api/compare/1/events")).await;
    assert_eq!(comparison, 429);
    let chat = client
        .post(server.url("/api/chat/1/messages"))
        .json(&serde_json::json!({"content": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 429);
    // Another address (another teammate) is not affected.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let teammate = reqwest::Client::builder()
        .local_address(other)
        .build()
        .unwrap();
    let response = get_status(&teammate, &server.url("/api/runs/events")).await;
    assert_eq!(response, 200);
    // Pages and the API are not streams and stay available.
    assert_eq!(
        client
            .get(server.url("/api/runs"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(open);
}
