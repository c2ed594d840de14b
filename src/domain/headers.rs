//! Header names and header hygiene: every custom header name as a constant,
//! scrubbing of client-sent reserved headers, and hop-by-hop removal.
//!
//! Order matters and is fixed by the proxy: strip reserved headers first,
//! then hop-by-hop processing on what is left, and only then inject the
//! proxy's own headers. So a client can neither smuggle a session header in
//! nor make the proxy drop one it injects (e.g. with `Connection: X-Session`).
//!
//! Reserved names are matched case-insensitively with `_` and `.` read as
//! `-`, since backends map them to the same variable: CGI and Rack turn
//! `-` into `_`, PHP turns `.` (and `-`) into `_`, so `X.User`, `X_User`
//! and `X-User` all arrive as `HTTP_X_USER`.
//!
//! `Proxy` is always dropped from requests (httpoxy): CGI makes it
//! `HTTP_PROXY`, which many HTTP clients read as their outgoing proxy.

use http::header::{self, HeaderMap, HeaderName};

use crate::util::tokens;

pub const X_SESSION: HeaderName = HeaderName::from_static("x-session");
pub const X_SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
/// Sent instead of `X-Session` when the session is over the header budget.
pub const X_SESSION_OMITTED: HeaderName = HeaderName::from_static("x-session-omitted");
pub const SET_SESSION: HeaderName = HeaderName::from_static("set-session");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// The h2c upgrade's settings (RFC 7540 3.2): connection-specific.
pub const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Prefix of every session header; all names starting with it are reserved.
const SESSION_PREFIX: &[u8] = b"x-session";
/// Forwarding headers believed only from trusted proxies.
const FORWARDING_EXACT: [&[u8]; 4] = [
    b"forwarded",
    b"x-real-ip",
    b"x-original-url",
    b"x-rewrite-url",
];
const FORWARDING_PREFIX: &[u8] = b"x-forwarded-";

const HOP_BY_HOP_COUNT: usize = 8;
/// Where `Connection` sits in [`HOP_BY_HOP`].
const CONNECTION_AT: usize = 0;

/// Hop-by-hop headers (RFC 9110 7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection`, and h2c's `HTTP2-Settings`). WebSocket handshakes
/// get their `Upgrade` and `Connection` back afterwards, in `proxy::upgrade`.
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    // At CONNECTION_AT.
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HTTP2_SETTINGS,
];

/// Headers a `Connection` option may not remove: framing and routing.
const CONNECTION_PROOF: [HeaderName; 2] = [header::HOST, header::CONTENT_LENGTH];

/// Compares header names with ASCII case folded and `_` and `.` read as
/// `-`.
fn same_name(name: &[u8], target: &[u8]) -> bool {
    name.len() == target.len() && name.iter().zip(target).all(|(&a, &b)| fold(a) == b)
}

fn starts_with_name(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && same_name(&name[..prefix.len()], prefix)
}

fn fold(byte: u8) -> u8 {
    if byte == b'_' || byte == b'.' {
        b'-'
    } else {
        byte.to_ascii_lowercase()
    }
}

fn is_session_name(name: &[u8]) -> bool {
    starts_with_name(name, SESSION_PREFIX) || same_name(name, b"set-session")
}

fn is_forwarding_name(name: &[u8]) -> bool {
    starts_with_name(name, FORWARDING_PREFIX) || FORWARDING_EXACT.iter().any(|t| same_name(name, t))
}

/// True for names a per-field session header may not take.
pub fn is_reserved_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    is_session_name(bytes)
        || is_forwarding_name(bytes)
        || HOP_BY_HOP
            .iter()
            .any(|h| same_name(bytes, h.as_str().as_bytes()))
        || [
            header::HOST,
            header::COOKIE,
            header::CONTENT_LENGTH,
            header::VIA,
        ]
        .iter()
        .any(|h| same_name(bytes, h.as_str().as_bytes()))
}

/// Removes client-sent reserved headers from requests.
#[derive(Debug, Clone)]
pub struct Scrubber {
    /// Configured per-field header names, lower case.
    field_names: Vec<Vec<u8>>,
}

impl Scrubber {
    pub fn new(field_names: impl IntoIterator<Item = HeaderName>) -> Self {
        let field_names = field_names
            .into_iter()
            .map(|n| n.as_str().as_bytes().to_vec())
            .collect();
        Self { field_names }
    }

    fn is_reserved(&self, name: &[u8], trusted_peer: bool) -> bool {
        is_session_name(name)
            || same_name(name, b"proxy")
            || (!trusted_peer && is_forwarding_name(name))
            || self.field_names.iter().any(|f| same_name(name, f))
    }

    /// Removes every copy of every reserved header. Forwarding headers are
    /// kept only when the peer is a trusted proxy.
    pub fn scrub(&self, headers: &mut HeaderMap, trusted_peer: bool) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.is_reserved(name.as_str().as_bytes(), trusted_peer))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }
}

/// Removes hop-by-hop headers and those the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which hop-by-hop headers are present
    // (most messages carry none, or only `Connection`); only those are
    // removed, each with one hashed lookup.
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(at) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[at] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    if present[CONNECTION_AT] {
        // `Connection` options other than `close` and `keep-alive` (already
        // hop-by-hop) name further headers to remove: rare, so the list is
        // only allocated for them.
        let named: Vec<HeaderName> = tokens::header_elements(headers, header::CONNECTION)
            .filter(|token| {
                !token.eq_ignore_ascii_case(b"close") && !token.eq_ignore_ascii_case(b"keep-alive")
            })
            .filter_map(|token| HeaderName::from_bytes(token).ok())
            .filter(|name| !CONNECTION_PROOF.contains(name))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
}

/// False when a request's `Transfer-Encoding` is anything but a single
/// `chunked`. hyper refuses codings that do not end in `chunked`; this also
/// refuses `gzip, chunked` and the like, which the proxy would forward
/// decoded-but-still-encoded, and which no browser sends.
pub fn chunked_only(headers: &HeaderMap) -> bool {
    let mut codings = tokens::header_elements(headers, header::TRANSFER_ENCODING);
    match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(coding), None) => coding.eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
}

/// Removes every spelling of `Set-Session` from an upstream response and
/// returns the values of the canonical one, in order.
pub fn take_set_session(headers: &mut HeaderMap) -> Vec<http::HeaderValue> {
    // One pass over the names says which spellings are present (most
    // responses carry none): no hashed lookup when there is nothing to
    // take, and `entry`, which reserves room for an insertion (and may
    // grow the map), only when there is.
    let (mut canonical, mut stray) = (false, false);
    for name in headers.keys() {
        if same_name(name.as_str().as_bytes(), b"set-session") {
            if *name == SET_SESSION {
                canonical = true;
            } else {
                stray = true;
            }
        }
    }
    let values: Vec<http::HeaderValue> = if canonical {
        match headers.entry(SET_SESSION) {
            header::Entry::Occupied(entry) => entry.remove_entry_mult().1.collect(),
            header::Entry::Vacant(_) => Vec::new(),
        }
    } else {
        Vec::new()
    };
    if stray {
        // Another spelling (`Set_Session`, `Set.Session`) is not the
        // protocol, but must not reach clients either.
        let stray: Vec<HeaderName> = headers
            .keys()
            .filter(|n| same_name(n.as_str().as_bytes(), b"set-session"))
            .cloned()
            .collect();
        for name in stray {
            headers.remove(name);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn session_headers_in_any_spelling_are_scrubbed() {
        let scrubber = Scrubber::new([HeaderName::from_static("x-user")]);
        let mut headers = map(&[
            ("x-session", "{}"),
            ("X_Session_Id", "abc"),
            ("x-session-anything", "1"),
            ("set-session", "destroy"),
            ("set_session", "destroy"),
            ("x_user", "admin"),
            ("x-user", "admin"),
            ("accept", "*/*"),
        ]);
        scrubber.scrub(&mut headers, false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("accept"));
    }

    #[test]
    fn forwarding_headers_survive_only_from_trusted_peers() {
        let scrubber = Scrubber::new([]);
        let pairs = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_proto", "https"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
        ];
        let mut untrusted = map(&pairs);
        scrubber.scrub(&mut untrusted, false);
        assert!(untrusted.is_empty(), "{untrusted:?}");
        let mut trusted = map(&pairs);
        scrubber.scrub(&mut trusted, true);
        assert_eq!(trusted.len(), pairs.len());
    }

    #[test]
    fn connection_tokens_are_read_one_by_one() {
        let mut headers = HeaderMap::new();
        // One value with a byte that is not visible ASCII: the valid tokens
        // in it still name headers to remove.
        headers.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-a, \xff, Keep-Alive, CLOSE").unwrap(),
        );
        headers.append(header::CONNECTION, HeaderValue::from_static("x-b"));
        for name in ["x-a", "x-b", "x-c", "keep-alive"] {
            headers.append(name, HeaderValue::from_static("1"));
        }
        remove_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-c"]);
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go_but_framing_stays() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-private, host, content-length"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            ("host", "example.com"),
            ("content-length", "0"),
        ]);
        remove_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["host", "content-length"]);
    }

    #[test]
    fn only_a_single_chunked_transfer_coding_is_accepted() {
        assert!(chunked_only(&map(&[])));
        assert!(chunked_only(&map(&[("transfer-encoding", "Chunked")])));
        for bad in ["gzip", "gzip, chunked", "chunked, chunked", "identity"] {
            assert!(!chunked_only(&map(&[("transfer-encoding", bad)])), "{bad}");
        }
        let split = map(&[
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ]);
        assert!(!chunked_only(&split));
    }

    #[test]
    fn set_session_is_taken_in_order_and_every_spelling_removed() {
        let mut headers = map(&[
            ("set-session", "{\"a\":1}"),
            ("set_session", "destroy"),
            ("set-session", "regenerate"),
        ]);
        let values = take_set_session(&mut headers);
        assert_eq!(values, ["{\"a\":1}", "regenerate"]);
        assert!(headers.is_empty());
        // A stray spelling alone: removed, and nothing taken.
        let mut headers = map(&[("content-type", "text/plain"), ("Set.Session", "destroy")]);
        assert!(take_set_session(&mut headers).is_empty());
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["content-type"]);
        // Neither: untouched.
        let mut headers = map(&[("content-type", "text/plain"), ("x-set-session", "destroy")]);
        assert!(take_set_session(&mut headers).is_empty());
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn reserved_names_cover_protocol_and_routing_headers() {
        for name in [
            "X-Session",
            "x-session-id",
            "Set-Session",
            "X-Forwarded-For",
            "Cookie",
            "Host",
            "Connection",
        ] {
            assert!(is_reserved_name(name), "{name}");
        }
        assert!(!is_reserved_name("x-user"));
    }
}
