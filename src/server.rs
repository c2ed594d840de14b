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
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, ServerConfig, StoreConfig};
use crate::error::Error;
use crate::proxy::{Peer, Proxy};
use crate::store::{AnyStore, MemoryStore, RedisStore};
use crate::tls::first_bytes::FirstBytes;
use crate::tls::{self, Certificates};
use crate::watchdog::{self, InFlight, Tracked};
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

fn connection_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
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
        .http2()
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
    let builder = Arc::new(connection_builder(config));
    let workers = Workers::start(config.workers).map_err(Error::Listener)?;
    let graceful = GracefulShutdown::new();
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
            builder: builder.clone(),
            watcher: graceful.watcher(),
            hsts: config.hsts.clone(),
            idle_limit: config.header_read_timeout,
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
        connections = graceful.count(),
        slots_taken = slots as usize - limit.available_permits(),
        "shutting down: draining connections and WebSocket tunnels"
    );
    let drained = async {
        // Tells every connection to finish its requests and close, and
        // waits for them; a tunnel has left its connection by then.
        graceful.shutdown().await;
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

/// One accepted connection, ready to be served once its transport (plain
/// TCP or TLS) is up.
struct Connection {
    proxy: Arc<Proxy>,
    peer: Arc<Peer>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    hsts: Option<HeaderValue>,
    /// `server.header_read_timeout`, enforced on HTTP/1 by the watchdog.
    idle_limit: Duration,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 (told apart by the preface, which over
    /// TLS follows the ALPN choice) until the connection ends or drains.
    /// `http2`: what the preface or ALPN announced; an HTTP/1 connection
    /// is closed by the [`watchdog`] once it is quiet for `idle_limit`.
    async fn serve<S>(self, stream: S, http2: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            proxy,
            peer,
            builder,
            watcher,
            hsts,
            idle_limit,
        } = self;
        // HSTS over TLS only: browsers ignore it over plain HTTP (RFC 6797
        // §8.1). The configured policy replaces one sent by the upstream.
        let hsts = hsts.filter(|_| peer.tls);
        let watched = peer.clone();
        let service = service_fn(move |request| {
            let (proxy, hsts) = (proxy.clone(), hsts.clone());
            let in_flight = InFlight::start(peer.clone());
            // Boxed: a request's future is a few KiB, and hyper moves it
            // (into its connection state, or into a task per HTTP/2 stream,
            // whose slot is rewritten whole when the stream ends); a box
            // moves as one pointer.
            Box::pin(async move {
                let mut response = proxy.handle(request, in_flight.peer()).await;
                if let Some(hsts) = hsts {
                    response
                        .headers_mut()
                        .insert(STRICT_TRANSPORT_SECURITY, hsts);
                }
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            })
        });
        let connection =
            watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
        let ended = if http2 {
            connection.await
        } else {
            tokio::select! {
                ended = connection => ended,
                () = watchdog::quiet_for(&watched.activity, idle_limit) => {
                    tracing::debug!(peer = %watched.addr, "no request within the header read timeout; closed");
                    Ok(())
                }
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}
