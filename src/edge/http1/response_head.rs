//! Response heads as the HTTP/1 front writes them: status line, headers,
//! the framing the front chose ([`Framing`]), `Connection` and `Date`.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::StatusCode;

use crate::util::date;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body may follow.
    None,
    Length(u64),
    Chunked,
}

/// The status line and headers, then the framing, `Date` (when the
/// response has none) and `Connection: close` (when the connection ends
/// after it), and the blank line.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // A `HEAD` or `304` response's length describes the resource.
    let keeps_length = framing == Framing::None && status != StatusCode::NO_CONTENT;
    let mut dated = false;
    for (name, value) in headers {
        match *name {
            header::CONTENT_LENGTH if !keeps_length => continue,
            // The framing and the connection are this hop's to say.
            header::TRANSFER_ENCODING | header::CONNECTION => continue,
            header::DATE => dated = true,
            _ => {}
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            push_number(out, length, 10);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
    if !dated {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if let Some(date) = date::imf_fixdate(now) {
            out.extend_from_slice(b"date: ");
            out.extend_from_slice(&date);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `number` in `base` (10 or 16, lowercase): the formatter's
/// machinery costs more than the rest of a small response head.
pub(super) fn push_number(out: &mut Vec<u8>, mut number: u64, base: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(number % base) as usize];
        number /= base;
        if number == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The `Content-Length` a response came with: one valid value, or several
/// equal ones. `None` otherwise (the body is then chunked).
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let text = value.to_str().ok()?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let this: u64 = text.parse().ok()?;
        if length.is_some_and(|earlier| earlier != this) {
            return None;
        }
        length = Some(this);
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(status: u16, headers: &[(&str, &str)], framing: Framing, keep_alive: bool) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let mut out = Vec::new();
        let status = StatusCode::from_u16(status).unwrap();
        encode_head(&mut out, status, &map, framing, keep_alive);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_framing_is_the_fronts_own() {
        let text = head(
            200,
            &[
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("content-length", "99"),
                ("transfer-encoding", "chunked"),
                ("connection", "keep-alive"),
                ("x-a", "1"),
            ],
            Framing::Length(5),
            true,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
        );
        let text = head(502, &[("date", "x")], Framing::Chunked, false);
        assert_eq!(
            text,
            "HTTP/1.1 502 Bad Gateway\r\ndate: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_bodyless_response_keeps_the_length_it_describes() {
        let text = head(
            200,
            &[("date", "x"), ("content-length", "42")],
            Framing::None,
            true,
        );
        assert!(text.contains("content-length: 42\r\n"), "{text}");
        let text = head(
            204,
            &[("date", "x"), ("content-length", "42")],
            Framing::None,
            true,
        );
        assert!(!text.contains("content-length"), "{text}");
    }

    #[test]
    fn a_response_without_a_date_gets_one() {
        let text = head(200, &[], Framing::Length(0), true);
        let date = text
            .lines()
            .find_map(|line| line.strip_prefix("date: "))
            .expect("no date");
        assert_eq!(date.len(), 29, "{date}");
        assert!(date.ends_with(" GMT"), "{date}");
    }

    #[test]
    fn numbers_are_written_in_decimal_and_hex() {
        for (number, decimal, hex) in [
            (0, "0", "0"),
            (9, "9", "9"),
            (10, "10", "a"),
            (255, "255", "ff"),
            (16 * 1024, "16384", "4000"),
            (u64::MAX, "18446744073709551615", "ffffffffffffffff"),
        ] {
            let mut out = Vec::new();
            push_number(&mut out, number, 10);
            assert_eq!(out, decimal.as_bytes());
            out.clear();
            push_number(&mut out, number, 16);
            assert_eq!(out, hex.as_bytes());
        }
    }

    #[test]
    fn declared_lengths_must_agree() {
        let mut headers = HeaderMap::new();
        assert_eq!(declared_length(&headers), None);
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(declared_length(&headers), Some(12));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(declared_length(&headers), Some(12));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("13"));
        assert_eq!(declared_length(&headers), None);
        let mut headers = HeaderMap::new();
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("+12"));
        assert_eq!(declared_length(&headers), None);
    }
}
