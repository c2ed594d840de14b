//! The upstream connection pool: keep-alive HTTP/1.1 connections to the one
//! upstream, built on hyper's low-level client.
//!
//! Why our own pool rather than hyper-util's generic client: with a single
//! upstream there is no pool key to hash, and a connection goes back to the
//! pool when the response body it carried is finished (when that body is
//! dropped), instead of through a task spawned per request. That is work
//! saved on every request.
//!
//! Idle connections wait in [`super::idle`]'s per-worker lists.
//!
//! An `https://` upstream gets a TLS session on each new connection, under
//! the same `connect_timeout` as the TCP connect, with the client
//! configuration built once at start-up. After that, plain and TLS
//! connections are the same `SendRequest`: the pool and every request are
//! untouched by the difference.
//!
//! Connections are driven with upgrades enabled, for WebSocket tunnels. A
//! connection that answered `101 Switching Protocols` belongs to its tunnel
//! from then on and never returns to the pool.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use super::endpoint::Endpoint;
use super::error::ExchangeError;
use super::idle::IdleLists;
use super::UpstreamBody;

/// What an https upstream's connections need, built once: the connector
/// shares the client configuration; each new connection (never a request)
/// clones the name.
pub struct TlsTarget {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

struct Shared {
    endpoint: Endpoint,
    tls: Option<TlsTarget>,
    idle: IdleLists<SendRequest<UpstreamBody>>,
}

impl Shared {
    fn put(&self, sender: SendRequest<UpstreamBody>) {
        if !sender.is_closed() {
            self.idle.put(sender);
        }
    }

    fn take(&self) -> Option<SendRequest<UpstreamBody>> {
        self.idle.take(|sender| !sender.is_closed())
    }
}

#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    pub fn new(
        endpoint: Endpoint,
        tls: Option<TlsTarget>,
        idle: IdleLists<SendRequest<UpstreamBody>>,
    ) -> Self {
        let shared = Shared {
            endpoint,
            tls,
            idle,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Sends the request on an idle connection, or a new one. A pooled
    /// connection the upstream closed meanwhile fails before anything is
    /// sent; the request is then tried on the next one.
    pub async fn send(
        &self,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, ExchangeError> {
        loop {
            let (mut sender, reused) = match self.shared.take() {
                Some(sender) => (sender, true),
                // Boxed: the connect state (TCP, TLS, HTTP handshake) is
                // large, rarely needed, and would otherwise be part of every
                // request's future, copied with it.
                None => (Box::pin(self.connect()).await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(self.shared.endpoint.reset());
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // What the direct client refuses, hyper's must too.
                    if let Err(problem) = super::framing::chunked(response.headers()) {
                        return Err(ExchangeError::Protocol(problem));
                    }
                    let shared = self.shared.clone();
                    let reusable = response.status() != StatusCode::SWITCHING_PROTOCOLS;
                    return Ok(response.map(|body| PooledBody {
                        inner: body,
                        sender: Some(sender),
                        shared,
                        finished: false,
                        reusable,
                    }));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, ExchangeError> {
        self.shared.endpoint.within(self.open()).await
    }

    /// TCP connect, then TLS for an https upstream, then the HTTP/1.1
    /// handshake.
    async fn open(&self) -> Result<SendRequest<UpstreamBody>, ExchangeError> {
        let endpoint = &self.shared.endpoint;
        let stream = endpoint.tcp().await?;
        match &self.shared.tls {
            None => handshake(stream).await,
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .map_err(|e| ExchangeError::Tls(endpoint.target.clone(), e))?;
                handshake(stream).await
            }
        }
    }
}

/// The HTTP/1.1 handshake on a connected stream; the connection is driven
/// by its own task.
async fn handshake<S>(stream: S) -> Result<SendRequest<UpstreamBody>, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        // As on the client side (see `server`): one buffer, one `write`.
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// An upstream response body that hands its connection back to the pool
/// once it has been read to the end. A body dropped half-read takes its
/// connection down with it: the rest of the message is still on the wire.
pub struct PooledBody {
    inner: Incoming,
    sender: Option<SendRequest<UpstreamBody>>,
    shared: Arc<Shared>,
    finished: bool,
    /// False after a `101`: the connection is the tunnel's now.
    reusable: bool,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            // Trailers end a chunked body: the writer need not poll again
            // for the end, and the connection is done with this response.
            Poll::Ready(None) => self.finished = true,
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => self.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.reusable && (self.finished || self.inner.is_end_stream()) {
            if let Some(sender) = self.sender.take() {
                self.shared.put(sender);
            }
        }
    }
}
