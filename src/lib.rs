//! Cloakroom: a reverse proxy that gives any web application server-side
//! sessions. The browser keeps a signed ticket (the session cookie, in
//! express-session's format); the session data stays in a store. The
//! upstream reads the session from request headers and changes it with
//! `Set-Session` response headers.
//!
//! # Layers
//! The crate is built in layers. **A module may import modules of its own
//! layer or of a lower one, never of a higher one**, and no chain of imports
//! between modules leads back to where it started. `tests/architecture.rs`
//! checks both on every `cargo test`.
//!
//! | layer | modules | owns |
//! |---|---|---|
//! | 6 | [`cli`] (and `main.rs`) | the command line: `cloakroom`, `check`, `secret` |
//! | 5 | `edge` | sockets: the accept loop, connection slots, TLS handshakes, the HTTP/1 front, hyper's servers, guards (idle watchdog, stalled writes, first bytes), the drain, the worker threads, the redirect listener, the operations listener and its admin API; the assembly of the proxy from the configuration, and its live reloads |
//! | 4 | [`config`] | `proxy.toml` → typed, validated values; only `edge`, `cli` and `main` read it |
//! | 3 | `proxy` | one request: the phases over a per-request context, the user index kept around the commit (limits, `destroy-all`) and the admin operations, forward-auth answers, every response the proxy writes itself, request errors and their statuses, the access line and metrics of each request |
//! | 2 | `upstream`, [`store`] | the upstream clients (direct and hyper's), framing, forwarding headers; the session store trait, its conformance suite, the memory and Redis stores and their user index |
//! | 1 | `domain`, `tls`, `metrics` | sessions and `Set-Session`, the cookie and its signature, routes, paths, header names and scrubbing, the secret newtype; certificates, the acceptor, reloads, the upstream TLS client; the exported metrics |
//! | 0 | `util` | bodies in flight, the coarse clock, the worker index, dates, header lists, parsed heads, the headers added to a request |
//!
//! Test-only modules (`tests.rs`, `tests/`) sit outside the layers.
//!
//! # The life of a request
//! `edge` accepts a connection (taking a slot), finishes TLS, and serves
//! it: HTTP/1 starts on the front (`edge/http1`), which serves body-less
//! `GET`s and `HEAD`s itself and hands anything else to hyper's HTTP/1
//! server; HTTP/2 goes to hyper's. Either way a request becomes one call to
//! `Proxy::handle`, whose phases are calls in a fixed order: scrub →
//! canonicalise → identify → load → authorise → inject → forward → commit
//! → log. Forward hands the request to `upstream`: the direct client for
//! body-less `GET`/`HEAD` to a plain-TCP upstream, hyper's client for the
//! rest. `server.fast_paths = false` (a diagnostic) sends everything
//! through hyper's server and client; `tests/hyper_only.rs` runs the
//! integration suite that way.
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
//! - Both upstream clients frame responses by one rule (RFC 9112 §6.3):
//!   `Transfer-Encoding` is `chunked` alone and never beside a
//!   `Content-Length`, or the response is a 502.
//! - The store never sees HTTP types; the domain does no I/O and never reads
//!   the configuration; the proxy is built from domain values.
//! - Logs never hold a session id, a cookie value, a secret or session data,
//!   nor any private key material; nor does the admin API's output, which
//!   names sessions by a keyed hash (the revoke handle).
//! - The user index (identity → live sessions) is written after the
//!   session commit, never instead of it: a member whose session is gone is
//!   dropped whenever the index is read, so it never lists or counts.
//! - The Redis store's client-side cache is read only while key tracking is
//!   live, and a read fills it only if nothing dropped the key while the
//!   read was in flight; this process's own writes drop the key before
//!   their response leaves. Writes stay compare-and-set against Redis.
//! - TLS handshakes run in each connection's task under a timeout, never on
//!   the accept loop; a certificate reload never drops a connection, and a
//!   bad new certificate never replaces a good one.
//! - The TLS client configuration for an `https://` upstream is built once,
//!   while the configuration is validated; a connection only clones an `Arc`.
//!
//! # Deliberately absent
//! - No global mutable state but the coarse clock's reading, the worker
//!   index (a thread-local) and the interned certificate names of the
//!   metrics.
//! - No `unsafe` in the library. The binary keeps all of its own in one
//!   module (`src/allocator.rs`): its allocator's calls into mimalloc, and
//!   an option of mimalloc set as the process loads.
//! - No port bound by the library: `run` takes a bound listener and a
//!   shutdown future. The configuration is read again only on a reload
//!   (SIGHUP, or a change of the watched file), and a reload swaps the
//!   proxy whole: a request never sees two configurations.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub(crate) mod domain;
pub(crate) mod edge;
pub(crate) mod metrics;
pub(crate) mod proxy;
pub mod store;
pub(crate) mod tls;
pub(crate) mod upstream;
pub(crate) mod util;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use edge::error::Error;
pub use edge::{build_store, run, run_with, ConfigSource, Options};
// Seams for tests and tools that sign or read session cookies by hand.
pub use domain::cookie::signing::Signer;
pub use domain::session::SessionId;
