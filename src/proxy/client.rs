//! What the proxy knows of the client connection a request came on, and
//! how the edge hands it over.

use std::net::IpAddr;

use http::HeaderValue;

use crate::upstream;

/// The facts about a client connection the phases read.
#[derive(Debug)]
pub struct Client {
    pub addr: IpAddr,
    /// `addr` as an `X-Forwarded-For` value.
    pub addr_header: HeaderValue,
    /// The peer is a configured trusted proxy.
    pub trusted: bool,
    /// The connection is TLS.
    pub tls: bool,
}

impl Client {
    pub fn new(addr: IpAddr, trusted: bool, tls: bool) -> Self {
        Self {
            addr,
            addr_header: upstream::address_header(addr),
            trusted,
            tls,
        }
    }
}

/// A client connection as the edge keeps it: its [`Client`] facts, and
/// whatever keeps the connection counted. A WebSocket tunnel holds a clone
/// of it for as long as it runs.
pub trait ClientConnection: Send + Sync + 'static {
    fn client(&self) -> &Client;
}
