//! The embedded frontend: everything under `style/` and `public/` is compiled
//! into the binary and served under `/assets/`. File names carry no hash, so
//! the handler tags each response with an ETag (the content hash) and lets
//! browsers revalidate instead of caching blindly.

use axum::{
    extract::Path,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../style/"]
struct Styles;

#[derive(RustEmbed)]
#[folder = "../public/"]
struct Public;

/// The URL prefix the assets are served under.
pub const ASSETS_PREFIX: &str = "/assets";

/// Routes serving the embedded assets at `/assets/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/assets/{*path}", get(serve))
}

async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Styles::get(&path).or_else(|| Public::get(&path)) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!(
        "\"{}\"",
        file.metadata
            .sha256_hash()
            .iter()
            .take(16)
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    );
    let etag_value = HeaderValue::from_str(&etag).expect("hex digits are a valid header value");
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|candidate| candidate == etag_value);
    let common = [
        (header::ETAG, etag_value),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600, must-revalidate"),
        ),
    ];
    if not_modified {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&path)),
        )],
        file.data,
    )
        .into_response()
}

/// The content type for an asset path, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn serves_css_with_type_and_cache_headers() {
        let response = get("/assets/app.css", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert!(response.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age"));
        let etag = response.headers()[header::ETAG]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], Styles::get("app.css").unwrap().data.as_ref());

        let revalidated = get("/assets/app.css", Some(&etag)).await;
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn serves_js_and_refuses_unknown_paths() {
        let response = get("/assets/live.js", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            get("/assets/nope.css", None).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/assets/../Cargo.toml", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
