//! The forwarding headers (`X-Forwarded-For`, `-Proto`, `-Host`) and the
//! peer address as a header value: set afresh for an untrusted peer,
//! extended for a trusted proxy.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue};

use crate::domain::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::util::additions::AppendHeader;
use crate::util::tokens;

/// Facts about the client connection the forwarding headers are built from.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The peer address, as a header value (made once per connection).
    pub peer: &'a HeaderValue,
    /// The peer is a configured trusted proxy.
    pub trusted: bool,
    /// The scheme the client used to reach us (`http` until TLS exists).
    pub proto: &'static str,
}

/// True when the request reached the client side over HTTPS according to
/// the nearest trusted proxy (the last value of `X-Forwarded-Proto`).
pub fn forwarded_https(headers: &HeaderMap, trusted: bool) -> bool {
    trusted
        && headers
            .get_all(X_FORWARDED_PROTO)
            .iter()
            .next_back()
            .and_then(|v| tokens::split_list(v.as_bytes()).next_back())
            .is_some_and(|v| v.eq_ignore_ascii_case(b"https"))
}

/// Adds `X-Forwarded-For`, `-Proto` and `-Host` to `added`. From a
/// trusted proxy the chain is extended (its copy taken out of `headers`)
/// and its proto and host kept; from anyone else (whose copies were
/// scrubbed) they are set afresh.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    added: &mut impl AppendHeader,
    fwd: Forwarding<'_>,
    host: Option<&HeaderValue>,
) {
    let mut chain = fwd.peer.clone();
    if fwd.trusted && headers.contains_key(X_FORWARDED_FOR) {
        let earlier: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if let (false, Ok(peer)) = (earlier.is_empty(), fwd.peer.to_str()) {
            if let Ok(extended) = HeaderValue::from_str(&format!("{}, {peer}", earlier.join(", ")))
            {
                chain = extended;
            }
        }
        headers.remove(X_FORWARDED_FOR);
    }
    added.append_header(X_FORWARDED_FOR, chain);
    if !(fwd.trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        added.append_header(X_FORWARDED_PROTO, HeaderValue::from_static(fwd.proto));
    }
    if !(fwd.trusted && headers.contains_key(X_FORWARDED_HOST)) {
        if let Some(host) = host {
            added.append_header(X_FORWARDED_HOST, host.clone());
        }
    }
}

/// The peer address as an `X-Forwarded-For` value.
pub fn address_header(addr: IpAddr) -> HeaderValue {
    // An IP address prints as ASCII digits, dots, colons and hex letters.
    HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::additions::Additions;

    /// The request's headers as the upstream receives them.
    fn forwarded(
        mut headers: HeaderMap,
        fwd: Forwarding<'_>,
        host: Option<&HeaderValue>,
    ) -> HeaderMap {
        let mut added = Additions::default();
        add_forwarding(&mut headers, &mut added, fwd, host);
        added.append_to(&mut headers);
        headers
    }

    #[test]
    fn untrusted_peers_get_fresh_forwarding_headers() {
        let peer = HeaderValue::from_static("10.1.2.3");
        let fwd = Forwarding {
            peer: &peer,
            trusted: false,
            proto: "http",
        };
        let host = HeaderValue::from_static("app.example");
        let headers = forwarded(HeaderMap::new(), fwd, Some(&host));
        assert_eq!(headers[X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "app.example");
    }

    #[test]
    fn trusted_peers_extend_the_chain_and_keep_proto() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let peer = HeaderValue::from_static("10.0.0.1");
        let fwd = Forwarding {
            peer: &peer,
            trusted: true,
            proto: "http",
        };
        let host = HeaderValue::from_static("app.example");
        let headers = forwarded(headers, fwd, Some(&host));
        let chain: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(chain, ["1.1.1.1, 10.0.0.1"]);
        let proto: Vec<_> = headers.get_all(X_FORWARDED_PROTO).iter().collect();
        assert_eq!(proto, ["https"]);
        assert_eq!(headers[X_FORWARDED_HOST], "app.example");
    }

    #[test]
    fn a_trusted_proxys_chain_in_several_fields_becomes_one() {
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("2.2.2.2, 3.3.3.3"),
        );
        headers.insert(X_FORWARDED_HOST, HeaderValue::from_static("public.example"));
        let peer = HeaderValue::from_static("10.0.0.1");
        let fwd = Forwarding {
            peer: &peer,
            trusted: true,
            proto: "https",
        };
        let host = HeaderValue::from_static("app.example");
        let headers = forwarded(headers, fwd, Some(&host));
        let chain: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(chain, ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1"]);
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        let hosts: Vec<_> = headers.get_all(X_FORWARDED_HOST).iter().collect();
        assert_eq!(hosts, ["public.example"]);
    }

    #[test]
    fn https_is_read_from_the_nearest_trusted_hop_only() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https, http"));
        assert!(!forwarded_https(&headers, true));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http, https"));
        assert!(forwarded_https(&headers, true));
        assert!(!forwarded_https(&headers, false));
    }
}
