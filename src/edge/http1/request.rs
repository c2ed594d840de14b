//! Request heads the front serves itself: parsed with httparse (as hyper
//! parses them), and taken only when they are plainly body-less. Anything
//! else is left unread for hyper.
//!
//! Taken: `GET` or `HEAD`, `HTTP/1.1`, an origin-form target (`/...`), no
//! `Content-Length`, `Transfer-Encoding`, `Upgrade` or `Expect` header,
//! within `server.max_headers` and `server.max_header_bytes`. A request with
//! any body framing at all goes to hyper, so this module never decides
//! where a body ends, and no framing disagreement between the two parsers
//! can arise.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use http::{Method, Request, Uri, Version};

use crate::util::body::ClientBody;
use crate::util::head::{self, Locator, Span};
use crate::util::tokens;

/// Most headers parsed here; a request with more goes to hyper, which
/// applies `server.max_headers` itself.
const MAX_HEADERS: usize = 64;
/// Room left in a request's header map for what the proxy adds
/// (`X-Session-Id`, `X-Session`, field headers, forwarding headers), so
/// that adding them never rehashes the map.
const ADDED_HEADERS: usize = 8;

/// The configured limits on a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

/// A request head the front serves.
pub struct Head {
    pub request: Request<ClientBody>,
    /// `HEAD`: the response has no body, whatever its headers say.
    pub head_only: bool,
    /// The client did not ask to close after this request.
    pub keep_alive: bool,
}

/// What the bytes read so far hold.
// The head moves once per request, straight on to the proxy; a box would
// be an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// A head the front serves; its bytes are gone from the buffer.
    Taken(Head),
    /// Not a whole head yet.
    Partial,
    /// A head (or bytes) for hyper; the buffer is untouched.
    Hyper,
}

/// Reads the request head at the start of `buffer`, if there is a whole
/// one. On [`Parsed::Taken`] the head's bytes are split off the buffer (the
/// header values share them, as hyper's do); otherwise the buffer is left
/// as it was. `spare`: an empty header map to fill, if there is one (the
/// last response's, as hyper reuses it).
pub fn parse(buffer: &mut BytesMut, limits: Limits, spare: &mut Option<HeaderMap>) -> Parsed {
    let mut fields = [(Span::EMPTY, Span::EMPTY); MAX_HEADERS];
    let (length, count, method, target, keep_alive) = {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let length = match request.parse_with_uninit_headers(buffer, &mut slots) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            // Malformed, or more headers than fit here: hyper answers.
            Err(_) => return Parsed::Hyper,
        };
        // Offsets below are u32: a head past 4 GiB (were such a limit
        // configured) is hyper's too.
        let max_head_bytes = limits.max_head_bytes.min(u32::MAX as usize);
        if length > max_head_bytes || request.headers.len() > limits.max_headers {
            return Parsed::Hyper;
        }
        let method = match request.method {
            Some("GET") => Method::GET,
            Some("HEAD") => Method::HEAD,
            _ => return Parsed::Hyper,
        };
        let Some(target) = request.path.filter(|path| path.starts_with('/')) else {
            return Parsed::Hyper;
        };
        if request.version != Some(1) {
            return Parsed::Hyper;
        }
        let locator = Locator::new(buffer, length);
        let mut keep_alive = true;
        for (field, header) in fields.iter_mut().zip(request.headers.iter()) {
            let name = header.name.as_bytes();
            if ["content-length", "transfer-encoding", "upgrade", "expect"]
                .iter()
                .any(|framing| name.eq_ignore_ascii_case(framing.as_bytes()))
            {
                return Parsed::Hyper;
            }
            if name.eq_ignore_ascii_case(b"connection") && asks_to_close(header.value) {
                keep_alive = false;
            }
            let (Some(name), Some(value)) = (locator.span(name), locator.span(header.value)) else {
                return Parsed::Hyper;
            };
            *field = (name, value);
        }
        let Some(target) = locator.span(target.as_bytes()) else {
            return Parsed::Hyper;
        };
        (length, request.headers.len(), method, target, keep_alive)
    };
    let head = buffer.split_to(length).freeze();
    let headers = spare.take().unwrap_or_default();
    match build(&head, method, target, &fields[..count], headers) {
        Some(request) => Parsed::Taken(Head {
            head_only: request.method() == Method::HEAD,
            request,
            keep_alive,
        }),
        None => {
            // Something hyper will refuse with its own answer: give the
            // bytes back, in order.
            let mut whole = BytesMut::with_capacity(head.len() + buffer.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buffer);
            *buffer = whole;
            Parsed::Hyper
        }
    }
}

/// The request, its header values sharing `head`'s bytes, in `headers`
/// (empty). `None` for a target or header name the `http` crate refuses.
fn build(
    head: &Bytes,
    method: Method,
    target: Span,
    fields: &[(Span, Span)],
    mut headers: HeaderMap,
) -> Option<Request<ClientBody>> {
    let uri = Uri::from_maybe_shared(head::slice(head, target)).ok()?;
    headers.reserve(fields.len() + ADDED_HEADERS);
    head::append_fields(head, fields, &mut headers).ok()?;
    let mut request = Request::new(ClientBody::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// True when a `Connection` value has the `close` token.
fn asks_to_close(value: &[u8]) -> bool {
    tokens::has_element(value, "close")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 16 * 1024,
        max_headers: 100,
    };

    fn taken(bytes: &[u8]) -> (Head, BytesMut) {
        let mut buffer = BytesMut::from(bytes);
        match parse(&mut buffer, LIMITS, &mut None) {
            Parsed::Taken(head) => (head, buffer),
            Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
            Parsed::Hyper => panic!("left to hyper: {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn left_to_hyper(bytes: &[u8]) {
        let mut buffer = BytesMut::from(bytes);
        assert!(
            matches!(parse(&mut buffer, LIMITS, &mut None), Parsed::Hyper),
            "taken: {:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(&buffer[..], bytes, "the bytes for hyper were changed");
    }

    #[test]
    fn a_plain_get_is_taken_and_only_its_head_consumed() {
        let (head, rest) = taken(
            b"GET /a/b?c=d HTTP/1.1\r\nHost: app.example\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next",
        );
        let request = head.request;
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/a/b?c=d");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "app.example");
        let twos: Vec<_> = request.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["1", "2"]);
        assert!(head.keep_alive);
        assert!(!head.head_only);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn head_and_connection_close_are_noted() {
        let (head, _) =
            taken(b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(head.head_only);
        assert!(!head.keep_alive);
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        let mut buffer = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n"[..]);
        assert!(matches!(
            parse(&mut buffer, LIMITS, &mut None),
            Parsed::Partial
        ));
        assert_eq!(buffer.len(), 25);
    }

    #[test]
    fn anything_with_a_body_or_out_of_the_ordinary_is_left_to_hyper() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: identity\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nFolded: x\r\n y\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\rX: y\r\n\r\n",
        ] {
            left_to_hyper(head);
        }
    }

    #[test]
    fn heads_over_the_limits_are_left_to_hyper() {
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        left_to_hyper(&many);

        let few = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        let mut buffer = BytesMut::from(&few[..]);
        let strict = Limits {
            max_headers: 2,
            ..LIMITS
        };
        assert!(matches!(
            parse(&mut buffer, strict, &mut None),
            Parsed::Hyper
        ));
        let small = Limits {
            max_head_bytes: few.len() - 1,
            ..LIMITS
        };
        assert!(matches!(
            parse(&mut buffer, small, &mut None),
            Parsed::Hyper
        ));
        assert_eq!(&buffer[..], few);
    }
}
