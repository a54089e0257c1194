//! Who may do what, and the limits every request lives within.
//!
//! - Without `--lan` the server listens on loopback only and every request
//!   is the owner's (the machine's user); requests naming another host are
//!   refused (DNS rebinding).
//! - With `--lan` nobody is trusted by address, loopback included: the owner
//!   and an operator present their token (cookie or bearer), everyone else
//!   is a viewer, or must first give the viewer password when one is set.
//! - One layer over the whole router checks every mutating method (anything
//!   but GET/HEAD/OPTIONS) on every route: server functions, the JSON API
//!   and routes added later, uploads included.

mod headers;
pub mod lan;
mod limits;
mod names;
mod origin;
mod paths;
mod session;
mod sessions;
mod tokens;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Result;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::json;

pub use app::Role;
pub use headers::{
    add_security_headers, content_security_policy_with_nonce, CONTENT_SECURITY_POLICY,
};
pub use limits::{
    cut_stalled_clients, is_too_large, BodyLimits, RefusableBody, StreamSlot, StreamSlots,
    TooManyStreams, DEFAULT_BODY_LIMIT, UPLOAD_ROUTES,
};
pub use names::{safe_name, NameError, MAX_NAME_BYTES};
pub use session::COOKIE;
use sessions::{digest, Grant, Sessions};
pub use tokens::{constant_time_eq, TokenKind, TokenStore};

/// How the server is exposed, from `loralab serve`'s flags.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// Reachable from the network: roles by token, not by address.
    pub lan: bool,
    /// With `lan`, viewers must give this first.
    pub viewer_password: Option<String>,
    pub max_streams_per_client: usize,
    pub limits: BodyLimits,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            lan: false,
            viewer_password: None,
            max_streams_per_client: 8,
            limits: BodyLimits {
                default: DEFAULT_BODY_LIMIT,
                upload: 4 << 30,
            },
        }
    }
}

pub struct Access {
    pub settings: AccessSettings,
    pub tokens: TokenStore,
    sessions: Sessions,
    streams: Arc<StreamSlots>,
}

impl Access {
    pub fn new(settings: AccessSettings, data_root: &std::path::Path) -> Result<Arc<Self>> {
        let tokens = TokenStore::open(data_root)?;
        Ok(Arc::new(Self {
            sessions: Sessions::open(tokens.dir()),
            tokens,
            streams: StreamSlots::new(settings.max_streams_per_client),
            settings,
        }))
    }

    /// The role of a request; None when it must first sign in (the viewer
    /// password is set and it has no session).
    pub fn role(&self, headers: &HeaderMap) -> Option<Role> {
        if !self.settings.lan {
            return Some(Role::Owner);
        }
        // Scripts present a token itself; browsers a session id.
        if let Some(token) = session::bearer(headers) {
            if let Some(role) = self.tokens.role_of(&token) {
                return Some(role);
            }
        } else if let Some(id) = session::cookie(headers) {
            if let Some(role) = self.session_role(&id) {
                return Some(role);
            }
        }
        self.settings
            .viewer_password
            .is_none()
            .then_some(Role::Viewer)
    }
}

impl Access {
    /// The role session `id` grants while what granted it still holds: its
    /// token unrotated, the viewer password unchanged.
    fn session_role(&self, id: &str) -> Option<Role> {
        let grant = self.sessions.grant_of(id)?;
        let holds = match &grant {
            Grant::Token { kind, token_sha256 } => self
                .tokens
                .current(*kind)
                .is_some_and(|token| digest(&token) == *token_sha256),
            Grant::ViewerPassword { password_sha256 } => self
                .settings
                .viewer_password
                .as_deref()
                .is_some_and(|password| digest(password) == *password_sha256),
        };
        if !holds {
            self.sessions.end(id);
            return None;
        }
        Some(match grant {
            Grant::Token { kind, .. } => kind.role(),
            Grant::ViewerPassword { .. } => Role::Viewer,
        })
    }
}

/// What handlers learn about the client (a request extension).
#[derive(Clone)]
pub struct Client {
    pub role: Role,
    /// The peer's address; None when the server was not started with
    /// connect info (a router driven in-process).
    pub address: Option<IpAddr>,
    streams: Arc<StreamSlots>,
}

impl Client {
    /// A slot for one more live stream, or 429 past the per-client cap.
    pub fn open_stream(&self) -> Result<StreamSlot, TooManyStreams> {
        self.streams
            .acquire(self.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }
}

/// Adds the session routes (`/auth`) and the access layer to every route of
/// `router`, its fallback included.
pub fn protect(router: Router, access: Arc<Access>) -> Router {
    router
        .merge(session::routes(access.clone()))
        .layer(middleware::from_fn_with_state(access, guard))
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Paths anyone may reach before signing in: the sign-in itself and what
/// its page needs.
fn open_path(path: &str) -> bool {
    path == "/auth"
        || path.starts_with("/auth/")
        || path.starts_with("/assets/")
        || path == "/api/health"
}

/// What an operator may post to: starting, stopping and resuming runs, and
/// the checks the new-run form makes first. `*` is one path segment.
const OPERATOR_ROUTES: &[&str] = &[
    "/api/runs",
    "/api/runs/estimate",
    "/api/runs/*/stop",
    "/api/runs/*/resume",
    "/fn/runs/create",
    "/fn/runs/check",
    "/fn/runs/stop",
    "/fn/runs/resume",
];

fn route_matches(pattern: &str, path: &str) -> bool {
    let mut segments = path.trim_end_matches('/').split('/');
    let matched = pattern.split('/').all(|want| {
        segments
            .next()
            .is_some_and(|got| want == "*" || want == got)
    });
    matched && segments.next().is_none()
}

/// Why `role` may not make a change at `path`, or None when it may.
fn refusal_for(role: Role, path: &str) -> Option<&'static str> {
    match role {
        Role::Owner => None,
        Role::Operator if OPERATOR_ROUTES.iter().any(|p| route_matches(p, path)) => None,
        Role::Operator => Some(
            "an operator may start, stop and resume runs; anything else needs the owner's link",
        ),
        Role::Viewer => Some("viewers cannot change anything here; the owner's link grants that"),
    }
}

async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let mut response = check_and_run(&access, request, next).await;
    add_security_headers(response.headers_mut());
    response
}

async fn check_and_run(access: &Access, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let html = wants_html(headers);
    if !access.settings.lan {
        if let Some(reason) = origin::foreign_host(headers) {
            return refuse(StatusCode::FORBIDDEN, &reason, html);
        }
    }
    let path = request.uri().path().to_string();
    let mutating = is_mutating(request.method());
    if mutating {
        if let Some(reason) = origin::cross_origin(headers) {
            tracing::warn!(%path, %reason, "refused");
            return refuse(StatusCode::FORBIDDEN, &reason, html);
        }
    }
    let role = match access.role(headers) {
        Some(role) => role,
        None if open_path(&path) => Role::Viewer,
        None if html => return session::login_page(access, StatusCode::UNAUTHORIZED, None),
        None => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "sign in with the viewer password first (POST /auth)",
                false,
            )
        }
    };
    if mutating && !path.starts_with("/auth") {
        if let Some(refusal) = refusal_for(role, &path) {
            return refuse(StatusCode::FORBIDDEN, refusal, html);
        }
    }
    let limit = access.settings.limits.for_path(&path);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared.filter(|length| *length > limit) {
        // Refused before any handler runs: nothing of it reaches the disk.
        // Answered at once: a client may wait for the answer before sending
        // the body (`Expect: 100-continue`).
        return close_if_refused_body(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body is {length} bytes; this route takes at most {limit}"),
            html,
        ));
    }
    // A body without a length (chunked) is cut at the limit while read.
    let (parts, body) = request.into_parts();
    let body = RefusableBody::new(body);
    let mut request = Request::from_parts(parts, body.limited(limit));
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    request.extensions_mut().insert(Client {
        role,
        address,
        streams: access.streams.clone(),
    });
    request.extensions_mut().insert(role);
    let mut response = next.run(request).await;
    if role != Role::Owner && path.starts_with("/api/") {
        response = hide_paths(response);
    }
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body.drain().await;
        // A body cut while read is refused by the extractor, in plain text:
        // answer as every other refusal, JSON or a page.
        if !has_content_type(&response, "application/json") {
            response = refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body is over {limit} bytes, the most this route takes"),
                html,
            );
        }
    }
    close_if_refused_body(response)
}

/// A 413 leaves the rest of the body unread, so its connection cannot carry
/// another request: say so, or a client that pools connections sends its
/// next request into a socket the server is closing.
fn close_if_refused_body(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Browsers navigating or posting a form ask for HTML; API clients get JSON.
/// A JSON answer or event stream with this machine's paths hidden (see
/// `paths.rs`); other answers (downloads) as they are.
fn hide_paths(response: Response) -> Response {
    if !has_content_type(&response, "application/json")
        && !has_content_type(&response, "text/event-stream")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The length changes with the text.
    parts.headers.remove(header::CONTENT_LENGTH);
    // Each chunk is whole: a JSON answer is one, an event stream sends an
    // event per chunk.
    let hidden = body.into_data_stream().map(|chunk| {
        chunk.map(|bytes| match std::str::from_utf8(&bytes) {
            Ok(text) => axum::body::Bytes::from(paths::hide_paths(text)),
            Err(_) => bytes,
        })
    });
    Response::from_parts(parts, axum::body::Body::from_stream(hidden))
}

fn has_content_type(response: &Response, wanted: &str) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(wanted))
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn refuse(status: StatusCode, message: &str, html: bool) -> Response {
    if html {
        let title = status.canonical_reason().unwrap_or("Refused");
        html_page(
            status,
            title,
            &format!("<p id=\"refusal\">{}</p>", escape(message)),
        )
    } else {
        (status, Json(json!({ "error": message }))).into_response()
    }
}

/// A bare page in the app's style for answers given before the app runs.
fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let title = escape(title);
    (
        status,
        Html(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/>\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
             <title>{title} · Loralab</title><link rel=\"stylesheet\" href=\"/assets/app.css\"/></head>\
             <body><header class=\"top\"><a class=\"brand\" href=\"/\">Loralab</a></header>\
             <main><h1>{title}</h1>{body}</main></body></html>"
        )),
    )
        .into_response()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_may_only_run() {
        for path in [
            "/api/runs",
            "/api/runs/7/stop",
            "/api/runs/7/resume/",
            "/fn/runs/create",
            "/fn/runs/resume",
        ] {
            assert_eq!(refusal_for(Role::Operator, path), None, "{path}");
        }
        for path in [
            "/api/runs/7",
            "/api/runs/7/evaluate",
            "/api/runs/7/stop/now",
            "/api/runs/7/exports",
            "/api/models/pull",
            "/fn/runs/delete",
            "/fn/compare/vote",
            "/",
        ] {
            assert!(refusal_for(Role::Operator, path).is_some(), "{path}");
            assert!(refusal_for(Role::Viewer, path).is_some(), "{path}");
            assert_eq!(refusal_for(Role::Owner, path), None, "{path}");
        }
    }
}
