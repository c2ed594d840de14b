//! Responses the front writes: the status line and headers in one buffer,
//! framed as hyper's server frames them, with the first body bytes in the
//! same `write` when they are already there.
//!
//! Framing: no body after `HEAD`, `204` and `304` (their `Content-Length`,
//! if any, passes through for `HEAD` and `304`, where it describes the
//! resource); otherwise the body's exact length, else the `Content-Length`
//! it came with, else chunked. A body that ends short of its length, yields
//! more than it, or fails, closes the connection: the client sees a
//! truncated response, never a response that runs into the next one.

use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::response_head::{declared_length, encode_head, push_number, Framing};
use crate::proxy::ProxyBody;

/// Body frames up to this size are copied behind the head and go out in
/// the same `write`; larger ones are written on their own.
const COPY_AT_MOST: usize = 16 * 1024;
/// Queued bytes that are written out even while the body has more ready.
const FLUSH_AT: usize = 64 * 1024;

/// Writes `response` to the client. `out` is the connection's write
/// buffer, reused from response to response; the response's header map,
/// emptied, goes to `spare` for the next request. Returns whether the
/// connection can carry another request: `keep_alive`, unless the body
/// could not be sent whole.
pub async fn write<S>(
    stream: &mut S,
    out: &mut Vec<u8>,
    spare: &mut Option<HeaderMap>,
    response: Response<ProxyBody>,
    head_only: bool,
    keep_alive: bool,
) -> std::io::Result<bool>
where
    S: AsyncWrite + Unpin,
{
    // Never interim: the proxy's responder makes sure of that.
    let (mut parts, body) = response.into_parts();
    let status = parts.status;
    let framing =
        if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::None
        } else if let Some(length) = body.size_hint().exact() {
            Framing::Length(length)
        } else if let Some(length) = declared_length(&parts.headers) {
            Framing::Length(length)
        } else {
            Framing::Chunked
        };

    out.clear();
    encode_head(out, status, &parts.headers, framing, keep_alive);
    parts.headers.clear();
    *spare = Some(parts.headers);
    if framing == Framing::None {
        drop(body);
        flush(stream, out).await?;
        stream.flush().await?;
        return Ok(keep_alive);
    }

    let whole = send_body(stream, out, body, framing).await?;
    Ok(keep_alive && whole)
}

/// Sends `body` behind the head in `out`, framed by `framing` (not
/// [`Framing::None`]). What is ready is queued and goes out when the body
/// has nothing more for now, or once `FLUSH_AT` bytes are queued, so a body
/// is never held whole however fast it arrives. `Ok(false)`: the body was
/// not sent whole, and the connection must close.
async fn send_body<S, B>(
    stream: &mut S,
    out: &mut Vec<u8>,
    body: B,
    framing: Framing,
) -> std::io::Result<bool>
where
    S: AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = pin!(body);
    let mut sent: u64 = 0;
    loop {
        let frame = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Nothing more yet: what is ready goes out meanwhile.
                flush(stream, out).await?;
                body.as_mut().frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Empty frames, and trailers, which HTTP/1 clients did not
                // ask for.
                _ => continue,
            },
            Some(Err(error)) => {
                tracing::debug!(%error, "response body failed; closing the connection");
                let _ = flush(stream, out).await;
                return Ok(false);
            }
        };
        sent = sent.saturating_add(data.len() as u64);
        match framing {
            Framing::Length(length) if sent > length => {
                tracing::warn!(
                    length,
                    "response body longer than its length; closing the connection"
                );
                let _ = flush(stream, out).await;
                return Ok(false);
            }
            Framing::Chunked => {
                push_number(out, data.len() as u64, 16);
                out.extend_from_slice(b"\r\n");
                push_data(stream, out, data).await?;
                out.extend_from_slice(b"\r\n");
            }
            _ => push_data(stream, out, data).await?,
        }
        if out.len() >= FLUSH_AT {
            flush(stream, out).await?;
        }
    }
    let whole = match framing {
        Framing::Length(length) => sent == length,
        Framing::Chunked => {
            out.extend_from_slice(b"0\r\n\r\n");
            true
        }
        Framing::None => true,
    };
    flush(stream, out).await?;
    // A TLS stream may hold the last record back until flushed.
    stream.flush().await?;
    if !whole {
        tracing::debug!("response body ended short of its length; closing the connection");
    }
    Ok(whole)
}

/// Queues `data` behind what `out` holds, or writes both when it is large.
async fn push_data<S>(stream: &mut S, out: &mut Vec<u8>, data: Bytes) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    if data.len() <= COPY_AT_MOST {
        out.extend_from_slice(&data);
        return Ok(());
    }
    flush(stream, out).await?;
    stream.write_all(&data).await
}

async fn flush<S>(stream: &mut S, out: &mut Vec<u8>) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that always has `left` more frames of `size` bytes ready.
    struct AlwaysReady {
        left: usize,
        size: usize,
    }

    impl Body for AlwaysReady {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            self.left -= 1;
            let frame = Bytes::from(vec![b'x'; self.size]);
            Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
        }
    }

    /// Records the size of every write it is handed.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<usize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes.push(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_body_that_is_always_ready_is_streamed_not_held_whole() {
        let frames = 1024;
        let size = 8 * 1024;
        let total = frames * size;
        for framing in [Framing::Length(total as u64), Framing::Chunked] {
            let mut stream = Recorder::default();
            let mut out = Vec::new();
            let body = AlwaysReady { left: frames, size };
            let whole = send_body(&mut stream, &mut out, body, framing)
                .await
                .unwrap();
            assert!(whole, "{framing:?}");
            let written: usize = stream.writes.iter().sum();
            assert!(written >= total, "{framing:?}: {written} of {total} bytes");
            let largest = stream.writes.iter().max().copied().unwrap_or(0);
            assert!(
                largest < FLUSH_AT + COPY_AT_MOST,
                "{framing:?}: one write of {largest} bytes"
            );
            assert!(
                out.capacity() < 2 * (FLUSH_AT + COPY_AT_MOST),
                "{framing:?}: a buffer of {} bytes",
                out.capacity()
            );
        }
    }

    #[tokio::test]
    async fn a_body_longer_than_its_length_closes_the_connection() {
        let mut stream = Recorder::default();
        let mut out = Vec::new();
        let body = AlwaysReady { left: 3, size: 10 };
        let whole = send_body(&mut stream, &mut out, body, Framing::Length(25))
            .await
            .unwrap();
        assert!(!whole);
        let short = AlwaysReady { left: 2, size: 10 };
        let whole = send_body(&mut stream, &mut out, short, Framing::Length(25))
            .await
            .unwrap();
        assert!(!whole);
    }
}
