//! Roles over HTTP on the real binary: without --lan the machine's user is
//! the owner; with --lan a viewer (no token) reads but every mutating route
//! refuses it, cross-origin posts are refused whoever sends them, the owner
//! link becomes a cookie, and rotating a token locks out its old sessions.

mod common;

use common::{badge, get_json, no_redirects, owner_token, post_head_only, text_of, Server};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// `--lan` on loopback: LAN rules, reachable only from this machine.
fn lan_server(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        temp.path().join("data"),
        &["--lan", "--host", "127.0.0.1"],
        env,
    );
    (temp, server)
}

/// Every mutating route the server has today: the JSON API's, and every
/// server function (Leptos registers them; pages call their own in-process,
/// so over HTTP each is a post to /fn/...). Paths that do not exist are
/// refused the same way: the check runs before routing.
fn mutating_routes() -> Vec<(Method, String)> {
    let mut routes: Vec<(Method, String)> = [
        "/api/runs",
        "/api/runs/1/stop",
        "/api/runs/1/resume",
        "/api/runs/1/evaluate",
        "/api/compare/1/evaluate",
        "/api/compare/1/cancel",
        "/api/chat/1/cancel",
        "/api/uploads/datasets",
        "/api/models/pull",
        "/no/such/route",
    ]
    .iter()
    .map(|path| (Method::POST, path.to_string()))
    .collect();
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        routes.push((method, "/api/runs/1".to_string()));
    }
    let server_fns: Vec<String> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _method)| path.to_string())
        .collect();
    // The pages' own: if this fails, server functions are no longer found.
    for known in [
        "/fn/runs/create",
        "/fn/runs/stop",
        "/fn/runs/resume",
        "/fn/runs/evaluate",
        "/fn/compare/evaluate",
        "/fn/compare/cancel",
    ] {
        assert!(
            server_fns.iter().any(|p| p == known),
            "{known} not in {server_fns:?}"
        );
    }
    routes.extend(server_fns.into_iter().map(|path| (Method::POST, path)));
    routes
}

async fn send(
    client: &Client,
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = client
        .request(method, server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("id=1");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn a_viewer_is_refused_on_every_mutating_route() {
    let (_temp, server) = lan_server(&[]);
    let client = no_redirects();
    let routes = mutating_routes();
    assert!(routes.len() >= 12, "{routes:?}");
    for (method, path) in &routes {
        let (status, _, body) = send(&client, &server, method.clone(), path, &[]).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json["error"], "viewers cannot change anything here; the owner's link grants that",
            "{method} {path}"
        );
    }
    // A browser's form post gets the same refusal as a page.
    let (status, _, body) = send(
        &client,
        &server,
        Method::POST,
        "/fn/runs/stop",
        &[("accept", "text/html".into())],
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("<p id=\"refusal\">viewers cannot change anything here"),
        "{body}"
    );
    // Nothing was created.
    let runs = get_json(&client, &server.url("/api/runs")).await;
    assert_eq!(runs, Value::Array(vec![]));

    // The owner's token passes the same routes' access check (what the
    // handler then says varies: 404, 422, a redirect... never 403).
    let bearer = format!("Bearer {}", owner_token(&server));
    for (method, path) in &routes {
        let (status, _, body) = send(
            &client,
            &server,
            method.clone(),
            path,
            &[("authorization", bearer.clone())],
        )
        .await;
        assert_ne!(status, 403, "{method} {path}: {body}");
        assert_ne!(status, 401, "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn a_viewer_neither_sees_nor_reaches_model_pulls() {
    let (_temp, server) = lan_server(&[]);
    let client = no_redirects();
    for path in [
        "/api/models/pulls",
        "/api/models/pulls/1",
        "/api/models/pulls/1/events",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(
            json["error"], "viewers cannot see model pulls; the owner's link grants that",
            "{path}"
        );
    }
    let page = text_of(client.get(server.url("/models"))).await;
    assert_eq!(badge(&page), "viewer");
    assert!(!page.contains("pull-model"), "{page}");
    assert!(!page.contains("/fn/models/pull"), "{page}");
    // The owner reads them (none yet).
    let bearer = format!("Bearer {}", owner_token(&server));
    let response = client
        .get(server.url("/api/models/pulls"))
        .header("authorization", bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        Value::Array(vec![])
    );
}

#[tokio::test]
async fn cross_origin_posts_are_refused_even_for_the_owner() {
    let (_temp, server) = lan_server(&[]);
    let client = no_redirects();
    let bearer = format!("Bearer {}", owner_token(&server));
    let host = server.base_url.trim_start_matches("http://").to_string();
    for (method, path) in mutating_routes() {
        for (name, value) in [
            ("origin", "http://evil.example".to_string()),
            ("origin", "null".to_string()),
            ("referer", "http://evil.example/form.html".to_string()),
        ] {
            let (status, _, body) = send(
                &client,
                &server,
                method.clone(),
                &path,
                &[("authorization", bearer.clone()), (name, value.clone())],
            )
            .await;
            assert_eq!(status, 403, "{method} {path} with {name} {value}: {body}");
            let json: Value = serde_json::from_str(&body).unwrap();
            let label = if name == "origin" {
                "Origin"
            } else {
                "Referer"
            };
            assert_eq!(
                json["error"],
                format!(
                    "cross-origin request refused: {label} {value:?} is not this server ({host})"
                )
            );
        }
    }
    // The same post from this server's own page goes through.
    let (status, _, body) = send(
        &client,
        &server,
        Method::POST,
        "/api/runs/999/stop",
        &[
            ("authorization", bearer),
            ("origin", server.base_url.clone()),
        ],
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body, r#"{"error":"run 999 does not exist"}"#);
}

#[tokio::test]
async fn the_owner_link_becomes_a_strict_cookie_and_rotation_revokes_it() {
    let (_temp, server) = lan_server(&[]);
    let client = no_redirects();
    let token = owner_token(&server);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data_dir.join("access/owner.token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let bad = client
        .get(server.url("/auth?token=0123"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    assert!(bad.headers().get("set-cookie").is_none());

    let exchange = client
        .get(server.url(&format!("/auth?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(exchange.status(), 303);
    assert_eq!(
        exchange.headers()["location"],
        "/",
        "the secret must leave the URL"
    );
    assert_eq!(exchange.headers()["cache-control"], "no-store");
    let cookie = exchange.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    let session = cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        cookie,
        format!("{session}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000")
    );
    // The cookie is a session id, not the token: a copied cookie does not
    // give the token away, and the token itself in a cookie grants nothing.
    let id = session.strip_prefix("loralab_session=").unwrap();
    assert_eq!(id.len(), 64);
    assert_ne!(id, token);
    let sessions_file =
        std::fs::read_to_string(server.data_dir.join("access/sessions.json")).unwrap();
    assert!(!sessions_file.contains(id) && !sessions_file.contains(&token));

    // As the owner: the badge, the buttons, and a post that reaches its handler.
    let page = text_of(client.get(server.url("/")).header("cookie", &session)).await;
    assert_eq!(badge(&page), "owner");
    assert!(page.contains(r#"href="/runs/new""#));
    let viewer_page = text_of(client.get(server.url("/"))).await;
    assert!(badge(&viewer_page) == "viewer", "{viewer_page}");
    assert!(
        !viewer_page.contains(r#"href="/runs/new""#),
        "{viewer_page}"
    );
    let datasets = |cookie: Option<String>| {
        let mut request = client.get(server.url("/datasets"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        text_of(request)
    };
    assert!(!datasets(None).await.contains(r#"id="upload-dataset""#));
    assert!(datasets(Some(session.clone()))
        .await
        .contains(r#"id="upload-dataset""#));
    let new_run = text_of(client.get(server.url("/runs/new"))).await;
    assert!(
        new_run.contains(r#"id="viewer-only""#) && !new_run.contains(r#"id="new-run""#),
        "{new_run}"
    );

    let stop = |cookie: String| {
        let client = client.clone();
        let url = server.url("/api/runs/999/stop");
        async move {
            let response = client
                .post(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            response.status()
        }
    };
    assert_eq!(stop(session.clone()).await, 404);
    assert_eq!(stop(format!("loralab_session={token}")).await, 403);

    // An operator link: may run, and the page says so.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["token", "rotate", "--operator", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    let operator = std::fs::read_to_string(server.data_dir.join("access/operator.token")).unwrap();
    let operator_session = sign_in(&client, &server, operator.trim()).await;
    assert_eq!(stop(operator_session.clone()).await, 404);
    let page = text_of(
        client
            .get(server.url("/"))
            .header("cookie", &operator_session),
    )
    .await;
    assert_eq!(badge(&page), "operator");

    // Rotation while the server runs: the old session is a viewer at once.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["token", "rotate", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rotated = owner_token(&server);
    assert_ne!(rotated, token);
    assert!(
        stdout.contains(&format!("owner token: {rotated}")),
        "{stdout}"
    );
    assert_eq!(stop(session).await, 403);
    let rotated_session = sign_in(&client, &server, &rotated).await;
    assert_eq!(stop(rotated_session.clone()).await, 404);

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["token", "remove-operator", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(stop(operator_session).await, 403);

    // Signing out everywhere is the owner's; it ends every session. Sessions
    // outlive a restart.
    let owner_session = rotated_session;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["token", "rotate", "--operator", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    let operator = std::fs::read_to_string(server.data_dir.join("access/operator.token")).unwrap();
    let operator_session = sign_in(&client, &server, operator.trim()).await;
    let data_dir = server.data_dir.clone();
    server.kill();
    let server = Server::start_in(data_dir, &["--lan", "--host", "127.0.0.1"]);
    let post = |path: &str, cookie: &str| {
        client
            .post(server.url(path))
            .header("cookie", cookie)
            .send()
    };
    let status = |response: reqwest::Result<reqwest::Response>| response.unwrap().status();
    assert_eq!(
        status(post("/api/runs/999/stop", &owner_session).await),
        404
    );
    assert_eq!(
        status(post("/api/runs/999/stop", &operator_session).await),
        404
    );
    let everywhere = "/auth/logout?everywhere=true";
    assert_eq!(status(post(everywhere, &operator_session).await), 403);
    assert_eq!(status(post(everywhere, &owner_session).await), 303);
    assert_eq!(
        status(post("/api/runs/999/stop", &owner_session).await),
        403
    );
    assert_eq!(
        status(post("/api/runs/999/stop", &operator_session).await),
        403
    );
}

/// Exchanges a token's link for a session: the `cookie` header to send.
async fn sign_in(client: &Client, server: &Server, token: &str) -> String {
    let response = client
        .get(server.url(&format!("/auth?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn an_operator_may_start_stop_and_resume_runs_only() {
    let (_temp, server) = lan_server(&[]);
    let client = no_redirects();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loralab"))
        .args(["token", "rotate", "--operator", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    let operator = std::fs::read_to_string(server.data_dir.join("access/operator.token")).unwrap();
    let bearer = format!("Bearer {}", operator.trim());
    let running = [
        "/api/runs",
        "/api/runs/1/stop",
        "/api/runs/1/resume",
        "/fn/runs/create",
        "/fn/runs/check",
        "/fn/runs/stop",
        "/fn/runs/resume",
    ];
    let mut routes = mutating_routes();
    routes.extend(
        [
            "/api/runs/1/exports",
            "/api/exports/1/cancel",
            "/api/compare",
            "/api/chat",
            "/api/models",
            "/api/datasets",
        ]
        .iter()
        .map(|path| (Method::POST, path.to_string())),
    );
    routes.push((Method::DELETE, "/api/datasets/x".to_string()));
    routes.push((Method::DELETE, "/api/models/1".to_string()));
    let mut allowed = 0;
    for (method, path) in &routes {
        let (status, _, body) = send(
            &client,
            &server,
            method.clone(),
            path,
            &[("authorization", bearer.clone())],
        )
        .await;
        if *method == Method::POST && running.contains(&path.as_str()) {
            allowed += 1;
            assert_ne!(status, 403, "{method} {path}: {body}");
        } else {
            assert_eq!(status, 403, "{method} {path}: {body}");
            let json: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                json["error"],
                "an operator may start, stop and resume runs; anything else needs the owner's link",
                "{method} {path}"
            );
        }
    }
    assert_eq!(allowed, running.len());
    // The pages show an operator only what it may do.
    let cookie = sign_in(&client, &server, operator.trim()).await;
    let page = text_of(client.get(server.url("/")).header("cookie", &cookie)).await;
    assert_eq!(badge(&page), "operator");
    assert!(page.contains(r#"href="/runs/new""#), "{page}");
    assert!(!page.contains(r#"href="/chat""#), "{page}");
    let datasets = text_of(
        client
            .get(server.url("/datasets"))
            .header("cookie", &cookie),
    )
    .await;
    assert!(!datasets.contains(r#"id="upload-dataset""#), "{datasets}");
    // Nor the model pulls.
    let pulls = client
        .get(server.url("/api/models/pulls"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(pulls.status(), 403);
}

#[tokio::test]
async fn the_viewer_password_guards_reading() {
    let (_temp, server) = lan_server(&[("LORALAB_VIEWER_PASSWORD", "correct horse")]);
    let client = no_redirects();
    let page = client
        .get(server.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 401);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(r#"<form class="stacked panel" method="post" action="/auth" id="login">"#));
    let api = client.get(server.url("/api/runs")).send().await.unwrap();
    assert_eq!(api.status(), 401);
    assert_eq!(
        api.text().await.unwrap(),
        r#"{"error":"sign in with the viewer password first (POST /auth)"}"#
    );
    // What the sign-in page needs stays reachable.
    assert_eq!(
        client
            .get(server.url("/assets/app.css"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let wrong = client
        .post(server.url("/auth"))
        .form(&[("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("Wrong password."));

    let right = client
        .post(server.url("/auth"))
        .form(&[("password", "correct horse")])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    let cookie = right.headers()["set-cookie"].to_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_string();
    assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");

    let runs = client
        .get(server.url("/api/runs"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(runs.status(), 200);
    let page = text_of(client.get(server.url("/")).header("cookie", &session)).await;
    assert_eq!(badge(&page), "viewer");
    let post = client
        .post(server.url("/api/runs"))
        .header("cookie", &session)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    // The owner's token needs no password.
    let owner = client
        .get(server.url("/api/runs"))
        .bearer_auth(owner_token(&server))
        .send()
        .await
        .unwrap();
    assert_eq!(owner.status(), 200);
}

#[tokio::test]
async fn without_lan_the_local_user_is_the_owner_on_local_names_only() {
    let server = Server::start(&[]);
    assert!(
        server.base_url.starts_with("http://127.0.0.1:"),
        "{}",
        server.base_url
    );
    let client = no_redirects();
    let page = client.get(server.url("/")).send().await.unwrap();
    let headers = page.headers().clone();
    let html = page.text().await.unwrap();
    assert_eq!(badge(&html), "owner");
    // Leptos's inline scripts carry this response's nonce, which the page's
    // policy allows; nothing inline runs without it.
    let nonce = html
        .split("<script nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("Leptos's inline scripts carry a nonce")
        .to_string();
    assert_eq!(
        html.matches("<script").count() - html.matches("<script src=\"/assets/").count(),
        html.matches(&format!("<script nonce=\"{nonce}\">")).count(),
        "every inline script has the nonce (scripts from /assets/ need none): {html}"
    );
    assert_eq!(
        headers["content-security-policy"],
        format!("default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'").as_str()
    );
    let api = client.get(server.url("/api/runs")).send().await.unwrap();
    assert_eq!(
        api.headers()["content-security-policy"],
        "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "same-origin");
    // Every response, errors and assets included.
    for path in ["/assets/live.js", "/api/runs/999", "/no/such/page"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert!(
            response.headers().contains_key("content-security-policy"),
            "{path}"
        );
    }

    // A post from this machine reaches the handler without any token.
    let stop = client
        .post(server.url("/api/runs/999/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 404);
    // A page whose name was re-pointed at 127.0.0.1 (DNS rebinding) is refused.
    let rebound = client
        .post(server.url("/api/runs/999/stop"))
        .header("host", "attacker.example:8080")
        .header("origin", "http://attacker.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    assert_eq!(
        rebound.text().await.unwrap(),
        r#"{"error":"this server only answers to localhost names (Host \"attacker.example:8080\"); start it with --lan to share it"}"#
    );
    let origin = client
        .post(server.url("/api/runs/999/stop"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(origin.status(), 403);
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_any_handler() {
    let server = Server::start(&[]);
    let client = Client::new();
    for path in ["/api/runs", "/fn/runs/create"] {
        let answer = post_head_only(
            server.base_url.trim_start_matches("http://"),
            path,
            1024 * 1024 + 1,
            "Content-Type: application/x-www-form-urlencoded\r\n",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{path}: {answer}"
        );
        assert!(
            answer.ends_with(
                r#"{"error":"request body is 1048577 bytes; this route takes at most 1048576"}"#
            ),
            "{path}: {answer}"
        );
    }
    // A chunked body (no length) is cut while read. The server answers 413
    // as soon as the limit passes and closes without reading the rest, so
    // the client may see its upload reset before it reads that answer.
    let big = vec![b' '; 1024 * 1024 + 1];
    let stream = futures_util::stream::iter(
        big.chunks(64 * 1024)
            .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
            .collect::<Vec<_>>(),
    );
    match client
        .post(server.url("/api/runs"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
    {
        Ok(response) => {
            assert_eq!(response.status(), 413);
            assert_eq!(response.headers()["content-type"], "application/json");
            assert_eq!(
                response.text().await.unwrap_or_default(),
                r#"{"error":"request body is over 1048576 bytes, the most this route takes"}"#
            );
        }
        Err(error) => assert!(error.is_request(), "{error:?}"),
    }
    let runs = get_json(&client, &server.url("/api/runs")).await;
    assert_eq!(runs, Value::Array(vec![]));
    // Just under the limit reaches the handler, which names the problem.
    let mut fits = b"{\"model\": 1}".to_vec();
    fits.resize(1024 * 1024, b' ');
    let response = client
        .post(server.url("/api/runs"))
        .body(fits)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":"model: must be a string, got 1","field":"model"}"#
    );
}
