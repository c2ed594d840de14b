//! Cloakroom: a reverse proxy that gives any web application server-side
//! sessions. The browser keeps a signed ticket (the session cookie, in
//! express-session's format); the session data stays in a store. The
//! upstream reads the session from request headers and changes it with
//! `Set-Session` response headers.
//!
//! # Code map
//! - [`config`]: `proxy.toml` → validated [`config::Config`].
//! - [`cli`]: the command line (`cloakroom`, `check`, `secret`).
//! - [`server`]: accept loop, HTTP/1.1 + HTTP/2, limits, graceful drain
//!   ([`drain`]); [`http1`]: the HTTP/1 front, which serves body-less
//!   `GET`s and `HEAD`s itself and hands anything else to hyper;
//!   [`watchdog`]: closes idle and slow-head HTTP/1 connections;
//!   [`woken`]: polls such a guard only when it asked to be;
//!   [`send_stall`]: cuts off a client that stops reading;
//!   `delegate_write`: the write side of stream wrappers that only read
//!   differently.
//! - [`tls`]: certificates by SNI, the rustls acceptor, reloads, and the
//!   client configuration for an `https://` upstream;
//!   [`redirect`]: the plain-HTTP listener that only redirects to HTTPS.
//! - [`proxy`]: the phases of one request (scrub → canonicalise → identify →
//!   load → authorise → inject → forward → commit), and WebSocket tunnels.
//! - [`path`]: the canonical request path; [`routes`]: login-only policy.
//! - [`coarse_clock`]: a clock read without a system call, for idle and
//!   expiry timestamps.
//! - [`signing`]: HMAC signatures; [`session_cookie`]: the cookie on the wire.
//! - [`session`]: ids, data, `Set-Session` operations (pure).
//! - [`store`]: the store trait, its conformance suite, and the stores:
//!   in memory, and Redis / Redis Cluster in connect-redis's format.
//! - [`headers`]: header names, scrubbing, hop-by-hop;
//!   [`session_headers`]: session → upstream headers.
//! - [`upstream`]: the pooled clients (a direct one for body-less `GET` and
//!   `HEAD`, hyper's for the rest) and request rewriting; [`body`]:
//!   streamed bodies with stall timeouts; [`error`]: fault → status.
//!
//! # Invariants
//! - Client-sent session headers, `Set-Session`, and (from untrusted peers)
//!   forwarding headers are removed before anything else, in every spelling.
//! - No store lookup with an id whose signature was not verified; ids the
//!   proxy did not issue are never adopted.
//! - The path the route decision sees is the path forwarded.
//! - A WebSocket tunnel opens only for an authorised handshake that the
//!   upstream answered with `101`, after its `Set-Session` is stored. No
//!   other upgrade (`h2c`) is honoured or forwarded.
//! - A connection holds one slot under `server.max_connections` from accept
//!   until its last request ends, or its WebSocket tunnel closes; the
//!   graceful drain waits for every slot, up to `server.shutdown_grace`.
//! - `Set-Session` never reaches a client and is applied before the response
//!   head leaves.
//! - The store never sees HTTP types; the session model does no I/O.
//! - Logs never hold a session id, a cookie value, a secret or session data,
//!   nor any private key material.
//! - TLS handshakes run in each connection's task under a timeout, never on
//!   the accept loop; a certificate reload never drops a connection, and a
//!   bad new certificate never replaces a good one.
//! - The TLS client configuration for an `https://` upstream is built once,
//!   while the configuration is validated; a connection only clones an `Arc`.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub(crate) mod domain;
pub(crate) mod edge;
pub(crate) mod proxy;
pub mod store;
pub(crate) mod tls;
pub(crate) mod upstream;
pub(crate) mod util;

pub use edge::error::Error;
pub use edge::{build_store, run, run_with, Options};
// Seams for tests and tools that sign or read session cookies by hand.
pub use domain::cookie::signing::Signer;
pub use domain::session::SessionId;
