//! Where a request says it comes from. A browser attaches `Origin` to every
//! POST (and `Referer` under our `Referrer-Policy: same-origin`), so a form
//! on another site posting here is recognised and refused, whatever cookie
//! the browser holds. A client that sends neither is not a browser (curl, a
//! script), which cross-site request forgery cannot drive.

use axum::http::{header, HeaderMap};

/// Why a mutating request was refused as cross-origin.
pub fn cross_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok())?;
    let (label, claimed) = if let Some(origin) = headers.get(header::ORIGIN) {
        (
            "Origin",
            origin.to_str().unwrap_or("(not text)").to_string(),
        )
    } else if let Some(referer) = headers.get(header::REFERER) {
        (
            "Referer",
            referer.to_str().unwrap_or("(not text)").to_string(),
        )
    } else {
        return None;
    };
    match origin_authority(&claimed) {
        Some(authority) if authority.eq_ignore_ascii_case(host) => None,
        _ => Some(format!(
            "cross-origin request refused: {label} {claimed:?} is not this server ({host})"
        )),
    }
}

/// `http://host:port` out of an Origin or a Referer URL; None for `null`
/// and anything that is not http(s).
fn origin_authority(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

/// Without `--lan` the server answers only to names of this machine: a web
/// page whose DNS name re-points to 127.0.0.1 (DNS rebinding) sends its own
/// name as Host and is refused, so it cannot use the local owner's rights.
pub fn foreign_host(headers: &HeaderMap) -> Option<String> {
    let Some(host) = headers.get(header::HOST) else {
        // HTTP/1.0 without Host: not a browser.
        return None;
    };
    let host = host.to_str().unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.to_ascii_lowercase();
    let local = name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!local).then(|| {
        format!(
            "this server only answers to localhost names (Host {host:?}); start it with --lan to share it"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn same_origin_passes_and_others_are_named() {
        let ok = headers(&[
            ("host", "10.0.0.2:8080"),
            ("origin", "http://10.0.0.2:8080"),
        ]);
        assert_eq!(cross_origin(&ok), None);
        let referer = headers(&[
            ("host", "10.0.0.2:8080"),
            ("referer", "http://10.0.0.2:8080/runs/1?x=1"),
        ]);
        assert_eq!(cross_origin(&referer), None);
        let neither = headers(&[("host", "10.0.0.2:8080")]);
        assert_eq!(cross_origin(&neither), None);

        let evil = headers(&[("host", "10.0.0.2:8080"), ("origin", "http://evil.example")]);
        assert_eq!(
            cross_origin(&evil).unwrap(),
            "cross-origin request refused: Origin \"http://evil.example\" is not this server (10.0.0.2:8080)"
        );
        let port = headers(&[
            ("host", "10.0.0.2:8080"),
            ("origin", "http://10.0.0.2:9999"),
        ]);
        assert!(cross_origin(&port).is_some());
        let null = headers(&[("host", "10.0.0.2:8080"), ("origin", "null")]);
        assert!(cross_origin(&null).is_some());
        let userinfo = headers(&[("host", "a:1"), ("referer", "http://a:1@evil/")]);
        assert!(cross_origin(&userinfo).is_some());
        let prefix = headers(&[
            ("host", "10.0.0.2:8080"),
            ("referer", "http://10.0.0.2:80801/"),
        ]);
        assert!(cross_origin(&prefix).is_some());
    }

    #[test]
    fn only_local_names_are_served_without_lan() {
        for host in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "app.localhost:3",
            "127.1.2.3",
        ] {
            assert_eq!(foreign_host(&headers(&[("host", host)])), None, "{host}");
        }
        for host in [
            "evil.example:8080",
            "192.168.1.4:8080",
            "[fe80::1]:80",
            "localhost.evil.com",
        ] {
            assert!(
                foreign_host(&headers(&[("host", host)])).is_some(),
                "{host}"
            );
        }
    }
}
