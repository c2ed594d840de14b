//! Serving: the accept loop, one task per connection, HTTP/1.1 and HTTP/2
//! on the same port (by ALPN over TLS, by prior knowledge over plain TCP),
//! limits, and the graceful drain.
//!
//! The library never binds a port or listens for signals: [`run`] takes a
//! bound listener and a shutdown future, so tests run it on `127.0.0.1:0`.
//! [`run_with`] also takes the redirect listener (`server.redirect_http_from`,
//! bound by the caller) and a trigger that reloads the TLS certificates (the
//! binary fires it on SIGHUP).
//!
//! With `[server.tls]`, the TLS handshake runs in the connection's own task
//! under `server.tls.handshake_timeout`, never on the accept loop.
//!
//! Each connection takes a slot (a semaphore permit) under
//! `server.max_connections` before it is accepted, and gives it back when
//! its last user is done: the connection's task, a request still running,
//! or the WebSocket tunnel the connection became. The drain waits for every
//! slot, so for open tunnels as well as for in-flight requests.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder as Http1Builder;
use hyper::server::conn::http2::Builder as Http2Builder;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::body::{ClientBody, ProxyBody};
use crate::config::{Config, ServerConfig, StoreConfig};
use crate::drain::{Drain, DrainWatch};
use crate::error::Error;
use crate::http1::{self, Ended, Front, Replay};
use crate::proxy::{Peer, Proxy};
use crate::send_stall::SendStall;
use crate::store::{AnyStore, MemoryStore, RedisStore};
use crate::tls::first_bytes::FirstBytes;
use crate::tls::{self, Certificates};
use crate::watchdog::{self, InFlight, Tracked};
use crate::woken::WhenWoken;
use crate::workers::Workers;

/// Most concurrent HTTP/2 streams per connection.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// What [`run_with`] takes besides the configuration and the main listener.
#[derive(Debug, Default)]
pub struct Options {
    /// The bound `server.redirect_http_from` socket. The library does not
    /// bind it itself: without it, no redirect listener runs.
    pub redirect_listener: Option<TcpListener>,
    /// Each `notify_one` reloads the TLS certificates now (besides the
    /// polling of the files).
    pub reload: Option<Arc<Notify>>,
    /// The session store, built by [`build_store`] beforehand. The binary
    /// builds it before it binds any port, so a Redis that cannot be
    /// reached stops start-up while nothing listens yet. Without it,
    /// [`run_with`] builds the configured store itself.
    pub store: Option<AnyStore>,
}

/// Aborts a background task when serving ends, however it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds the proxy from `config` and serves `listener` until `shutdown`
/// resolves; then stops accepting and lets in-flight requests finish, and
/// open WebSocket tunnels run, for up to `server.shutdown_grace`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    run_with(config, listener, Options::default(), shutdown).await
}

/// [`run`], plus the redirect listener and the reload trigger.
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let store = match options.store {
        Some(store) => store,
        None => build_store(&config).await?,
    };
    let proxy = Arc::new(Proxy::new(&config, store));
    let mut background = Vec::new();
    let acceptor = match &config.server.tls {
        Some(tls_config) => {
            let certificates = Arc::new(Certificates::new(tls_config.loaded.clone()));
            let acceptor = tls::acceptor(certificates.clone()).map_err(Error::Tls)?;
            background.push(AbortOnDrop(tokio::spawn(tls::reload::watch(
                tls_config.certificates.clone(),
                certificates,
                tls_config.watch_interval,
                options.reload.unwrap_or_default(),
            ))));
            Some(acceptor)
        }
        None => None,
    };
    match (options.redirect_listener, acceptor.is_some()) {
        (Some(redirect), true) => {
            let https_port = listener.local_addr().map_err(Error::Listener)?.port();
            background.push(AbortOnDrop(tokio::spawn(crate::redirect::serve(
                redirect,
                https_port,
                config.server.header_read_timeout,
                config.server.max_connections,
            ))));
        }
        (Some(_), false) => {
            tracing::warn!("a redirect listener was given without [server.tls]; not serving it")
        }
        (None, _) => {
            if let Some(address) = config.server.redirect_http_from {
                tracing::warn!(%address, "server.redirect_http_from is set but no redirect listener was passed to run_with; not redirecting");
            }
        }
    }
    let result = serve(proxy, &config.server, listener, acceptor, shutdown).await;
    drop(background);
    result
}

/// The configured store, connected and verified (Redis answers `PING`)
/// before the first request is accepted. Call it inside the runtime that
/// will serve: the memory store starts its sweeper there.
pub async fn build_store(config: &Config) -> Result<AnyStore, Error> {
    let workers = config.server.workers;
    Ok(match &config.store {
        StoreConfig::Memory {
            max_sessions,
            sweep_interval,
        } => AnyStore::Memory(MemoryStore::new(*max_sessions, *sweep_interval)),
        StoreConfig::Redis(redis) => {
            AnyStore::Redis(RedisStore::connect_per_worker(redis, workers).await?)
        }
    })
}

/// hyper's HTTP/1 server, for the connections the front hands over.
fn http1_builder(config: &ServerConfig) -> Http1Builder {
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

fn http2_builder(config: &ServerConfig) -> Http2Builder<TokioExecutor> {
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

/// The HTTP/2 connection preface, which protocol detection waits for.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Resolves once enough bytes have arrived to tell HTTP/1 from HTTP/2 (or
/// the peer closed), with `true` for the HTTP/2 preface. Peeks only:
/// nothing is consumed.
async fn first_bytes(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buffer = [0u8; H2_PREFACE.len()];
    loop {
        stream.readable().await?;
        let read = stream.peek(&mut buffer).await?;
        if read == 0 || read == buffer.len() || buffer[..read] != H2_PREFACE[..read] {
            return Ok(read == buffer.len() && buffer == H2_PREFACE);
        }
        // A partial HTTP/2 preface: peeking again at once would spin.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve(
    proxy: Arc<Proxy>,
    config: &ServerConfig,
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let builders = Arc::new(Builders {
        http1: http1_builder(config),
        http2: http2_builder(config),
        limits: http1::Limits {
            max_head_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
        },
    });
    let workers = Workers::start(config.workers).map_err(Error::Listener)?;
    let drain = Arc::new(Drain::new(workers.count()));
    // `acquire_many` (the drain) counts in u32; more connections than that
    // cannot be open at once anyway, each needing a file descriptor.
    let slots = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let limit = Arc::new(Semaphore::new(slots as usize));
    let trusted: Arc<[IpNet]> = config.trusted_proxies.clone().into();
    let address = listener.local_addr().map_err(Error::Listener)?;
    tracing::info!(%address, tls = acceptor.is_some(), workers = workers.count(), "listening");
    tokio::pin!(shutdown);
    loop {
        if limit.available_permits() == 0 {
            tracing::warn!(
                max = config.max_connections,
                "connection limit reached; new connections wait"
            );
        }
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.map_err(|_| Error::Listener(std::io::Error::other("connection limiter closed")))?,
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let addr = remote.ip().to_canonical();
        let trusted_peer = trusted.iter().any(|net| net.contains(&addr));
        // The peer holds the slot: for the connection's whole life, and for
        // a WebSocket tunnel's.
        let peer = Arc::new(Peer::new(addr, trusted_peer, acceptor.is_some(), permit));
        let connection = Connection {
            proxy: proxy.clone(),
            peer,
            builders: builders.clone(),
            drain: drain.clone(),
            hsts: config.hsts.clone(),
            idle_limit: config.header_read_timeout,
            send_limit: config.body_idle_timeout,
        };
        let first_bytes_timeout = config.header_read_timeout;
        let handshake = acceptor.clone().map(|acceptor| {
            let timeout = config
                .tls
                .as_ref()
                .map_or(first_bytes_timeout, |tls| tls.handshake_timeout);
            (acceptor, timeout)
        });
        // Registered again with the worker's own reactor when the job starts.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, "could not hand a connection to a worker");
                continue;
            }
        };
        workers.spawn(Box::pin(async move {
            let Ok(stream) = TcpStream::from_std(stream) else {
                return;
            };
            let Some((acceptor, timeout)) = handshake else {
                // Protocol detection reads the first bytes without a timeout of
                // its own: a client that sends nothing must not hold a slot.
                let Ok(announced) =
                    tokio::time::timeout(first_bytes_timeout, first_bytes(&stream)).await
                else {
                    tracing::debug!(peer = %addr, "no request within the header read timeout; closed");
                    return;
                };
                // A failed peek: hyper meets the same error and ends it.
                let http2 = announced.unwrap_or(false);
                return connection.serve(stream, http2).await;
            };
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // A TLS stream cannot be peeked: the first bytes get
                    // their deadline from a wrapper instead.
                    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let needed = if http2 { H2_PREFACE.len() } else { 1 };
                    let stream = FirstBytes::new(stream, needed, first_bytes_timeout);
                    connection.serve(stream, http2).await;
                }
                Ok(Err(error)) => tracing::debug!(peer = %addr, %error, "TLS handshake failed"),
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake not done within the timeout; closed")
                }
            }
        }));
    }
    drop(listener);
    tracing::info!(
        slots_taken = slots as usize - limit.available_permits(),
        "shutting down: draining connections and WebSocket tunnels"
    );
    // Tells every connection to finish its requests and close.
    drain.start();
    let drained = async {
        // Every slot back: no connection and no tunnel is left.
        let _all = limit.acquire_many(slots).await;
    };
    tokio::select! {
        () = drained => tracing::info!("all connections and tunnels drained"),
        () = tokio::time::sleep(config.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections and tunnels"),
    }
    // Stops the workers, dropping whatever still runs on them.
    drop(workers);
    Ok(())
}

/// What serving a connection needs, built once at start-up.
struct Builders {
    http1: Http1Builder,
    http2: Http2Builder<TokioExecutor>,
    limits: http1::Limits,
}

/// One accepted connection, ready to be served once its transport (plain
/// TCP or TLS) is up.
struct Connection {
    proxy: Arc<Proxy>,
    peer: Arc<Peer>,
    builders: Arc<Builders>,
    drain: Arc<Drain>,
    hsts: Option<HeaderValue>,
    /// `server.header_read_timeout`, enforced on HTTP/1 by the watchdog.
    idle_limit: Duration,
    /// `server.body_idle_timeout`: how long a write to a client that reads
    /// nothing may wait ([`SendStall`]).
    send_limit: Duration,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 (told apart by the preface, which over
    /// TLS follows the ALPN choice) until the connection ends or drains.
    /// `http2`: what the preface or ALPN announced. HTTP/1 goes to the
    /// [`http1`] front first, and to hyper if the front hands it over; an
    /// HTTP/1 connection is closed by the [`watchdog`] once it is quiet
    /// for `idle_limit`.
    async fn serve<S>(self, stream: S, http2: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            proxy,
            peer,
            builders,
            drain,
            hsts,
            idle_limit,
            send_limit,
        } = self;
        let stream = SendStall::new(stream, send_limit);
        // Made on the worker that runs the connection: its drain channel.
        let mut hyper_drain = drain.watch();
        // HSTS over TLS only: browsers ignore it over plain HTTP (RFC 6797
        // §8.1). The configured policy replaces one sent by the upstream.
        let hsts = hsts.filter(|_| peer.tls);
        if http2 {
            let service = hyper_service(proxy, peer, hsts);
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
            proxy,
            peer,
            hsts,
            limits: builders.limits,
        };
        let front_drain = drain.watch();
        let mut guard_drain = drain.watch();
        let serving = async {
            let mut stream = stream;
            match http1::serve(&mut stream, &front, &front_drain).await {
                Ended::Closed => Ok(()),
                Ended::HandOver(read) => {
                    let Front {
                        proxy, peer, hsts, ..
                    } = front;
                    let service = hyper_service(proxy, peer, hsts);
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
    proxy: Arc<Proxy>,
    peer: Arc<Peer>,
    hsts: Option<HeaderValue>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Tracked<ProxyBody>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Tracked<ProxyBody>>, Infallible>> + Send + 'static,
> + Send
       + 'static {
    service_fn(move |request: Request<Incoming>| {
        let (proxy, hsts) = (proxy.clone(), hsts.clone());
        let in_flight = InFlight::start(peer.clone());
        // Boxed: a request's future is a few KiB, and hyper moves it
        // (into its connection state, or into a task per HTTP/2 stream,
        // whose slot is rewritten whole when the stream ends); a box
        // moves as one pointer.
        Box::pin(async move {
            let request = request.map(ClientBody::Streamed);
            let mut response = proxy.handle(request, in_flight.peer()).await;
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(STRICT_TRANSPORT_SECURITY, hsts);
            }
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
        })
    })
}
