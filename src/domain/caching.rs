//! What a response that sets or clears the session cookie may say about
//! caching. A shared cache (a CDN, a corporate proxy) that stored such a
//! response would hand one user's session cookie to others, so:
//! - a response that issues the cookie is made private: `public` and
//!   `s-maxage` leave its `Cache-Control`, `private` joins it, and the
//!   headers meant for CDNs alone (`CDN-Cache-Control`, any
//!   `*-CDN-Cache-Control`, `Surrogate-Control`) go;
//! - a response that clears it (logout) is `Cache-Control: no-store`, as
//!   are the proxy's own denials.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::util::tokens;

pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const PRIVATE: HeaderValue = HeaderValue::from_static("private");

const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
const CDN_CACHE_CONTROL_SUFFIX: &str = "cdn-cache-control";

/// Makes a response that carries a freshly issued session cookie
/// unstorable by shared caches, keeping what it says to the browser.
pub fn make_private(headers: &mut HeaderMap) {
    drop_cdn_controls(headers);
    if !headers.contains_key(header::CACHE_CONTROL) {
        // The usual case (a session write answered without caching
        // advice): nothing to keep, nothing to build.
        headers.insert(header::CACHE_CONTROL, PRIVATE);
        return;
    }
    let mut kept = String::from("private");
    for element in tokens::header_elements(headers, header::CACHE_CONTROL) {
        let name = element
            .split(|&b| b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let shared_only = name.eq_ignore_ascii_case(b"public")
            || name.eq_ignore_ascii_case(b"s-maxage")
            || name.eq_ignore_ascii_case(b"private");
        if shared_only {
            continue;
        }
        // Header values are visible ASCII here (checked when received).
        if let Ok(text) = std::str::from_utf8(element) {
            kept.push_str(", ");
            kept.push_str(text);
        }
    }
    match HeaderValue::from_str(&kept) {
        Ok(value) => {
            headers.insert(header::CACHE_CONTROL, value);
        }
        Err(_) => {
            headers.insert(header::CACHE_CONTROL, PRIVATE);
        }
    }
}

/// A response that ends a session (its cookie cleared): stored nowhere.
pub fn make_unstorable(headers: &mut HeaderMap) {
    drop_cdn_controls(headers);
    headers.insert(header::CACHE_CONTROL, NO_STORE);
}

fn drop_cdn_controls(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            *name == SURROGATE_CONTROL || name.as_str().ends_with(CDN_CACHE_CONTROL_SUFFIX)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_public_response_becomes_private_and_keeps_the_rest() {
        let mut headers = with(&[
            ("cache-control", "public, max-age=600, s-maxage=3600"),
            ("cache-control", "must-revalidate"),
            ("cdn-cache-control", "max-age=600"),
            ("cloudflare-cdn-cache-control", "max-age=600"),
            ("surrogate-control", "max-age=600"),
        ]);
        make_private(&mut headers);
        assert_eq!(headers.get_all("cache-control").iter().count(), 1);
        assert_eq!(
            headers["cache-control"],
            "private, max-age=600, must-revalidate"
        );
        assert!(!headers.contains_key("cdn-cache-control"));
        assert!(!headers.contains_key("cloudflare-cdn-cache-control"));
        assert!(!headers.contains_key("surrogate-control"));
    }

    #[test]
    fn without_cache_control_it_is_private() {
        let mut headers = HeaderMap::new();
        make_private(&mut headers);
        assert_eq!(headers["cache-control"], "private");
        let mut logout = with(&[("cache-control", "public, max-age=60")]);
        make_unstorable(&mut logout);
        assert_eq!(logout["cache-control"], "no-store");
    }

    #[test]
    fn without_cache_control_the_cdn_controls_go_all_the_same() {
        let mut headers = with(&[
            ("cdn-cache-control", "max-age=600"),
            ("surrogate-control", "max-age=600"),
            ("vary", "accept-encoding"),
        ]);
        make_private(&mut headers);
        assert_eq!(headers["cache-control"], "private");
        assert!(!headers.contains_key("cdn-cache-control"));
        assert!(!headers.contains_key("surrogate-control"));
        assert_eq!(headers["vary"], "accept-encoding");
    }
}
