//! Bodies in flight: streamed, never buffered whole, and cut off when they
//! stall.
//!
//! [`IdleTimeout`] wraps a streaming body and fails it when no frame arrives
//! for the configured time, so a client trickling an upload (or an upstream
//! stalling mid-response) cannot hold a connection and its upstream
//! connection forever. The timer is allocated only when the body actually
//! waits, so bodies that are already complete cost nothing.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a client sends: hyper's streamed body, or none at all for the
/// body-less requests the HTTP/1 front reads itself ([`crate::edge::http1`]).
pub enum ClientBody {
    Streamed(Incoming),
    Empty,
}

/// A client's request body broke off or was malformed (a bad chunk size,
/// a bare LF, more data than announced): the client's fault, whoever
/// notices it while reading.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub struct ClientBodyFailed(#[source] hyper::Error);

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyFailed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyFailed>>> {
        match self.get_mut() {
            // A client's trailers are not forwarded: they are where reserved
            // headers could hide from the scrub phase, and browsers send
            // none. They end the body.
            Self::Streamed(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => Poll::Ready(None),
                polled => polled.map_err(ClientBodyFailed),
            },
            Self::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Streamed(body) => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Streamed(body) => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("body made no progress for {0:?}")]
pub struct BodyStalled(Duration);

pin_project! {
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        idle: Duration,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(timer) = this.timer.as_mut() {
                    timer.as_mut().reset(Instant::now() + *this.idle);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = *this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyStalled(idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Yields one frame, then waits forever: a stalled peer.
    struct OneThenStall(Option<Bytes>);

    impl Body for OneThenStall {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_idle_time() {
        let mut body = IdleTimeout::new(
            OneThenStall(Some(Bytes::from_static(b"a"))),
            Duration::from_secs(5),
        );
        assert!(body.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyStalled>());
        assert!(started.elapsed() >= Duration::from_secs(5));
    }
}
