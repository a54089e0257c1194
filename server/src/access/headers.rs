//! Security headers on every response. The pages are server-rendered with
//! no inline script (no hydration), so the policy allows only what is
//! served from `/assets/`. Inline `style` attributes stay allowed: the runs
//! list sizes its progress bars with one, and an attribute cannot run code.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; \
frame-ancestors 'none'";

const HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    // For browsers that predate frame-ancestors.
    (header::X_FRAME_OPTIONS, "DENY"),
    // Same-origin posts keep their Referer (Leptos sends a failed form
    // back to it); no URL of ours leaves for another site.
    (header::REFERRER_POLICY, "same-origin"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
];

/// Adds the headers a handler did not set itself.
pub fn add_security_headers(headers: &mut HeaderMap) {
    for (name, value) in HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}
