//! The HTTP/1 front of a client connection. Most requests a session proxy
//! sees are `GET`s and `HEAD`s without a body on keep-alive connections:
//! the front reads those itself, hands them to the proxy and writes the
//! answers, in the connection's own task. The first request that is
//! anything else (a body, an upgrade, `HTTP/1.0`, an unusual target, a
//! malformed or oversized head) is handed to hyper, with the bytes already
//! read ([`Replay`]), and hyper serves the connection from there on.
//!
//! Why beside hyper's server: its dispatcher, its service call and the
//! boxed future each request becomes were about a quarter of the user-space
//! work of a session read, for requests that need none of what they do.
//!
//! What the front takes is a strict subset of what hyper takes, read by the
//! same parser (httparse, same settings), so a request is either read here
//! exactly as hyper would read it or reaches hyper untouched; and since no
//! request with any body framing is taken ([`request`]), the front never
//! decides where a request ends beyond its head. Requests may be pipelined:
//! they are answered in order, one at a time.
//!
//! Limits and timeouts are the server's: `server.max_header_bytes` and
//! `server.max_headers` (a head over them goes to hyper, which refuses it
//! with `431`), and the connection's idle watchdog, which sees each request
//! as in flight from its complete head to the end of its response.

mod replay;
mod request;
mod response;
mod response_head;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::live::Live;
use crate::edge::drain::DrainWatch;
use crate::edge::peer::Peer;

pub use replay::Replay;
pub use request::Limits;

use request::{Head, Parsed};

/// Initial size of a connection's read and write buffers (hyper's too).
const BUFFER_SIZE: usize = 8 * 1024;
/// Least free room in the read buffer before a read.
const MIN_READ_ROOM: usize = 1024;

/// What the front needs of a connection.
pub struct Front {
    pub live: Arc<Live>,
    pub peer: Arc<Peer>,
    pub limits: Limits,
}

/// How the front's part of a connection ended.
pub enum Ended {
    /// The connection is done: closed by either side, or failed.
    Closed,
    /// hyper is to serve the rest; these are the bytes read and not served.
    HandOver(Bytes),
}

/// Serves requests on `stream` until it closes, the drain has started at
/// the end of a request, or a request is hyper's. (A connection waiting
/// for a request when the drain starts is closed by its guard, in
/// [`crate::edge`].)
pub async fn serve<S>(stream: &mut S, front: &Front, drain: &DrainWatch) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut read = BytesMut::with_capacity(BUFFER_SIZE);
    let mut out = Vec::with_capacity(BUFFER_SIZE);
    let mut spare = None;
    let mut cached = front.live.cached();
    loop {
        let head = match next_head(stream, &mut read, front.limits, drain, &mut spare).await {
            Next::Head(head) => head,
            Next::Hyper => return Ended::HandOver(read.freeze()),
            Next::Closed => return Ended::Closed,
        };
        let Head {
            request,
            head_only,
            keep_alive,
        } = head;
        let keep_alive = keep_alive && !drain.has_started();
        let busy = front.peer.activity.busy();
        // Each request on the proxy in force when it arrives.
        let proxy = front.live.refresh(&mut cached);
        let response = proxy.handle(request, &front.peer).await;
        let written = response::write(
            stream, &mut out, &mut spare, response, head_only, keep_alive,
        )
        .await;
        drop(busy);
        match written {
            Ok(true) => {}
            Ok(false) => {
                let _ = stream.shutdown().await;
                return Ended::Closed;
            }
            Err(error) => {
                tracing::debug!(peer = %front.peer.addr, %error, "writing a response failed; connection closed");
                return Ended::Closed;
            }
        }
    }
}

// As `Parsed`: no box per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(Head),
    Hyper,
    Closed,
}

/// Reads until `read` starts with a whole request head, and takes it if it
/// is the front's.
async fn next_head<S>(
    stream: &mut S,
    read: &mut BytesMut,
    limits: Limits,
    drain: &DrainWatch,
    spare: &mut Option<HeaderMap>,
) -> Next
where
    S: AsyncRead + Unpin,
{
    if read.is_empty() && drain.has_started() {
        return Next::Closed;
    }
    loop {
        if !read.is_empty() {
            match request::parse(read, limits, spare) {
                Parsed::Taken(head) => return Next::Head(head),
                Parsed::Hyper => return Next::Hyper,
                // Still no end of head within the limit: hyper refuses it.
                Parsed::Partial if read.len() >= limits.max_head_bytes => return Next::Hyper,
                Parsed::Partial => {}
            }
        }
        if read.capacity() - read.len() < MIN_READ_ROOM {
            // Reuses the buffer in place once the last request's header
            // values, which share it, are gone.
            read.reserve(BUFFER_SIZE);
        }
        match stream.read_buf(read).await {
            Ok(0) | Err(_) => return Next::Closed,
            Ok(_) => {}
        }
    }
}

/// For the fuzz targets (feature `fuzzing`): the request the front takes
/// from `bytes` (with the default limits), if it takes one. A head it does
/// not take leaves the bytes as they were, for hyper.
#[cfg(feature = "fuzzing")]
pub fn fuzz_take(bytes: &[u8]) -> Option<http::Request<crate::util::body::ClientBody>> {
    let mut buffer = BytesMut::from(bytes);
    let limits = Limits {
        max_head_bytes: 16 * 1024,
        max_headers: 100,
    };
    match request::parse(&mut buffer, limits, &mut None) {
        Parsed::Taken(head) => {
            assert!(
                buffer.len() < bytes.len(),
                "a taken head consumes its bytes"
            );
            assert_eq!(&bytes[bytes.len() - buffer.len()..], &buffer[..]);
            Some(head.request)
        }
        Parsed::Partial | Parsed::Hyper => {
            assert_eq!(&buffer[..], bytes, "bytes left for hyper are untouched");
            None
        }
    }
}
