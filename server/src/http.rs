//! The HTTP surface: pages (Leptos, server-rendered), the JSON API and the
//! embedded assets, all behind the access layer (`crate::access`).

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use std::sync::Arc;

use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};

use app::{dto::HealthInfo, Backend, Role, SharedBackend};

use crate::access::{self, Access};
use crate::state::SharedState;

/// Every route of the server. Kept apart from start-up so tests drive it.
pub fn router(state: SharedState, access: Arc<Access>) -> Router {
    let backend: SharedBackend = state.clone();
    let options = LeptosOptions::builder().output_name("loralab").build();
    let provide_backend = {
        let backend = backend.clone();
        move || provide_request_context(&backend)
    };
    let pages = Router::new()
        .leptos_routes_with_context(&options, generate_route_list(app::App), provide_backend, {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(
            move |State(options): State<LeptosOptions>, request: Request<Body>| {
                not_found(options, backend.clone(), request)
            },
        )
        .with_state(options);
    let routes = Router::new()
        .route("/api/health", get(health))
        .merge(crate::api::routes())
        .with_state(state)
        .merge(frontend::router())
        .merge(pages);
    access::protect(
        routes.layer(axum::middleware::map_response(readable_error_redirect)),
        access,
    )
}

/// A server function that fails on a form post (no JavaScript) sends the
/// browser back with its error as base64 in `__err`; the address bar and
/// history should read the message: `?error=run 999 does not exist`.
async fn readable_error_redirect(mut response: Response) -> Response {
    let Some(location) = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|location| location.contains("__err="))
    else {
        return response;
    };
    let (path, query) = location.split_once('?').unwrap_or((location, ""));
    let (query, fragment) = query
        .split_once('#')
        .map_or((query, None), |(q, f)| (q, Some(f)));
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(key, value)| match key.as_str() {
            "__err" => ("error".to_string(), app::pages::decode_posted_error(&value)),
            _ => (key, value),
        })
        .collect();
    let mut rewritten = format!(
        "{path}?{}",
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    );
    if let Some(fragment) = fragment {
        rewritten.push('#');
        rewritten.push_str(fragment);
    }
    if let Ok(value) = HeaderValue::from_str(&rewritten) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// What pages and server functions read from context: the backend, and the
/// role the access layer gave this request (in its extensions).
fn provide_request_context(backend: &SharedBackend) {
    provide_context(backend.clone());
    let role = use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Role>().copied())
        .unwrap_or(Role::Viewer);
    provide_context(role);
    // Leptos marks its inline scripts with this request's nonce; the page's
    // policy must allow exactly that one.
    if let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        if let Ok(policy) =
            HeaderValue::from_str(&access::content_security_policy_with_nonce(&nonce))
        {
            response.insert_header(header::CONTENT_SECURITY_POLICY, policy);
        }
    }
}

async fn health(State(state): State<SharedState>) -> Json<HealthInfo> {
    Json(state.health())
}

/// Unknown paths get the app's own "not found" page with a 404 status.
async fn not_found(
    options: LeptosOptions,
    backend: SharedBackend,
    request: Request<Body>,
) -> Response {
    let render = leptos_axum::render_app_to_stream_with_context(
        move || provide_request_context(&backend),
        move || app::shell(options.clone()),
    );
    let mut response = render(request).await.into_response();
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
