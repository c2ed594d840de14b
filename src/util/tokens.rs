//! Comma-separated header lists (RFC 9110 §5.6.1), split in one place:
//! `Connection`, `Transfer-Encoding`, `Upgrade`, `Content-Length`,
//! `X-Forwarded-Proto` and the like.

use http::header::{AsHeaderName, HeaderMap};

/// The elements of one field value, trimmed of optional white space,
/// empty ones included (for the rare list where an empty element is an
/// error, as in `Content-Length`).
#[inline]
pub fn split_list(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// The non-empty elements of one field value, trimmed.
#[inline]
pub fn elements(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    split_list(value).filter(|element| !element.is_empty())
}

/// The non-empty elements of every `name` field in `headers`, in order.
#[inline]
pub fn header_elements<K: AsHeaderName>(
    headers: &HeaderMap,
    name: K,
) -> impl DoubleEndedIterator<Item = &[u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| elements(value.as_bytes()))
}

/// Whether one field value lists `token` (ASCII case-insensitive).
#[inline]
pub fn has_element(value: &[u8], token: &str) -> bool {
    elements(value).any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, CONNECTION};

    #[test]
    fn elements_are_trimmed_and_empty_ones_skipped() {
        let found: Vec<&[u8]> = elements(b" close ,, Upgrade\t,").collect();
        assert_eq!(found, [&b"close"[..], b"Upgrade"]);
        let raw: Vec<&[u8]> = split_list(b"1, ,2").collect();
        assert_eq!(raw, [&b"1"[..], b"", b"2"]);
    }

    #[test]
    fn every_field_of_a_name_is_read_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("keep-alive, x-a"));
        headers.append(CONNECTION, HeaderValue::from_static("x-b"));
        let found: Vec<&[u8]> = header_elements(&headers, CONNECTION).collect();
        assert_eq!(found, [&b"keep-alive"[..], b"x-a", b"x-b"]);
        assert_eq!(
            header_elements(&headers, CONNECTION).next_back(),
            Some(&b"x-b"[..])
        );
        assert!(has_element(b"Keep-Alive, Close", "close"));
        assert!(!has_element(b"closed", "close"));
    }
}
