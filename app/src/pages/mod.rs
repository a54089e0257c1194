//! One module per page, each beside its server functions.

pub mod catalog;
pub mod chat;
pub mod compare;
pub mod dataset;
pub mod exports;
pub mod machines;
pub mod new_run;
pub mod run;
pub mod run_comparison;
pub mod runs;
pub mod system;

use leptos::prelude::*;

/// Formats an optional number, with a dash for "none yet".
pub(crate) fn format_optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_string(), |value| format!("{value:.decimals$}"))
}

/// A duration the way people say it: "42 s", "2 min 5 s", "2 h 1 min".
pub(crate) fn format_duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// A server function's error as the user should read it, without the
/// "error running server function" wrapping.
pub(crate) fn server_error_text(error: &str) -> String {
    error
        .rsplit_once("error running server function: ")
        .map_or(error, |(_, message)| message)
        .to_string()
}

/// The error a server function reported to a no-JavaScript form post: leptos
/// redirects back with it in the `__err` query parameter, base64-encoded as
/// `ServerError|message`.
pub(crate) fn posted_error() -> Option<String> {
    let query = leptos_router::hooks::use_query_map();
    query.with_untracked(|query| query.get("error"))
}

/// The message of Leptos's `__err` parameter (base64 of `Kind|message`),
/// which the server turns into a readable `?error=` before the browser
/// sees it (see `server/src/http.rs`).
pub fn decode_posted_error(raw: &str) -> String {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| raw.to_string());
    decoded
        .split_once('|')
        .map(|(_, message)| message.to_string())
        .unwrap_or(decoded)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_naturally() {
        assert_eq!(super::format_duration(42.4), "42 s");
        assert_eq!(super::format_duration(125.0), "2 min 5 s");
        assert_eq!(super::format_duration(7260.0), "2 h 1 min");
    }

    #[test]
    fn posted_errors_show_their_message() {
        assert_eq!(
            super::decode_posted_error(
                "U2VydmVyRXJyb3J8aXRlcnM6ICJhYmMiIGlzIG5vdCBhIHZhbGlkIG51bWJlcg=="
            ),
            "iters: \"abc\" is not a valid number"
        );
    }
}

#[component]
pub(crate) fn ErrorBox(message: Option<String>) -> impl IntoView {
    message.map(|message| view! { <div class="error-box" role="alert">{message}</div> })
}
