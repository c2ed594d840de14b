//! [`Peer`]: what the edge knows of a client connection, made once per
//! connection and shared (`Arc`) by its requests: the facts the proxy reads
//! ([`Client`]), the connection's slot under `server.max_connections`, and
//! its activity counters for the idle watchdog.

use std::net::IpAddr;
use std::ops::Deref;

use tokio::sync::OwnedSemaphorePermit;

use super::watchdog::Activity;
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
