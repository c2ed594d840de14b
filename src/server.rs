//! Serving: the accept loop, one task per connection, HTTP/1.1 and HTTP/2
//! (prior knowledge) on the same port, limits, and the graceful drain.
//!
//! The library never binds a port or listens for signals: [`run`] takes a
//! bound listener and a shutdown future, so tests run it on `127.0.0.1:0`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::{Config, ServerConfig, StoreConfig};
use crate::error::Error;
use crate::proxy::{Peer, Proxy};
use crate::store::{AnyStore, MemoryStore, RedisStore};

/// Most concurrent HTTP/2 streams per connection.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Builds the proxy from `config` and serves `listener` until `shutdown`
/// resolves; then stops accepting and lets in-flight requests finish for
/// up to `server.shutdown_grace`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let store = build_store(&config.store).await?;
    let proxy = Arc::new(Proxy::new(&config, store));
    serve(proxy, &config.server, listener, shutdown).await
}

/// The configured store, connected and verified (Redis answers `PING`)
/// before the first request is accepted.
async fn build_store(config: &StoreConfig) -> Result<AnyStore, Error> {
    Ok(match config {
        StoreConfig::Memory {
            max_sessions,
            sweep_interval,
        } => AnyStore::Memory(MemoryStore::new(*max_sessions, *sweep_interval)),
        StoreConfig::Redis(redis) => AnyStore::Redis(RedisStore::connect(redis).await?),
    })
}

fn connection_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes)
        .max_headers(config.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(64))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// The HTTP/2 connection preface, which protocol detection waits for.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Resolves once enough bytes have arrived to tell HTTP/1 from HTTP/2 (or
/// the peer closed). Peeks only: nothing is consumed.
async fn first_bytes(stream: &TcpStream) -> std::io::Result<()> {
    let mut buffer = [0u8; H2_PREFACE.len()];
    loop {
        stream.readable().await?;
        let read = stream.peek(&mut buffer).await?;
        if read == 0 || read == buffer.len() || buffer[..read] != H2_PREFACE[..read] {
            return Ok(());
        }
        // A partial HTTP/2 preface: peeking again at once would spin.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve(
    proxy: Arc<Proxy>,
    config: &ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let builder = Arc::new(connection_builder(config));
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let trusted: Arc<[IpNet]> = config.trusted_proxies.clone().into();
    let address = listener.local_addr().map_err(Error::Listener)?;
    tracing::info!(%address, "listening");
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
        let first_bytes_timeout = config.header_read_timeout;
        let addr = remote.ip().to_canonical();
        let trusted_peer = trusted.iter().any(|net| net.contains(&addr));
        let peer = Arc::new(Peer::new(addr, trusted_peer, false));
        let proxy = proxy.clone();
        let service = service_fn(move |request| {
            let (proxy, peer) = (proxy.clone(), peer.clone());
            async move { Ok::<_, Infallible>(proxy.handle(request, &peer).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // Protocol detection reads the first bytes without a timeout of
            // its own: a client that sends nothing must not hold a slot.
            if tokio::time::timeout(first_bytes_timeout, first_bytes(&stream))
                .await
                .is_err()
            {
                tracing::debug!(peer = %addr, "no request within the header read timeout; closed");
                return;
            }
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: draining connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(config.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}
