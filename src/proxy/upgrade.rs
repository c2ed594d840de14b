//! WebSocket handshakes and the tunnels behind them.
//!
//! A handshake goes through every phase like any other request: it is
//! scrubbed, authorised (an anonymous handshake on a protected path gets
//! the normal denial, never a `101`) and carries the session headers to the
//! upstream. What differs:
//! - hop-by-hop removal strips `Upgrade` and `Connection` as for any
//!   request; [`restore`] puts back exactly `Connection: upgrade` and
//!   `Upgrade: websocket`, on the request and on the `101`;
//! - on protected paths the `Origin` may be checked ([`Origins`]);
//! - the tunnel opens only when the upstream really answers `101` with
//!   `Upgrade: websocket`, and only after the commit phase has written any
//!   `Set-Session` to the store;
//! - the tunnel outlives the connection's HTTP serving, so it keeps the
//!   connection's handle ([`super::ClientConnection`]), and with it the connection's slot under
//!   `server.max_connections`, until it closes. The graceful drain waits
//!   for every slot, so for open tunnels too.
//!
//! Only the `websocket` token is honoured. Any other upgrade (`h2c`, …) is
//! served as a plain request, its `Upgrade` removed as hop-by-hop. Over
//! HTTP/2 there is no `Upgrade`, so nothing here applies.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::proxy::error::ProxyError;
use crate::util::tokens;

/// A tunnel through which nothing moved for this long is closed. WebSocket
/// peers ping far more often than this; a dead peer without a FIN does not
/// hold a tunnel forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

const UPGRADE: HeaderValue = HeaderValue::from_static("upgrade");
const WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");

/// The client side of a WebSocket handshake in progress.
pub(super) struct Handshake {
    client: OnUpgrade,
}

/// Both ends of an accepted handshake, ready to be joined.
pub(super) struct Tunnel {
    client: OnUpgrade,
    upstream: OnUpgrade,
}

/// The origins allowed to open WebSockets on protected paths.
pub(super) struct Origins(Vec<String>);

impl Handshake {
    /// The handshake, when `request` is an HTTP/1.1 `GET` asking to upgrade
    /// to `websocket` (and nothing else).
    pub(super) fn take<B>(request: &mut Request<B>) -> Option<Self> {
        let wanted = request.version() == Version::HTTP_11
            && request.method() == Method::GET
            && request.headers().contains_key(header::UPGRADE)
            && is_only_token(request.headers(), header::UPGRADE, "websocket")
            && has_token(request.headers(), header::CONNECTION, "upgrade");
        wanted.then(|| Self {
            client: hyper::upgrade::on(request),
        })
    }

    /// The tunnel, if the upstream accepted the handshake. A `101` must say
    /// `Upgrade: websocket`; any other status is an ordinary answer and the
    /// client's upgrade is dropped with the handshake.
    pub(super) fn accept<B>(
        handshake: Option<Self>,
        response: &mut Response<B>,
    ) -> Result<Option<Tunnel>, ProxyError> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(None);
        }
        let Some(handshake) = handshake else {
            return Err(ProxyError::UpstreamBadSwitch(
                "101 to a request without a WebSocket handshake",
            ));
        };
        if !is_only_token(response.headers(), header::UPGRADE, "websocket") {
            return Err(ProxyError::UpstreamBadSwitch(
                "101 without Upgrade: websocket",
            ));
        }
        Ok(Some(Tunnel {
            client: handshake.client,
            upstream: hyper::upgrade::on(response),
        }))
    }
}

impl Tunnel {
    /// Joins client and upstream once both upgrades are through, until
    /// either side closes or nothing moves for [`IDLE_TIMEOUT`]. `peer` is
    /// held until then: the connection's slot stays taken while the tunnel
    /// is open.
    ///
    /// With a `session`, the tunnel also closes when that session ends
    /// ([`super::tunnels`]).
    pub(super) fn spawn(
        self,
        peer: Arc<dyn std::any::Any + Send + Sync>,
        session: Option<super::tunnels::SessionLink>,
        open: super::tunnels::OpenTunnel,
    ) {
        let idle = IDLE_TIMEOUT;
        tokio::spawn(async move {
            // Dropped when the task ends, however it ends (closed, broken,
            // idle, or the worker stopping after the drain).
            let _peer = peer;
            let _open = open;
            let (client, upstream) = match tokio::try_join!(self.client, self.upstream) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!(%error, "WebSocket upgrade failed");

                    return;
                }
            };
            let start = Instant::now();
            let moved = Arc::new(AtomicU64::new(0));
            let mut client = Watched {
                io: TokioIo::new(client),
                start,
                moved: moved.clone(),
            };
            let mut upstream = TokioIo::new(upstream);
            let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream);
            tokio::pin!(copied);
            let session_ended = async {
                match &session {
                    Some(link) => link.ended().await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(session_ended);
            loop {
                let last = start + Duration::from_millis(moved.load(Ordering::Relaxed));
                tokio::select! {
                    result = &mut copied => {
                        match result {
                            Ok((up, down)) => tracing::debug!(up, down, "WebSocket tunnel closed"),
                            Err(error) => tracing::debug!(%error, "WebSocket tunnel broken"),
                        }
                        return;
                    }
                    () = &mut session_ended => {
                        tracing::debug!("the tunnel's session ended; tunnel closed");
                        return;
                    }
                    // Bytes may have moved while asleep: look again before
                    // closing.
                    () = tokio::time::sleep_until(last + idle) => {
                        let last = start + Duration::from_millis(moved.load(Ordering::Relaxed));
                        if Instant::now() >= last + idle {
                            break;
                        }
                    }
                }
            }
            tracing::debug!(?idle, "idle WebSocket tunnel closed");
        });
    }
}

/// The client side of a tunnel, noting when bytes last moved either way
/// (as milliseconds since the tunnel opened: one atomic store per read or
/// write, no lock).
struct Watched {
    io: TokioIo<Upgraded>,
    start: Instant,
    moved: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        self.moved.store(elapsed_ms(self.start), Ordering::Relaxed);
    }
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Origins {
    pub(super) fn new(allowed: &[String]) -> Self {
        Self(allowed.to_vec())
    }

    /// With origins configured, the handshake's `Origin` must be one of
    /// them; a missing `Origin` is refused too.
    pub(super) fn check(&self, headers: &HeaderMap) -> Result<(), ProxyError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut origins = headers.get_all(header::ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            (Some(origin), None) => origin.to_str().unwrap_or_default(),
            _ => return Err(ProxyError::OriginRefused),
        };
        let origin = origin.trim_end_matches('/');
        if self.0.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            Ok(())
        } else {
            Err(ProxyError::OriginRefused)
        }
    }
}

/// Puts back the upgrade headers hop-by-hop removal took, on a handshake
/// request or an accepted `101`.
pub(super) fn restore(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, UPGRADE);
    headers.insert(header::UPGRADE, WEBSOCKET);
}

/// True when the comma-separated tokens of `name` are exactly `token`.
fn is_only_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    let mut tokens = tokens(headers, name);
    matches!((tokens.next(), tokens.next()), (Some(t), None) if t.eq_ignore_ascii_case(token.as_bytes()))
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &[u8]> {
    tokens::header_elements(headers, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/ws");
        for (name, value) in pairs {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn only_websocket_alone_is_a_handshake() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert!(Handshake::take(&mut request(&ws)).is_some());
        for upgrade in ["h2c", "websocket, h2c", "foo"] {
            let pairs = [("connection", "upgrade"), ("upgrade", upgrade)];
            assert!(Handshake::take(&mut request(&pairs)).is_none(), "{upgrade}");
        }
        assert!(Handshake::take(&mut request(&[("upgrade", "websocket")])).is_none());
    }

    #[test]
    fn origins_match_exactly_when_configured() {
        let none = Origins::new(&[]);
        assert!(none.check(&HeaderMap::new()).is_ok());
        let app = Origins::new(&["https://app.example".to_owned()]);
        let with = |origin: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
            headers
        };
        assert!(app.check(&with("https://APP.example")).is_ok());
        assert!(app.check(&with("https://evil.example")).is_err());
        assert!(app.check(&with("https://app.example.evil")).is_err());
        assert!(app.check(&HeaderMap::new()).is_err());
    }
}
