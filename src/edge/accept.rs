//! The accept loop: a slot per connection under `server.max_connections`,
//! the TLS handshake or protocol detection in the connection's own task,
//! and the graceful drain once shutdown is asked for.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::connection::{http1_builder, http2_builder, Builders, Connection};
use super::drain::Drain;
use super::error::Error;
use super::first_bytes::FirstBytes;
use super::http1;
use super::live::Live;
use super::peer::Peer;
use super::workers::Workers;
use crate::config::ServerConfig;

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

/// The connection slots under `server.max_connections`: a connection (or
/// the WebSocket tunnel it became) holds one until it ends.
#[derive(Clone)]
pub(super) struct Slots {
    limit: Arc<Semaphore>,
    total: u32,
}

impl Slots {
    pub fn new(max_connections: usize) -> Self {
        // `acquire_many` (the drain) counts in u32; more connections than
        // that cannot be open at once anyway, each needing a file
        // descriptor.
        let total = u32::try_from(max_connections).unwrap_or(u32::MAX);
        Self {
            limit: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Slots held now: open connections and tunnels.
    pub fn taken(&self) -> usize {
        self.total as usize - self.limit.available_permits()
    }
}

pub(super) async fn serve(
    live: Arc<Live>,
    slots: Slots,
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
        front: config.fast_paths,
    });
    let workers = Workers::start(config.workers).map_err(Error::Listener)?;
    // The store's per-worker tasks (the Redis cache's tracked connections);
    // the store outlives reloads, so they start once.
    let store = live.current();
    for index in 0..workers.count() {
        if let Some(task) = store.store().worker_task(index) {
            workers.run_on(index, task);
        }
    }
    drop(store);
    let drain = Arc::new(Drain::new(workers.count()));
    let Slots {
        limit,
        total: slots,
    } = slots;
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
            live: live.clone(),
            peer,
            builders: builders.clone(),
            drain: drain.clone(),
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
