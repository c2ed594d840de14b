//! [`Peer`]: what the edge knows of a client connection, made once per
//! connection and shared (`Arc`) by its requests: the facts the proxy reads
//! ([`Client`]), the connection's slot under `server.max_connections`, and
//! its activity counters for the idle watchdog: a request is in flight
//! while an [`InFlight`] (hyper's server: until its response body is done)
//! or a [`Busy`] (the HTTP/1 front: until its response is written) lives.

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::proxy::{Client, ClientConnection};

#[derive(Debug)]
pub struct Peer {
    client: Client,
    /// The connection's slot under `server.max_connections`, given back
    /// when the last holder of the `Peer` lets go. Besides the connection
    /// and its running requests, that can be a WebSocket tunnel, which
    /// outlives the connection's HTTP serving: only the upgrade path clones
    /// the `Arc<Peer>` into it, so a plain request pays nothing for this.
    /// Never read: holding it is the point.
    _slot: OwnedSemaphorePermit,
    /// Requests in flight and ended, for the connection's idle watchdog.
    pub activity: Activity,
}

impl Peer {
    /// The peer of a connection that holds `slot`.
    pub fn new(addr: IpAddr, trusted: bool, tls: bool, slot: OwnedSemaphorePermit) -> Self {
        Self {
            client: Client::new(addr, trusted, tls),
            _slot: slot,
            activity: Activity::default(),
        }
    }
}

impl Deref for Peer {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl ClientConnection for Peer {
    fn client(&self) -> &Client {
        &self.client
    }
}

/// What the watchdog reads of a connection. Relaxed atomics: the counters
/// are only compared with their own earlier values, and a connection's
/// requests run on the connection's worker thread.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    ended: AtomicUsize,
}

impl Activity {
    /// One request in flight for as long as the guard lives: for the
    /// HTTP/1 front ([`crate::edge::http1`]), which serves its requests in the
    /// connection's own future.
    pub fn busy(&self) -> Busy<'_> {
        self.begin();
        Busy(self)
    }

    pub(super) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn end(&self) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// No request in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    pub(super) fn snapshot(&self) -> (usize, usize) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.ended.load(Ordering::Relaxed),
        )
    }
}

/// A request in flight, borrowed from the connection's [`Activity`].
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// One request in flight on a connection; it ends when this is dropped.
pub struct InFlight(Arc<Peer>);

impl InFlight {
    pub fn start(peer: Arc<Peer>) -> Self {
        peer.activity.begin();
        Self(peer)
    }

    pub fn peer(&self) -> &Arc<Peer> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity.end();
    }
}
