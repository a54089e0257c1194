//! Signing in: the owner's or an operator's link (`/auth?token=...`) or the
//! viewer password becomes a session (see `sessions.rs`) whose id is an
//! HttpOnly, SameSite=Strict cookie, and the browser is sent on to `/` so the
//! secret does not stay in the address bar or the history. Scripts present a
//! token as `Authorization: Bearer <token>` instead.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Form, Router};
use sha2::{Digest, Sha256};

use super::sessions::{digest, Grant};
use super::tokens::constant_time_eq;
use super::{Access, Role};

pub const COOKIE: &str = "loralab_session";
/// A year: the browser keeps the cookie while the session lives, and the
/// server ends the session after 30 idle days whatever the cookie says.
const COOKIE_MAX_AGE_SECS: u64 = 365 * 24 * 3600;

/// The token a script presents as `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The session id a browser presents in its cookie.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn session_cookie(value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("session ids are hex, so the cookie is a valid header")
}

/// Compares digests, so the time taken does not depend on how much of the
/// password was right, nor reveal its length.
pub fn password_matches(expected: &str, given: &str) -> bool {
    constant_time_eq(
        &Sha256::digest(expected.as_bytes()),
        &Sha256::digest(given.as_bytes()),
    )
}

pub(super) fn routes(access: Arc<Access>) -> Router {
    Router::new()
        .route("/auth", get(exchange).post(log_in))
        .route("/auth/logout", post(log_out))
        .with_state(access)
}

#[derive(serde::Deserialize)]
struct Exchange {
    token: Option<String>,
}

/// `GET /auth?token=...`: an owner or operator link; without a token, the
/// viewer password form (when there is one).
async fn exchange(State(access): State<Arc<Access>>, Query(query): Query<Exchange>) -> Response {
    let Some(token) = query.token else {
        return login_page(&access, StatusCode::OK, None);
    };
    let token = token.trim();
    match access.tokens.kind_of(token) {
        Some(kind) => {
            tracing::info!(role = kind.label(), "a browser exchanged a token for a session");
            signed_in(
                &access,
                Grant::Token {
                    kind,
                    token_sha256: digest(token),
                },
            )
        }
        None => super::html_page(
            StatusCode::FORBIDDEN,
            "Link not valid",
            "<p>This link's token is not valid: it may have been rotated. Ask the owner for the current link (<code>loralab token show</code>).</p>",
        ),
    }
}

fn signed_in(access: &Access, grant: Grant) -> Response {
    let id = match access.sessions.start(grant) {
        Ok(id) => id,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot start a session");
            return super::html_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot sign in",
                "<p>The server could not make a session (its random source failed); see its log.</p>",
            );
        }
    };
    let mut response = Redirect::to("/").into_response();
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, session_cookie(&id, COOKIE_MAX_AGE_SECS));
    // The request URL held a secret: keep the answer out of every cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(serde::Deserialize)]
struct LogIn {
    password: String,
}

/// `POST /auth` with the viewer password (form field `password`).
async fn log_in(State(access): State<Arc<Access>>, Form(form): Form<LogIn>) -> Response {
    let Some(expected) = access.settings.viewer_password.as_deref() else {
        return super::html_page(
            StatusCode::NOT_FOUND,
            "No password here",
            "<p>This server has no viewer password: everyone on the network may watch.</p>",
        );
    };
    if password_matches(expected, &form.password) {
        let grant = Grant::ViewerPassword {
            password_sha256: digest(expected),
        };
        return signed_in(&access, grant);
    }
    // Slows guessing down; a LAN attacker with many connections is
    // bounded by the password's length, not by this.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    login_page(&access, StatusCode::FORBIDDEN, Some("Wrong password."))
}

#[derive(serde::Deserialize)]
struct LogOut {
    #[serde(default)]
    everywhere: bool,
}

/// `POST /auth/logout`: ends this browser's session; with
/// `?everywhere=true` the owner ends every session (tokens stay valid:
/// `loralab token rotate` replaces them).
async fn log_out(
    State(access): State<Arc<Access>>,
    role: Option<Extension<Role>>,
    Query(query): Query<LogOut>,
    headers: HeaderMap,
) -> Response {
    if query.everywhere {
        if role.map(|Extension(role)| role) != Some(Role::Owner) {
            return super::refuse(
                StatusCode::FORBIDDEN,
                "only the owner can sign out every browser",
                super::wants_html(&headers),
            );
        }
        let ended = access.sessions.end_all();
        tracing::info!(ended, "the owner signed out every browser");
    } else if let Some(id) = cookie(&headers) {
        access.sessions.end(&id);
    }
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    response
}

/// The viewer password form, or a note on how to get in.
pub(super) fn login_page(access: &Access, status: StatusCode, error: Option<&str>) -> Response {
    if access.settings.viewer_password.is_none() {
        return super::html_page(
            status,
            "Sign in",
            "<p>Viewers need nothing to watch: go to <a href=\"/\">the runs</a>. To change things, open the owner link that <code>loralab serve</code> printed (or <code>loralab token show</code>).</p>",
        );
    }
    let error = error
        .map(|message| {
            format!(
                "<div class=\"error-box\" role=\"alert\">{}</div>",
                super::escape(message)
            )
        })
        .unwrap_or_default();
    super::html_page(
        status,
        "Sign in",
        &format!(
            "{error}<form class=\"stacked panel\" method=\"post\" action=\"/auth\" id=\"login\">\
             <label><span>Viewer password</span><input type=\"password\" name=\"password\" autofocus required /></label>\
             <button type=\"submit\" class=\"primary\">Watch</button></form>"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_or_a_bearer_token_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; loralab_session=abc123 ; other=1"),
        );
        assert_eq!(cookie(&headers).as_deref(), Some("abc123"));
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("tok"));
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        assert_eq!(
            session_cookie("ff", 60).to_str().unwrap(),
            "loralab_session=ff; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
    }

    #[test]
    fn passwords_compare_by_digest() {
        assert!(password_matches("hunter2", "hunter2"));
        assert!(!password_matches("hunter2", "hunter3"));
        assert!(!password_matches("hunter2", ""));
    }
}
