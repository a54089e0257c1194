//! Security headers on every response. Scripts, styles and images come
//! only from `/assets/`. Leptos's server rendering adds small inline scripts
//! (resource data for hydration, which we do not use) marked with a
//! per-request nonce; pages send a policy that allows that nonce (see
//! `http.rs`), everything else the nonce-less one. Inline `style` attributes
//! stay allowed: the runs list sizes its progress bars with one, and an
//! attribute cannot run code.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; \
frame-ancestors 'none'";

/// The policy for a rendered page whose inline scripts carry `nonce`.
pub fn content_security_policy_with_nonce(nonce: &str) -> String {
    CONTENT_SECURITY_POLICY.replacen(
        "script-src 'self';",
        &format!("script-src 'self' 'nonce-{nonce}';"),
        1,
    )
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn a_nonce_extends_only_scripts() {
        let policy = super::content_security_policy_with_nonce("abc");
        assert!(
            policy.starts_with(
                "default-src 'none'; script-src 'self' 'nonce-abc'; style-src 'self';"
            ),
            "{policy}"
        );
        assert!(policy.ends_with("frame-ancestors 'none'"));
    }
}
