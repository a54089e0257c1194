//! Absolute paths of this machine (checkpoints, model locations, dataset
//! folders, paths inside configs and failure reasons) are the owner's to
//! see: for everyone else the JSON API and its event streams show
//! `[path hidden]` in their place. Done on the text of every response of
//! `/api/`, so a field added later cannot leak one.

/// What a path is replaced with.
pub const HIDDEN: &str = "[path hidden]";

/// The addresses the API's answers give (downloads, event streams), which
/// look like paths. Pages' addresses (`/runs/4`) are not among them: a
/// machine may well keep models in `/models/...`.
const ROUTES: [&str; 3] = ["/api/", "/fn/", "/assets/"];

/// `text` with every absolute file path replaced by [`HIDDEN`]. A path
/// starts with `/` after the start, a space, a quote, `=`, `(` or `>`, has at
/// least two components, and ends at whitespace, a quote, a backslash (a
/// JSON escape), `,`, `)` or `<` (trailing `:`, `;` and `.` left out).
pub fn hide_paths(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let starts_token = bytes[i] == b'/'
            && (i == 0
                || matches!(
                    bytes[i - 1],
                    b' ' | b'\n' | b'\t' | b'"' | b'\'' | b'=' | b'(' | b'>'
                ));
        if !starts_token {
            i += 1;
            continue;
        }
        let end = text[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ',' | ')' | '<'))
            .map_or(text.len(), |offset| i + offset);
        // Punctuation after a path ends the sentence, not the path.
        let end = i + text[i..end].trim_end_matches([':', ';', '.']).len();
        let token = &text[i..end];
        if is_file_path(token) {
            out.push_str(&text[copied..i]);
            out.push_str(HIDDEN);
            copied = end;
        }
        i = end.max(i + 1);
    }
    out.push_str(&text[copied..]);
    out
}

fn is_file_path(token: &str) -> bool {
    let components = token.split('/').filter(|c| !c.is_empty()).count();
    let first = token[1..].chars().next();
    components >= 2
        && first.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_')
        && !ROUTES.iter().any(|route| token.starts_with(route))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_hidden_and_addresses_kept() {
        assert_eq!(
            hide_paths(
                r#"{"path":"/home/ann/.loralab/runs/3/0000050_adapters.safetensors","step":50}"#
            ),
            r#"{"path":"[path hidden]","step":50}"#
        );
        assert_eq!(
            hide_paths("model: /work/models/smol\ndata: /tmp/x/datasets/1\niters: 10"),
            "model: [path hidden]\ndata: [path hidden]\niters: 10"
        );
        assert_eq!(
            hide_paths(
                r#"{"error":"cannot read /srv/m/config.json: gone","at":"/api/runs/1/events"}"#
            ),
            r#"{"error":"cannot read [path hidden]: gone","at":"/api/runs/1/events"}"#
        );
        for kept in [
            r#"{"zip":"/api/runs/4/adapter.zip","css":"/assets/app.css"}"#,
            "loss 1/2 and 3/4",
            "see https://huggingface.co/org/name/tree/main",
            "org/name@main, one / two",
            r#"{"root":"/"}"#,
        ] {
            assert_eq!(hide_paths(kept), kept);
        }
        assert_eq!(
            hide_paths("données in /home/zoë/été x"),
            format!("données in {HIDDEN} x")
        );
    }
}
