//! The access layer over an upload route: the route opts into the larger
//! limit by being in `access::UPLOAD_ROUTES` (here: under `/api/uploads/`), names go through `safe_name`, and a refused upload
//! leaves nothing on disk. The route here is this test's own; the layer,
//! limits and name check are the server's.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::post_head_only;
use futures_util::StreamExt;
use server::access::{self, Access, AccessSettings, BodyLimits};
use tokio::io::AsyncWriteExt;

const UPLOAD_LIMIT: u64 = 256 * 1024;

/// Streams the body to `<dir>/<name>` through a `.part` file; on any
/// failure the part is deleted.
async fn upload(
    State(dir): State<Arc<PathBuf>>,
    UrlPath(name): UrlPath<String>,
    body: Body,
) -> Result<StatusCode, (StatusCode, String)> {
    let name = access::safe_name(&name).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let part = dir.join(format!("{name}.part"));
    let result = async {
        let mut file = tokio::fs::File::create(&part).await.map_err(internal)?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| {
                if access::is_too_large(&error) {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "upload too large".to_string(),
                    )
                } else {
                    (StatusCode::BAD_REQUEST, error.to_string())
                }
            })?;
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.sync_all().await.map_err(internal)?;
        tokio::fs::rename(&part, dir.join(&name))
            .await
            .map_err(internal)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    result.map(|()| StatusCode::CREATED)
}

fn internal(error: std::io::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

async fn serve(data: &Path, uploads: PathBuf) -> SocketAddr {
    let settings = AccessSettings {
        limits: BodyLimits {
            default: access::DEFAULT_BODY_LIMIT,
            upload: UPLOAD_LIMIT,
        },
        ..AccessSettings::default()
    };
    let access = Access::new(settings, data).unwrap();
    let routes = Router::new()
        .route("/api/uploads/datasets/{name}", post(upload))
        .route("/api/datasets/{name}", post(upload))
        .with_state(Arc::new(uploads));
    let app = access::protect(routes, access);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    address
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn traversal_names_and_oversize_uploads_leave_nothing_behind() {
    let temp = tempfile::tempdir().unwrap();
    let uploads = temp.path().join("datasets");
    std::fs::create_dir_all(&uploads).unwrap();
    let address = serve(&temp.path().join("data"), uploads.clone()).await;
    let client = reqwest::Client::new();
    let url = |name: &str| format!("http://{address}/api/uploads/datasets/{name}");

    // Over 1 MiB is fine here: the route is an upload route.
    let fits = vec![b'x'; 200 * 1024];
    let response = client
        .post(url("chat-logs"))
        .body(fits.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    assert_eq!(listing(&uploads), ["chat-logs"]);
    assert_eq!(
        std::fs::read(uploads.join("chat-logs")).unwrap().len(),
        200 * 1024
    );

    // Encoded traversal reaches the handler as one segment and is refused.
    for (name, message) in [
        (
            "..%2F..%2Fescape",
            "name contains '/'; path separators are not allowed",
        ),
        // A bare `..` segment never gets here: URLs are normalised before
        // routing. `safe_name`'s unit tests cover it.
        (
            "..%2F",
            "name contains '/'; path separators are not allowed",
        ),
        (
            "a%5C..%5Cb",
            "name contains '\\\\'; path separators are not allowed",
        ),
        ("bad%00name", "name contains the control character U+0000"),
        (
            ".hidden",
            "name starts with '.' or '-', which hides the file or reads as an option",
        ),
    ] {
        let response = client.post(url(name)).body("data").send().await.unwrap();
        assert_eq!(response.status(), 400, "{name}");
        assert_eq!(response.text().await.unwrap(), message, "{name}");
    }
    assert_eq!(listing(&uploads), ["chat-logs"]);
    assert_eq!(
        listing(temp.path()),
        ["data", "datasets"],
        "nothing escaped the folder"
    );

    // Declared too large: refused before the handler runs (only the head
    // is sent: the answer must not wait for the body).
    let answer = post_head_only(
        &address.to_string(),
        "/api/uploads/datasets/big",
        UPLOAD_LIMIT + 1,
        "",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with(&format!(
            r#"{{"error":"request body is {} bytes; this route takes at most {UPLOAD_LIMIT}"}}"#,
            UPLOAD_LIMIT + 1
        )),
        "{answer}"
    );
    let big = vec![b'x'; UPLOAD_LIMIT as usize + 1];
    // Sent without a length: cut while streamed, and the part file removed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(32 * 1024).map(|c| Ok(c.to_vec())).collect();
    let response = client
        .post(url("big"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // A handler's plain-text refusal is answered as every refusal: JSON.
    assert_eq!(
        response.text().await.unwrap(),
        format!(
            r#"{{"error":"request body is over {UPLOAD_LIMIT} bytes, the most this route takes"}}"#
        )
    );
    assert_eq!(listing(&uploads), ["chat-logs"]);

    // The same handler outside /api/uploads/ keeps the 1 MiB default.
    let answer = post_head_only(
        &address.to_string(),
        "/api/datasets/large",
        1024 * 1024 + 1,
        "",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert_eq!(listing(&uploads), ["chat-logs"]);
}
