//! How an upstream response's body is framed, by RFC 9112 §6.3, the same
//! rule for both clients: `Transfer-Encoding` must be `chunked` alone, and
//! never beside a `Content-Length`.

use http::header::{self, HeaderMap};

use crate::util::tokens;

/// Whether the response is chunked (`Ok(true)`), framed some other way
/// (`Ok(false)`: a length, or the end of the connection), or framed in a
/// way that is not forwarded (`Err`, with the problem).
///
/// Both framings at once may be an attempt at response splitting, which
/// RFC 9112 §6.3 says ought to be an error; a coding other than chunked
/// would reach the client still encoded, its `Transfer-Encoding` gone as
/// hop-by-hop. Neither is forwarded.
#[inline]
pub(super) fn chunked(headers: &HeaderMap) -> Result<bool, &'static str> {
    if !headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(false);
    }
    let last = tokens::header_elements(headers, header::TRANSFER_ENCODING).next_back();
    match last {
        Some(coding) if !coding.eq_ignore_ascii_case(b"chunked") => {
            Err("a transfer coding other than chunked")
        }
        None => Err("a transfer coding other than chunked"),
        Some(_) if headers.contains_key(header::CONTENT_LENGTH) => {
            Err("Content-Length beside Transfer-Encoding")
        }
        Some(_) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_chunked_alone_is_chunked() {
        assert_eq!(chunked(&headers(&[])), Ok(false));
        assert_eq!(chunked(&headers(&[("content-length", "3")])), Ok(false));
        assert_eq!(
            chunked(&headers(&[("transfer-encoding", "Chunked")])),
            Ok(true)
        );
        assert!(chunked(&headers(&[("transfer-encoding", "gzip")])).is_err());
        assert!(chunked(&headers(&[("transfer-encoding", "")])).is_err());
        assert!(chunked(&headers(&[
            ("transfer-encoding", "chunked"),
            ("content-length", "4")
        ]))
        .is_err());
    }
}
