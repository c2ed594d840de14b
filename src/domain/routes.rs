//! Route policy: which canonical paths are login-only, and how a denied
//! request is answered.
//!
//! A prefix protects itself and everything below it on a segment boundary
//! (`/admin` covers `/admin` and `/admin/x`, not `/administrator`); the
//! longest matching prefix decides. Matching is ASCII case-insensitive unless
//! configured otherwise. Paths are canonical (see [`crate::domain::path`]) before
//! they get here, and that same canonical path is what is forwarded.

use http::header::{self, HeaderMap, HeaderValue};
use http::Method;

use crate::domain::path;

#[derive(Debug, Clone)]
pub struct Routes {
    /// Longest prefix first, so the first match is the most specific.
    rules: Vec<ProtectRule>,
    case_sensitive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// Redirect browsers' GET/HEAD, 401 for everything else.
    Auto,
    Redirect,
    Unauthorized,
}

#[derive(Debug, Clone)]
pub struct ProtectRule {
    /// Canonical path, no trailing slash (except `/`).
    pub prefix: String,
    pub deny: Deny,
}

/// How to turn a denied request away.
#[derive(Debug, PartialEq, Eq)]
pub enum Denial {
    /// 302 to this login location (with `next`).
    Redirect(HeaderValue),
    /// 401 with a JSON body.
    Unauthorized,
}

impl Routes {
    pub fn new(rules: &[ProtectRule], case_sensitive: bool) -> Self {
        let mut rules = rules.to_vec();
        rules.sort_by_key(|rule| std::cmp::Reverse(rule.prefix.len()));
        Self {
            rules,
            case_sensitive,
        }
    }

    /// The rule protecting `path`, if any.
    pub fn rule_for(&self, path: &str) -> Option<&ProtectRule> {
        self.rules
            .iter()
            .find(|rule| self.covers(&rule.prefix, path))
    }

    fn covers(&self, prefix: &str, path: &str) -> bool {
        let (prefix, path) = (prefix.as_bytes(), path.as_bytes());
        if prefix == b"/" {
            return true;
        }
        if path.len() < prefix.len() {
            return false;
        }
        let head = &path[..prefix.len()];
        let same = if self.case_sensitive {
            head == prefix
        } else {
            head.eq_ignore_ascii_case(prefix)
        };
        same && (path.len() == prefix.len() || path[prefix.len()] == b'/')
    }
}

/// Decides the answer to a denied request. `next` is the canonical path
/// plus the original query: always a same-origin relative path.
pub fn deny(
    deny: Deny,
    method: &Method,
    headers: &HeaderMap,
    login_url: &str,
    next: &str,
) -> Denial {
    let redirect = match deny {
        Deny::Redirect => true,
        Deny::Unauthorized => false,
        Deny::Auto => (method == Method::GET || method == Method::HEAD) && accepts_html(headers),
    };
    if !redirect {
        return Denial::Unauthorized;
    }
    let separator = if login_url.contains('?') { '&' } else { '?' };
    let location = format!(
        "{login_url}{separator}next={}",
        path::encode_component(next)
    );
    // The login URL was validated at start-up and `next` is percent-encoded.
    match HeaderValue::from_str(&location) {
        Ok(value) => Denial::Redirect(value),
        Err(_) => Denial::Unauthorized,
    }
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(case_sensitive: bool) -> Routes {
        let rule = |prefix: &str, deny| ProtectRule {
            prefix: prefix.into(),
            deny,
        };
        Routes::new(
            &[
                rule("/admin", Deny::Auto),
                rule("/admin/api", Deny::Unauthorized),
            ],
            case_sensitive,
        )
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let r = routes(false);
        assert!(r.rule_for("/admin").is_some());
        assert!(r.rule_for("/admin/").is_some());
        assert!(r.rule_for("/admin/x").is_some());
        assert!(r.rule_for("/administrator").is_none());
        assert!(r.rule_for("/").is_none());
        assert!(r.rule_for("/public/admin").is_none());
    }

    #[test]
    fn the_longest_prefix_decides() {
        assert_eq!(
            routes(false).rule_for("/admin/api/x").unwrap().deny,
            Deny::Unauthorized
        );
    }

    #[test]
    fn case_folding_follows_configuration() {
        assert!(routes(false).rule_for("/ADMIN/x").is_some());
        assert!(routes(true).rule_for("/ADMIN/x").is_none());
    }

    #[test]
    fn auto_redirects_browsers_getting_pages_only() {
        let mut html = HeaderMap::new();
        html.insert(header::ACCEPT, HeaderValue::from_static("text/html,*/*"));
        let plain = HeaderMap::new();
        let to_login =
            |m: &Method, h: &HeaderMap| deny(Deny::Auto, m, h, "/login", "/admin/x?a=1&b=2");
        assert_eq!(
            to_login(&Method::GET, &html),
            Denial::Redirect(HeaderValue::from_static(
                "/login?next=%2Fadmin%2Fx%3Fa%3D1%26b%3D2"
            ))
        );
        assert_eq!(to_login(&Method::POST, &html), Denial::Unauthorized);
        assert_eq!(to_login(&Method::GET, &plain), Denial::Unauthorized);
        assert_eq!(
            deny(Deny::Redirect, &Method::POST, &plain, "/in?x=1", "/a"),
            Denial::Redirect(HeaderValue::from_static("/in?x=1&next=%2Fa"))
        );
    }
}
