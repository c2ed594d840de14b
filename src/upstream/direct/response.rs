//! One direct exchange on a connection: the request head written, the
//! response head read and parsed (interim responses skipped), and how its
//! body is framed (RFC 9112 §6.3, [`super::super::framing`]).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body::{Chunked, Framing};
use super::{Conn, Failure, MAX_HEADERS, MAX_HEAD_BYTES, READ_SIZE, REUSED_MAP_CAPACITY};
use crate::util::head::{self, BadField, Locator, Span};
use crate::util::tokens;

pub(super) async fn exchange(
    conn: &mut Conn,
    head: &[u8],
    head_only: bool,
) -> Result<(http::response::Parts, Framing, bool), Failure> {
    if !conn.buffer.is_empty() {
        return Err(Failure::Protocol("bytes before the response"));
    }
    conn.stream
        .write_all(head)
        .await
        .map_err(|_| Failure::Silent)?;
    let mut answered = false;
    loop {
        let parsed = loop {
            if conn.buffer.is_empty() {
                // Nothing to parse yet: the first read of an exchange.
            } else if let Some(parsed) = parse_head(&mut conn.buffer)? {
                break parsed;
            }
            if conn.buffer.len() >= MAX_HEAD_BYTES {
                return Err(Failure::Protocol("response head too large"));
            }
            conn.buffer.reserve(READ_SIZE);
            let read = conn.stream.read_buf(&mut conn.buffer).await;
            match read {
                Ok(0) if !answered && conn.buffer.is_empty() => return Err(Failure::Silent),
                Ok(0) => return Err(Failure::Protocol("connection closed in a response head")),
                Ok(_) => {}
                Err(_) if !answered && conn.buffer.is_empty() => return Err(Failure::Silent),
                Err(error) => return Err(Failure::Io(error)),
            }
        };
        answered = true;
        let parts = parsed.parts;
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Failure::Protocol("101 to a request that asked no upgrade"));
        }
        if parts.status.is_informational() {
            continue;
        }
        let (framing, framed_for_reuse) = framing(&parts, head_only)?;
        let reusable = framed_for_reuse && parsed.keep_alive;
        return Ok((parts, framing, reusable));
    }
}

pub(super) struct ParsedHead {
    pub(super) parts: http::response::Parts,
    /// HTTP/1.1 without `Connection: close`.
    pub(super) keep_alive: bool,
}

/// Parses a complete response head off the front of `buffer`; `None` if it
/// is not all there yet.
pub(super) fn parse_head(buffer: &mut BytesMut) -> Result<Option<ParsedHead>, Failure> {
    // Left uninitialised: httparse writes the slots it fills, and only
    // those are read back (`response.headers`).
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        &mut slots,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
        Ok(httparse::Status::Complete(_)) => {
            return Err(Failure::Protocol("response head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Failure::Protocol("too many response headers"))
        }
        Err(_) => return Err(Failure::Protocol("malformed response head")),
    };
    let code = response.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| Failure::Protocol("invalid response status"))?;
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // Where each name and value sits in the head, to slice them out of the
    // frozen head without copying. Checked, not assumed: every slice must
    // lie inside the head (an empty value need not). Offsets fit in `u32`:
    // the head is at most MAX_HEAD_BYTES.
    let locator = Locator::new(buffer, length);
    let count = response.headers.len();
    let mut spans = [(Span::EMPTY, Span::EMPTY); MAX_HEADERS];
    let mut keep_alive = version == Version::HTTP_11;
    for (slot, h) in spans.iter_mut().zip(response.headers.iter()) {
        if h.name.eq_ignore_ascii_case("connection") && tokens::has_element(h.value, "close") {
            keep_alive = false;
        }
        let (Some(name), Some(value)) = (locator.span(h.name.as_bytes()), locator.span(h.value))
        else {
            return Err(Failure::Protocol("malformed response head"));
        };
        *slot = (name, value);
    }
    let head: Bytes = buffer.split_to(length).freeze();
    // Room for the Set-Cookie and Via the proxy may add, so that neither
    // makes the map grow (and rehash) after the fact. And at least
    // REUSED_MAP_CAPACITY: once the response is written, hyper keeps its
    // emptied map for the next request on the connection, to which the
    // proxy adds its own headers.
    let mut headers = HeaderMap::with_capacity((count + 2).max(REUSED_MAP_CAPACITY));
    head::append_fields(&head, &spans[..count], &mut headers).map_err(|bad| match bad {
        BadField::Name => Failure::Protocol("invalid response header name"),
        BadField::Value => Failure::Protocol("invalid response header value"),
    })?;

    let mut parts = Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(ParsedHead { parts, keep_alive }))
}

/// How the response body is delimited, and whether that leaves the
/// connection fit for another request.
pub(super) fn framing(
    parts: &http::response::Parts,
    head_only: bool,
) -> Result<(Framing, bool), Failure> {
    if head_only
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if super::super::framing::chunked(&parts.headers).map_err(Failure::Protocol)? {
        return Ok((Framing::Chunked(Chunked::default()), true));
    }
    let lengths = parts.headers.get_all(header::CONTENT_LENGTH);
    if lengths.iter().next().is_some() {
        let mut length: Option<u64> = None;
        for value in lengths {
            for part in tokens::split_list(value.as_bytes()) {
                if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                    return Err(Failure::Protocol("invalid Content-Length"));
                }
                let parsed: u64 = std::str::from_utf8(part)
                    .ok()
                    .and_then(|p| p.parse().ok())
                    .ok_or(Failure::Protocol("invalid Content-Length"))?;
                if length.is_some_and(|l| l != parsed) {
                    return Err(Failure::Protocol("conflicting Content-Length values"));
                }
                length = Some(parsed);
            }
        }
        return Ok(match length {
            Some(0) => (Framing::Empty, true),
            Some(n) => (Framing::Length(n), true),
            None => (Framing::Empty, true),
        });
    }
    Ok((Framing::UntilClose, false))
}
