//! Cross-origin request protection for requests that carry a session: an
//! unsafe method (`POST`, `PUT`, `PATCH`, `DELETE`, anything but `GET`,
//! `HEAD` and `OPTIONS`) from another origin is refused, by what browsers
//! send (the model is Go's `net/http.CrossOriginProtection`):
//! - `Sec-Fetch-Site`: `same-origin` and `none` (the user typed it or used a
//!   bookmark) pass; `same-site` and `cross-site` do not;
//! - without it, `Origin`, compared with the request's own host: the same
//!   host (and port) passes;
//! - with neither, the request passes: it is not from a browser (or from
//!   one too old to send either, which `SameSite` cookies then guard).
//!
//! Configured origins are trusted (`https://idp.example`), and configured
//! path prefixes bypass the check (an identity provider's `form_post`
//! callback). Beyond `SameSite=Lax`, this stops a sibling subdomain (the
//! same site) and deployments with `SameSite=None` from sending
//! authenticated writes.

use http::header::{self, HeaderMap, HeaderName};
use http::{HeaderValue, Method};

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The configured policy.
#[derive(Debug, Clone, Default)]
pub struct CrossOrigin {
    pub enabled: bool,
    /// Origins whose requests pass, lower case, like `https://a.example`.
    pub trusted_origins: Vec<String>,
    /// Canonical path prefixes that bypass the check, without a trailing
    /// slash (but `/`).
    pub bypass: Vec<String>,
}

impl CrossOrigin {
    /// Whether a request with a session may proceed. `host`: the host it
    /// was sent to (`Host` or the HTTP/2 authority); `path`: canonical.
    pub fn allows(
        &self,
        method: &Method,
        headers: &HeaderMap,
        host: Option<&HeaderValue>,
        path: &str,
    ) -> bool {
        if !self.enabled || is_safe(method) || self.bypassed(path) {
            return true;
        }
        let origin = headers.get(header::ORIGIN);
        if origin.is_some_and(|o| self.trusts(o.as_bytes())) {
            return true;
        }
        if let Some(site) = headers.get(SEC_FETCH_SITE) {
            let site = site.as_bytes();
            return site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none");
        }
        match (origin, host) {
            (None, _) => true,
            (Some(origin), Some(host)) => origin_host(origin.as_bytes())
                .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host.as_bytes())),
            (Some(_), None) => false,
        }
    }

    fn trusts(&self, origin: &[u8]) -> bool {
        self.trusted_origins
            .iter()
            .any(|trusted| trusted.as_bytes().eq_ignore_ascii_case(origin))
    }

    fn bypassed(&self, path: &str) -> bool {
        self.bypass.iter().any(|prefix| {
            prefix == "/"
                || path == prefix
                || path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `host[:port]` of an origin (`scheme://host[:port]`); `None` for
/// `null` or anything else.
fn origin_host(origin: &[u8]) -> Option<&[u8]> {
    let rest = origin
        .strip_prefix(b"https://")
        .or_else(|| origin.strip_prefix(b"http://"))?;
    (!rest.is_empty() && !rest.contains(&b'/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CrossOrigin {
        CrossOrigin {
            enabled: true,
            trusted_origins: vec!["https://idp.example".into()],
            bypass: vec!["/auth/callback".into()],
        }
    }

    fn allows(method: Method, pairs: &[(&'static str, &'static str)], path: &str) -> bool {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        let host = HeaderValue::from_static("app.example");
        policy().allows(&method, &headers, Some(&host), path)
    }

    #[test]
    fn browsers_cross_origin_writes_are_refused() {
        assert!(!allows(
            Method::POST,
            &[("sec-fetch-site", "cross-site")],
            "/x"
        ));
        assert!(!allows(
            Method::DELETE,
            &[("sec-fetch-site", "same-site")],
            "/x"
        ));
        assert!(!allows(
            Method::PUT,
            &[("origin", "https://evil.example")],
            "/x"
        ));
        assert!(!allows(Method::PATCH, &[("origin", "null")], "/x"));
        // Sec-Fetch-Site wins over a matching Origin.
        assert!(!allows(
            Method::POST,
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://app.example")
            ],
            "/x"
        ));
    }

    #[test]
    fn same_origin_safe_methods_non_browsers_trusted_and_bypassed_pass() {
        assert!(allows(
            Method::POST,
            &[("sec-fetch-site", "same-origin")],
            "/x"
        ));
        assert!(allows(Method::POST, &[("sec-fetch-site", "none")], "/x"));
        assert!(allows(
            Method::POST,
            &[("origin", "https://app.example")],
            "/x"
        ));
        assert!(allows(Method::POST, &[], "/x"));
        assert!(allows(
            Method::GET,
            &[("sec-fetch-site", "cross-site")],
            "/x"
        ));
        assert!(allows(
            Method::OPTIONS,
            &[("origin", "https://evil.example")],
            "/x"
        ));
        assert!(allows(
            Method::POST,
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://IDP.example")
            ],
            "/x"
        ));
        assert!(allows(
            Method::POST,
            &[("sec-fetch-site", "cross-site")],
            "/auth/callback"
        ));
        assert!(allows(
            Method::POST,
            &[("sec-fetch-site", "cross-site")],
            "/auth/callback/x"
        ));
        assert!(!allows(
            Method::POST,
            &[("sec-fetch-site", "cross-site")],
            "/auth/callbacks"
        ));
        let off = CrossOrigin::default();
        let headers: HeaderMap = [(SEC_FETCH_SITE, HeaderValue::from_static("cross-site"))]
            .into_iter()
            .collect();
        assert!(off.allows(&Method::POST, &headers, None, "/x"));
    }
}
