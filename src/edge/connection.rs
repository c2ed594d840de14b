//! One accepted connection, served until it ends or drains: the HTTP/1
//! front first, hyper's HTTP/1 server for what the front hands over, or
//! hyper's HTTP/2 server; with the idle watchdog and the drain as its guard.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder as Http1Builder;
use hyper::server::conn::http2::Builder as Http2Builder;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::drain::{Drain, DrainWatch};
use super::guard::WhenWoken;
use super::http1::{self, Ended, Front, Replay};
use super::live::Live;
use super::peer::InFlight;
use super::peer::Peer;
use super::send_stall::SendStall;
use super::watchdog::{self, Tracked};
use crate::config::ServerConfig;
use crate::proxy::ProxyBody;
use crate::util::body::ClientBody;

/// Most concurrent HTTP/2 streams per connection.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// hyper's HTTP/1 server, for the connections the front hands over.
pub(super) fn http1_builder(config: &ServerConfig) -> Http1Builder {
    let mut builder = Http1Builder::new();
    builder
        // `server.header_read_timeout` is the watchdog's: hyper's own would
        // arm a timer per request.
        .header_read_timeout(None)
        .max_buf_size(config.max_header_bytes)
        .max_headers(config.max_headers)
        // One buffer and one `write` per response head with a small body,
        // rather than a queue of buffers for `writev`: less work per
        // response; a large body costs a copy into the buffer.
        .writev(false)
        .keep_alive(true);
    builder
}

pub(super) fn http2_builder(config: &ServerConfig) -> Http2Builder<TokioExecutor> {
    let mut builder = Http2Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // Also bounds the CONTINUATION frames of one header block to what
        // this size needs (h2 allows at least 5): a header block that never
        // ends is a GOAWAY, not a buffer that grows (CVE-2024-27316).
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        // Rapid reset (CVE-2023-44487): streams the client cancelled that
        // wait, unserved, at the same time.
        .max_pending_accept_reset_streams(Some(64))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// What serving a connection needs, built once at start-up.
pub(super) struct Builders {
    pub(super) http1: Http1Builder,
    pub(super) http2: Http2Builder<TokioExecutor>,
    pub(super) limits: http1::Limits,
    /// `server.fast_paths`: HTTP/1 connections start on the front (off:
    /// hyper serves them from the first byte).
    pub(super) front: bool,
}

/// One accepted connection, ready to be served once its transport (plain
/// TCP or TLS) is up.
pub(super) struct Connection {
    pub(super) live: Arc<Live>,
    pub(super) peer: Arc<Peer>,
    pub(super) builders: Arc<Builders>,
    pub(super) drain: Arc<Drain>,
    /// `server.header_read_timeout`, enforced on HTTP/1 by the watchdog.
    pub(super) idle_limit: Duration,
    /// `server.body_idle_timeout`: how long a write to a client that reads
    /// nothing may wait ([`SendStall`]).
    pub(super) send_limit: Duration,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 (told apart by the preface, which over
    /// TLS follows the ALPN choice) until the connection ends or drains.
    /// `http2`: what the preface or ALPN announced. HTTP/1 goes to the
    /// [`http1`] front first, and to hyper if the front hands it over; an
    /// HTTP/1 connection is closed by the [`watchdog`] once it is quiet
    /// for `idle_limit`.
    pub(super) async fn serve<S>(self, stream: S, http2: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            live,
            peer,
            builders,
            drain,
            idle_limit,
            send_limit,
        } = self;
        let stream = SendStall::new(stream, send_limit);
        // Made on the worker that runs the connection: its drain channel.
        let mut hyper_drain = drain.watch();
        if http2 {
            let service = hyper_service(live, peer);
            let connection = builders
                .http2
                .serve_connection(TokioIo::new(stream), service);
            let ended =
                until_drained(connection, &mut hyper_drain, |c| c.graceful_shutdown()).await;
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
            return;
        }
        let activity = peer.clone();
        let front = Front {
            live,
            peer,
            limits: builders.limits,
        };
        let front_drain = drain.watch();
        let mut guard_drain = drain.watch();
        let serving = async {
            let mut stream = stream;
            let served = if builders.front {
                http1::serve(&mut stream, &front, &front_drain).await
            } else {
                Ended::HandOver(Bytes::new())
            };
            match served {
                Ended::Closed => Ok(()),
                Ended::HandOver(read) => {
                    let Front { live, peer, .. } = front;
                    let service = hyper_service(live, peer);
                    let io = TokioIo::new(Replay::new(read, stream));
                    let connection = builders.http1.serve_connection(io, service).with_upgrades();
                    until_drained(connection, &mut hyper_drain, |c| c.graceful_shutdown()).await
                }
            }
        };
        // The guard: polled only when its timer or the drain wakes it, not
        // on each of the connection's wake-ups.
        let guard = WhenWoken::new(async {
            tokio::select! {
                () = watchdog::quiet_for(&activity.activity, idle_limit) => Close::Quiet,
                () = guard_drain.started() => Close::Drain,
            }
        });
        let mut serving = pin!(serving);
        let ended = tokio::select! {
            biased;
            ended = serving.as_mut() => ended,
            close = guard => match close {
                Close::Quiet => {
                    tracing::debug!(peer = %activity.addr, "no request within the header read timeout; closed");
                    Ok(())
                }
                // Closed at once when idle; a request in flight ends first
                // (the front then closes, hyper shuts down gracefully).
                Close::Drain if activity.activity.is_idle() => Ok(()),
                Close::Drain => serving.await,
            },
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}

/// Why a connection's guard ended it.
enum Close {
    Quiet,
    Drain,
}

/// Drives a hyper connection to its end; once the drain starts, asks it
/// to finish the requests it has and close.
async fn until_drained<C>(
    connection: C,
    drain: &mut DrainWatch,
    graceful_shutdown: fn(Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut connection = pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => return ended,
        // Polled when the drain wakes it, not on each of the connection's
        // wake-ups.
        () = WhenWoken::new(drain.started()) => graceful_shutdown(connection.as_mut()),
    }
    connection.await
}

/// The proxy as a hyper service, for HTTP/2 and for the HTTP/1
/// connections the front hands over.
fn hyper_service(
    live: Arc<Live>,
    peer: Arc<Peer>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Tracked<ProxyBody>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Tracked<ProxyBody>>, Infallible>> + Send + 'static,
> + Send
       + 'static {
    let cached = std::sync::Mutex::new(live.cached());
    service_fn(move |request: Request<Incoming>| {
        // Each request on the proxy in force when it arrives.
        let proxy = {
            let mut cached = cached
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            live.refresh(&mut cached).clone()
        };
        let in_flight = InFlight::start(peer.clone());
        // Boxed: a request's future is a few KiB, and hyper moves it
        // (into its connection state, or into a task per HTTP/2 stream,
        // whose slot is rewritten whole when the stream ends); a box
        // moves as one pointer.
        Box::pin(async move {
            let request = request.map(ClientBody::Streamed);
            let response = proxy.handle(request, in_flight.peer()).await;
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
        })
    })
}
