//! The headers the proxy adds to a request for the upstream (session,
//! forwarding, `Via`), kept beside the client's until the request is sent.
//!
//! Each is appended after the client's headers: the direct client writes
//! them into the request head after the map's, and hyper's client gets
//! them appended to the map. So a request carries the same fields, in the
//! same order per name, whichever client sends it, and the usual request
//! (a direct exchange) spends no hashed insertion on any of them.
//!
//! Appending is the one operation, so the phases add only names absent
//! from the request: those the scrub phase removed from every client (the
//! session headers), those it removed from untrusted peers and the
//! forwarding phase from trusted ones (`X-Forwarded-*`), and `Via`, a list
//! each hop extends.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Where a phase appends a header: the request's [`Additions`], or a
/// response the proxy builds itself.
pub trait AppendHeader {
    fn append_header(&mut self, name: HeaderName, value: HeaderValue);
}

impl AppendHeader for HeaderMap {
    #[inline]
    fn append_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.append(name, value);
    }
}

/// The headers added to one request, in the order they were added.
#[derive(Debug, Default)]
pub struct Additions {
    fields: Vec<(HeaderName, HeaderValue)>,
}

impl Additions {
    /// Room for `fields` headers, so that adding them allocates once.
    #[inline]
    pub fn with_capacity(fields: usize) -> Self {
        Self {
            fields: Vec::with_capacity(fields),
        }
    }

    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.fields.iter().map(|(name, value)| (name, value))
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Appends every header to `headers` (for hyper's client, which sends
    /// a map).
    pub fn append_to(self, headers: &mut HeaderMap) {
        for (name, value) in self.fields {
            headers.append(name, value);
        }
    }
}

impl AppendHeader for Additions {
    #[inline]
    fn append_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.fields.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_appended_after_the_clients_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert("via", HeaderValue::from_static("1.1 edge"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        let mut additions = Additions::with_capacity(2);
        additions.append_header(
            HeaderName::from_static("x-session-id"),
            HeaderValue::from_static("abc"),
        );
        additions.append_header(
            HeaderName::from_static("via"),
            HeaderValue::from_static("1.1 cloakroom"),
        );
        assert_eq!(additions.len(), 2);
        additions.append_to(&mut headers);
        let via: Vec<_> = headers.get_all("via").iter().collect();
        assert_eq!(via, ["1.1 edge", "1.1 cloakroom"]);
        assert_eq!(headers["x-session-id"], "abc");
        assert_eq!(headers["accept"], "*/*");
    }
}
