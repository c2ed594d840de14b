//! A parsed HTTP/1 head (httparse's slices) made into `http` types, the
//! same way for the HTTP/1 front's requests and the direct upstream
//! client's responses: where each name and value lies in the head's bytes,
//! checked rather than assumed, and a `HeaderMap` whose values share the
//! head's bytes (no copy), each name and value checked by the `http`
//! crate.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Where a name or value lies in a head. Offsets are `u32`: heads are
/// bounded far below 4 GiB by the limits that read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    pub const EMPTY: Self = Self { start: 0, end: 0 };

    #[inline]
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Finds the spans of slices of one buffer, the head being its first
/// `length` bytes.
pub struct Locator {
    base: usize,
    length: usize,
}

impl Locator {
    #[inline]
    pub fn new(buffer: &[u8], length: usize) -> Self {
        Self {
            base: buffer.as_ptr() as usize,
            length,
        }
    }

    /// The span of `slice`, which must lie inside the head; an empty slice
    /// may lie anywhere (its span is then empty).
    #[inline]
    pub fn span(&self, slice: &[u8]) -> Option<Span> {
        let within = || {
            let start = (slice.as_ptr() as usize).checked_sub(self.base)?;
            let end = start.checked_add(slice.len())?;
            (end <= self.length).then_some(Span {
                start: u32::try_from(start).ok()?,
                end: u32::try_from(end).ok()?,
            })
        };
        match within() {
            Some(span) => Some(span),
            None if slice.is_empty() => Some(Span::EMPTY),
            None => None,
        }
    }
}

/// The bytes of `span`, sharing `head`'s.
#[inline]
pub fn slice(head: &Bytes, span: Span) -> Bytes {
    head.slice(span.range())
}

/// Why a field could not become a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadField {
    Name,
    Value,
}

/// Appends the fields (name and value spans in `head`) to `headers`.
#[inline]
pub fn append_fields(
    head: &Bytes,
    fields: &[(Span, Span)],
    headers: &mut HeaderMap,
) -> Result<(), BadField> {
    for &(name, value) in fields {
        let name = HeaderName::from_bytes(&head[name.range()]).map_err(|_| BadField::Name)?;
        // httparse has checked the bytes already; the `http` crate checks
        // them again (its unchecked constructor is `unsafe`).
        let value =
            HeaderValue::from_maybe_shared(slice(head, value)).map_err(|_| BadField::Value)?;
        headers.append(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_checked_against_the_head() {
        let buffer = b"Name: value\r\n\r\nbody".to_vec();
        let locator = Locator::new(&buffer, 15);
        let name = locator.span(&buffer[0..4]).unwrap();
        let value = locator.span(&buffer[6..11]).unwrap();
        // Past the head, or in another buffer: refused.
        assert_eq!(locator.span(&buffer[15..19]), None);
        let elsewhere = b"other".to_vec();
        assert_eq!(locator.span(&elsewhere), None);
        // An empty slice from anywhere is an empty span.
        assert_eq!(locator.span(&elsewhere[..0]), Some(Span::EMPTY));
        let head = Bytes::from(buffer);
        let mut headers = HeaderMap::new();
        append_fields(&head, &[(name, value), (name, Span::EMPTY)], &mut headers).unwrap();
        let values: Vec<_> = headers.get_all("name").iter().collect();
        assert_eq!(values, ["value", ""]);
    }

    #[test]
    fn names_and_values_the_http_crate_refuses_are_errors() {
        let head = Bytes::from_static(b"Bad Name\x7fvalue\x00");
        let name = Span { start: 0, end: 8 };
        let good_name = Span { start: 4, end: 8 };
        let bad_value = Span { start: 9, end: 15 };
        let mut headers = HeaderMap::new();
        assert_eq!(
            append_fields(&head, &[(name, Span::EMPTY)], &mut headers),
            Err(BadField::Name)
        );
        assert_eq!(
            append_fields(&head, &[(good_name, bad_value)], &mut headers),
            Err(BadField::Value)
        );
    }
}
