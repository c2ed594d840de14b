//! The direct client. Direct exchanges: a `GET` or `HEAD` without a body, to a plain-TCP
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
//!
//! Rooms: [`response`] reads and frames the response head; [`body`]
//! streams the body (lengths, chunks, to the end of the connection) and
//! hands the connection back.

mod body;
mod response;

use std::sync::Arc;

use bytes::BytesMut;
use http::header;
use http::{Method, Request, Response};
use http_body::Body as _;
use tokio::net::TcpStream;

use super::endpoint::Endpoint;
use super::error::ExchangeError;
use super::idle::IdleLists;
use super::UpstreamBody;
use crate::util::additions::Additions;

pub use body::DirectBody;
use response::exchange;

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
    is_direct(request) && request.body().is_end_stream()
}

/// The method and head part of [`eligible`]. A WebSocket handshake (it
/// carries `Upgrade`) is hyper's: only hyper hands a socket over.
fn is_direct<B>(request: &Request<B>) -> bool {
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
pub struct DirectPool {
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

impl DirectPool {
    pub fn new(endpoint: Endpoint, idle: IdleLists<Conn>) -> Self {
        Self {
            shared: Arc::new(Shared { endpoint, idle }),
        }
    }

    /// Sends an [`eligible`] request, as its encoded [`Head`], and returns
    /// the response once its head has arrived; the body is read as it is
    /// polled.
    pub async fn send(&self, head: Head) -> Result<Response<DirectBody>, ExchangeError> {
        loop {
            let (mut conn, reused) = match self.shared.idle.take(|_| true) {
                Some(conn) => (conn, true),
                None => (Box::pin(self.connect()).await?, false),
            };
            match exchange(&mut conn, &head.bytes, head.head_only).await {
                Ok((parts, framing, reusable)) => {
                    let body = DirectBody {
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
    /// The request's head, with the headers `added` after its own.
    pub fn encode(request: &Request<UpstreamBody>, added: &Additions) -> Self {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes();
        let fields = request.headers().len() + added.len();
        let mut out = Vec::with_capacity(256 + fields * 48);
        out.extend_from_slice(request.method().as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // Names and values are valid by construction: no CR, LF or other
        // control byte can be in them.
        for (name, value) in request.headers().iter().chain(added.iter()) {
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
/// For the fuzz targets (feature `fuzzing`): an upstream's bytes through
/// the response-head reader, the framing rule and the chunked decoder. A
/// panic, a hang or unbounded growth is a bug.
#[cfg(feature = "fuzzing")]
pub fn fuzz_response(bytes: &[u8]) {
    let mut buffer = BytesMut::from(bytes);
    if let Ok(Some(head)) = response::parse_head(&mut buffer) {
        let _ = response::framing(&head.parts, false);
        let _ = response::framing(&head.parts, true);
    }
    let mut buffer = BytesMut::from(bytes);
    let mut decoder = body::Chunked::default();
    let mut decoded = 0usize;
    loop {
        match decoder.step(&mut buffer) {
            Ok(body::Step::Data(data)) => decoded += data.len(),
            Ok(body::Step::Progress) => {}
            Ok(body::Step::Short | body::Step::Finished) | Err(_) => break,
        }
        assert!(decoded <= bytes.len(), "decoded more than was read");
    }
}

#[cfg(test)]
mod tests;
