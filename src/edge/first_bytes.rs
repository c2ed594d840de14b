//! A deadline on the first bytes after the TLS handshake.
//!
//! Over plain TCP the accept loop's task peeks at the first bytes under
//! `server.header_read_timeout`; a TLS stream cannot be peeked. Protocol
//! detection waits for those bytes with no timeout of its own, so a client
//! that completes the handshake and then sends nothing would hold a
//! connection slot forever. [`FirstBytes`] fails the read with `TimedOut`
//! if fewer than `needed` bytes have arrived by the deadline, and then gets
//! out of the way (the HTTP/1 idle watchdog and hyper's HTTP/2 keep-alive
//! cover the rest).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

use crate::util::delegate_write::delegate_write;

pub struct FirstBytes<S> {
    inner: S,
    /// Boxed so that the wrapper stays `Unpin`; gone once enough arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    needed: usize,
}

impl<S> FirstBytes<S> {
    /// `needed` bytes must arrive within `timeout`: the HTTP/2 preface's
    /// length when ALPN chose `h2`, one byte otherwise (from there the
    /// HTTP/1 idle watchdog watches the request head).
    pub fn new(inner: S, needed: usize, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            needed,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return result;
        };
        let read = buf.filled().len() - before;
        this.needed = this.needed.saturating_sub(read);
        if this.needed == 0 {
            this.deadline = None;
            return result;
        }
        if result.is_pending() && deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the header read timeout",
            )));
        }
        result
    }
}

delegate_write!(FirstBytes, inner);
