//! Simple exchanges: a `GET` or `HEAD` without a body, to a plain-TCP
//! upstream, written and read directly on a pooled connection by the
//! request's own task. Most requests a session proxy sees are these.
//!
//! Why beside hyper's client ([`super::pool`]), which serves everything
//! else (bodies, WebSocket handshakes, `https://` upstreams): hyper drives
//! each connection from a task of its own and hands requests and responses
//! over channels, two task switches and a dispatcher per request. Here the
//! request head is written in one `write` and the response head parsed
//! (`httparse`, as hyper does) where it arrives.
//!
//! The response is framed as RFC 9112 §6.3 says: no body after `HEAD`, 204
//! and 304; `Transfer-Encoding: chunked` is decoded; otherwise a valid
//! `Content-Length`; otherwise the body runs to the end of the connection.
//! 1xx interim responses are skipped. Errors: a `101` (never asked for
//! here), `Content-Length` beside `Transfer-Encoding`, and any transfer
//! coding but chunked. Anything malformed is an error and the connection is
//! dropped; a connection goes back to the pool only after a complete
//! HTTP/1.1 response that did not ask to close, with no byte left over, so
//! no response can ever be read as part of another client's.
//!
//! A pooled connection the upstream closed meanwhile is found out when it
//! answers nothing at all; `GET` and `HEAD` are idempotent (RFC 9110
//! §9.2.2), so the request is then sent again on another connection.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::endpoint::Endpoint;
use super::error::ExchangeError;
use super::idle::IdleLists;
use super::UpstreamBody;
use crate::util::head::{self, BadField, Locator, Span};
use crate::util::tokens;

/// Most response headers accepted, as hyper's client.
const MAX_HEADERS: usize = 100;
/// Largest response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes read (and dropped) after the last chunk.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Fewest headers a response's map has room for: a usual request's
/// headers plus the session and forwarding headers the proxy adds (see
/// [`parse_head`]).
const REUSED_MAP_CAPACITY: usize = 12;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

/// True for the requests this module serves: `GET` or `HEAD`, no body.
pub fn eligible(request: &Request<UpstreamBody>) -> bool {
    is_simple(request) && request.body().is_end_stream()
}

/// The method and head part of [`eligible`]. A WebSocket handshake (it
/// carries `Upgrade`) is hyper's: only hyper hands a socket over.
fn is_simple<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    matches!(*request.method(), Method::GET | Method::HEAD)
        && !headers.contains_key(header::UPGRADE)
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && !headers.contains_key(header::CONTENT_LENGTH)
}

pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buffer: BytesMut,
}

struct Shared {
    endpoint: Endpoint,
    idle: IdleLists<Conn>,
}

#[derive(Clone)]
pub struct SimplePool {
    shared: Arc<Shared>,
}

/// Why an exchange failed.
enum Failure {
    /// Nothing came back on a connection: it was closed before or as the
    /// request went out. Safe to send again elsewhere.
    Silent,
    Io(std::io::Error),
    Protocol(&'static str),
}

impl SimplePool {
    pub fn new(endpoint: Endpoint, idle: IdleLists<Conn>) -> Self {
        Self {
            shared: Arc::new(Shared { endpoint, idle }),
        }
    }

    /// Sends an [`eligible`] request, as its encoded [`Head`], and returns
    /// the response once its head has arrived; the body is read as it is
    /// polled.
    pub async fn send(&self, head: Head) -> Result<Response<SimpleBody>, ExchangeError> {
        loop {
            let (mut conn, reused) = match self.shared.idle.take(|_| true) {
                Some(conn) => (conn, true),
                None => (Box::pin(self.connect()).await?, false),
            };
            match exchange(&mut conn, &head.bytes, head.head_only).await {
                Ok((parts, framing, reusable)) => {
                    let body = SimpleBody {
                        conn: Some(conn),
                        framing,
                        reusable,
                        shared: self.shared.clone(),
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(Failure::Silent) if reused => continue,
                Err(Failure::Silent) => return Err(self.shared.endpoint.reset()),
                Err(Failure::Io(error)) => {
                    return Err(ExchangeError::Exchange(
                        self.shared.endpoint.target.clone(),
                        error,
                    ))
                }
                Err(Failure::Protocol(problem)) => return Err(ExchangeError::Protocol(problem)),
            }
        }
    }

    async fn connect(&self) -> Result<Conn, ExchangeError> {
        let endpoint = &self.shared.endpoint;
        let stream = endpoint.within(endpoint.tcp()).await?;
        Ok(Conn {
            stream,
            buffer: BytesMut::new(),
        })
    }
}

/// A simple request as it goes on the wire: request line, headers, empty
/// line, in one buffer.
pub struct Head {
    bytes: Vec<u8>,
    /// The request is a `HEAD`: no response body follows.
    head_only: bool,
}

impl Head {
    pub fn encode(request: &Request<UpstreamBody>) -> Self {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes();
        let mut out = Vec::with_capacity(256 + request.headers().len() * 48);
        out.extend_from_slice(request.method().as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // Names and values are valid by construction: no CR, LF or other
        // control byte can be in them.
        for (name, value) in request.headers() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Self {
            bytes: out,
            head_only: request.method() == Method::HEAD,
        }
    }
}

/// Writes the request and reads the final response head.
async fn exchange(
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

struct ParsedHead {
    parts: http::response::Parts,
    /// HTTP/1.1 without `Connection: close`.
    keep_alive: bool,
}

/// Parses a complete response head off the front of `buffer`; `None` if it
/// is not all there yet.
fn parse_head(buffer: &mut BytesMut) -> Result<Option<ParsedHead>, Failure> {
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
fn framing(parts: &http::response::Parts, head_only: bool) -> Result<(Framing, bool), Failure> {
    if head_only
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if super::framing::chunked(&parts.headers).map_err(Failure::Protocol)? {
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

enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// Where the chunked decoder is.
#[derive(Default)]
enum Chunked {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk, this many bytes to go.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; bytes read.
    Trailers(usize),
}

/// What one step of the chunked decoder produced.
enum Step {
    Data(Bytes),
    /// Consumed framing; step again.
    Progress,
    /// More bytes are needed.
    Short,
    Finished,
}

impl Chunked {
    fn step(&mut self, buffer: &mut BytesMut) -> Result<Step, &'static str> {
        match self {
            Self::Size => {
                let Some(line) = take_line(buffer, MAX_CHUNK_LINE)? else {
                    return Ok(Step::Short);
                };
                let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
                if digits.is_empty()
                    || digits.len() > 15
                    || !digits.iter().all(u8::is_ascii_hexdigit)
                {
                    return Err("invalid chunk size");
                }
                let size = digits.iter().fold(0u64, |size, &digit| {
                    size * 16 + u64::from((digit as char).to_digit(16).unwrap_or(0))
                });
                *self = if size == 0 {
                    Self::Trailers(0)
                } else {
                    Self::Data(size)
                };
                Ok(Step::Progress)
            }
            Self::Data(remaining) => {
                if buffer.is_empty() {
                    return Ok(Step::Short);
                }
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = Self::DataEnd;
                }
                Ok(Step::Data(buffer.split_to(take).freeze()))
            }
            Self::DataEnd => {
                if buffer.len() < 2 {
                    return Ok(Step::Short);
                }
                if &buffer[..2] != b"\r\n" {
                    return Err("chunk data not followed by CRLF");
                }
                buffer.advance(2);
                *self = Self::Size;
                Ok(Step::Progress)
            }
            Self::Trailers(read) => {
                let Some(line) = take_line(buffer, MAX_TRAILER_BYTES)? else {
                    return Ok(Step::Short);
                };
                if line.is_empty() {
                    return Ok(Step::Finished);
                }
                *read += line.len() + 2;
                if *read > MAX_TRAILER_BYTES {
                    return Err("trailers too large");
                }
                Ok(Step::Progress)
            }
        }
    }
}

/// One CRLF-terminated line off the front of `buffer`, without its CRLF;
/// `None` until it is complete. A bare LF is an error.
fn take_line(buffer: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, &'static str> {
    let Some(at) = buffer.iter().position(|&b| b == b'\n') else {
        return if buffer.len() > limit {
            Err("line too long")
        } else {
            Ok(None)
        };
    };
    if at == 0 || buffer[at - 1] != b'\r' {
        return Err("line not ended by CRLF");
    }
    let line = buffer.split_to(at + 1).freeze();
    Ok(Some(line.slice(..at - 1)))
}

/// The body of a simple exchange, read off its connection as it is polled.
/// The connection returns to the pool once the body is complete (and the
/// response allowed it); dropped half-read, it is closed.
pub struct SimpleBody {
    conn: Option<Conn>,
    framing: Framing,
    reusable: bool,
    shared: Arc<Shared>,
}

impl SimpleBody {
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.buffer.is_empty() {
                self.shared.idle.put(conn);
            }
        }
    }

    /// Reads more from the connection; `Ok(false)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        loop {
            conn.buffer.reserve(READ_SIZE);
            match conn.stream.try_read_buf(&mut conn.buffer) {
                Ok(read) => return Poll::Ready(Ok(read > 0)),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    ready!(conn.stream.poll_read_ready(cx))?;
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

/// A body that ended before its framing said it would.
fn cut_short(problem: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, problem)
}

impl Body for SimpleBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            let buffered = this.conn.as_ref().map_or(0, |c| c.buffer.len());
            match &mut this.framing {
                Framing::Empty | Framing::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(remaining) if buffered > 0 => {
                    let Some(conn) = this.conn.as_mut() else {
                        return Poll::Ready(None);
                    };
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(buffered);
                    *remaining -= take as u64;
                    let data = conn.buffer.split_to(take).freeze();
                    if *remaining == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::UntilClose if buffered > 0 => {
                    let Some(conn) = this.conn.as_mut() else {
                        return Poll::Ready(None);
                    };
                    let data = conn.buffer.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(decoder) if buffered > 0 => {
                    let Some(conn) = this.conn.as_mut() else {
                        return Poll::Ready(None);
                    };
                    match decoder.step(&mut conn.buffer) {
                        Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Step::Progress) => continue,
                        Ok(Step::Finished) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(Step::Short) => {}
                        Err(problem) => {
                            this.conn = None;
                            return Poll::Ready(Some(Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                problem,
                            ))));
                        }
                    }
                }
                _ => {}
            }
            // Nothing (or too little) buffered: read more.
            match ready!(this.poll_fill(cx)) {
                Ok(true) => continue,
                Ok(false) => {
                    if matches!(this.framing, Framing::UntilClose) {
                        this.reusable = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    this.conn = None;
                    return Poll::Ready(Some(Err(cut_short(
                        "upstream closed the connection inside a response body",
                    ))));
                }
                Err(error) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Empty | Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty | Framing::Done => SizeHint::with_exact(0),
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            Framing::Chunked(_) | Framing::UntilClose => SizeHint::default(),
        }
    }
}

impl Drop for SimpleBody {
    fn drop(&mut self) {
        if matches!(self.framing, Framing::Empty) {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests;
