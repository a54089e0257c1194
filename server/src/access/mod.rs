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
mod session;
mod tokens;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Result;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
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
    /// The cookie value of viewers who gave the password; new at each start,
    /// so a restart (or a password change) signs them out.
    viewer_session: String,
    streams: Arc<StreamSlots>,
}

impl Access {
    pub fn new(settings: AccessSettings, data_root: &std::path::Path) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            tokens: TokenStore::open(data_root)?,
            viewer_session: tokens::random_token()?,
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
        let secret = session::presented_secret(headers);
        if let Some(secret) = secret.as_deref().filter(|s| !s.is_empty()) {
            if let Some(role) = self.tokens.role_of(secret) {
                return Some(role);
            }
            if constant_time_eq(secret.as_bytes(), self.viewer_session.as_bytes()) {
                return Some(Role::Viewer);
            }
        }
        self.settings
            .viewer_password
            .is_none()
            .then_some(Role::Viewer)
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
    if mutating && !role.can_mutate() && !path.starts_with("/auth") {
        return refuse(
            StatusCode::FORBIDDEN,
            "viewers cannot change anything here; the owner's link grants that",
            html,
        );
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
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body.drain().await;
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
