//! The forward phase: the request to the upstream, its body streamed under
//! the stall timeout, and the response head back; a `101` is accepted only
//! for the WebSocket handshake the client asked for.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use pin_project_lite::pin_project;

use super::context::Outgoing;
use super::error::ProxyError;
use super::upgrade::{Handshake, Tunnel};
use super::Proxy;
use crate::upstream::{ResponseBody, UpstreamError};
use crate::util::body::IdleTimeout;

impl Proxy {
    /// Not an `async fn`: the request is consumed (handed to the upstream
    /// client) before the future is made, so the future holds the exchange
    /// and no copy of the request; the request's own future, which holds
    /// this one, stays small.
    #[inline]
    pub(super) fn forward(
        &self,
        request: Outgoing,
    ) -> Forwarding<impl Future<Output = Result<Response<ResponseBody>, UpstreamError>> + Send + '_>
    {
        let Outgoing {
            parts,
            body,
            handshake,
            added,
            ..
        } = request;
        let body = IdleTimeout::new(body, self.body_idle_timeout);
        Forwarding {
            started: self.observer.timing().then(Instant::now),
            sending: self.upstream.send(Request::from_parts(parts, body), added),
            handshake,
            tunnel: None,
            upstream_time: None,
        }
    }
}

pin_project! {
    /// The future of [`Proxy::forward`].
    pub(super) struct Forwarding<S> {
        #[pin]
        sending: S,
        handshake: Option<Handshake>,
        tunnel: Option<Tunnel>,
        started: Option<Instant>,
        upstream_time: Option<Duration>,
    }
}

impl<S> Future for Forwarding<S>
where
    S: Future<Output = Result<Response<ResponseBody>, UpstreamError>>,
{
    type Output = Result<Response<ResponseBody>, ProxyError>;

    /// The response head; the tunnel the upstream agreed to, and the time
    /// it took, are kept for [`Forwarding::finish`] (the response is not
    /// moved into a larger value on its way out).
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.sending.poll(cx))?;
        if let Some(started) = this.started.take() {
            *this.upstream_time = Some(started.elapsed());
        }
        *this.tunnel = Handshake::accept(this.handshake.take(), &mut response)?;
        Poll::Ready(Ok(response))
    }
}

impl<S> Forwarding<S> {
    /// The tunnel the upstream agreed to, and how long it took to answer
    /// (measured only when the access log or the metrics use it).
    pub(super) fn finish(self: Pin<&mut Self>) -> (Option<Tunnel>, Option<Duration>) {
        let this = self.project();
        (this.tunnel.take(), *this.upstream_time)
    }
}
