//! Serving: the accept loop, one task per connection, HTTP/1.1 and HTTP/2
//! on the same port (by ALPN over TLS, by prior knowledge over plain TCP),
//! limits, and the graceful drain.
//!
//! The library never binds a port or listens for signals: [`run`] takes a
//! bound listener and a shutdown future, so tests run it on `127.0.0.1:0`.
//! [`run_with`] also takes the redirect listener (`server.redirect_http_from`,
//! bound by the caller), the operations listener (`ops.listen`), and a
//! trigger that reloads the configuration file and the TLS certificates
//! (the binary fires it on SIGHUP).
//!
//! With `[server.tls]`, the TLS handshake runs in the connection's own task
//! under `server.tls.handshake_timeout`, never on the accept loop.
//!
//! Each connection takes a slot (a semaphore permit) under
//! `server.max_connections` before it is accepted, and gives it back when
//! its last user is done: the connection's task, a request still running,
//! or the WebSocket tunnel the connection became. The drain waits for every
//! slot, so for open tunnels as well as for in-flight requests.
//!
//! # Rooms
//! - [`accept`]: the accept loop, connection slots, TLS handshakes, protocol
//!   detection, and the drain at shutdown ([`drain`]);
//! - [`connection`]: one connection served: the HTTP/1 front ([`http1`])
//!   first, hyper's HTTP/1 or HTTP/2 server otherwise, under its guards
//!   ([`watchdog`], [`send_stall`], [`first_bytes`], [`guard`]);
//! - [`peer`]: what is known of a client connection;
//! - [`workers`]: the thread-per-core runtimes; [`redirect`]: the
//!   plain-HTTP listener that only redirects to HTTPS; [`ops`]: the
//!   operations listener (`/healthz`, `/readyz`, `/metrics`) and
//!   [`admin`], the admin API on it; both small listeners run on
//!   [`side_listener`];
//! - [`live`]: the proxy in force; [`reload`]: rebuilding it from the
//!   configuration file on SIGHUP or when the file changes;
//!   [`error`]: what stops the proxy from starting or serving.

mod accept;
mod admin;
mod connection;
pub(crate) mod drain;
pub mod error;
pub(crate) mod first_bytes;
pub(crate) mod guard;
pub(crate) mod http1;
mod live;
mod ops;
pub(crate) mod peer;
pub(crate) mod redirect;
mod reload;
pub(crate) mod send_stall;
mod side_listener;
pub(crate) mod watchdog;
pub(crate) mod workers;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::{Config, StoreConfig};
use crate::domain::cookie::signing::Signer;
use crate::domain::routes::Routes;
use crate::domain::session::lifetime::Lifetimes;
use crate::domain::session_headers::SessionHeaders;
use crate::metrics::Metrics;
use crate::proxy::{self, Proxy};
use crate::store::{AnyStore, MemoryStore, RedisStore};
use crate::tls::{self, Certificates};
use crate::upstream::Upstream;
use accept::Slots;
use error::Error;
use live::Live;
pub use reload::ConfigSource;

/// What [`run_with`] takes besides the configuration and the main listener.
#[derive(Debug, Default)]
pub struct Options {
    /// The bound `server.redirect_http_from` socket. The library does not
    /// bind it itself: without it, no redirect listener runs.
    pub redirect_listener: Option<TcpListener>,
    /// Each `notify_one` reloads the configuration from `config_source`
    /// (if given) and the TLS certificates, now (besides the polling of
    /// the files).
    pub reload: Option<Arc<Notify>>,
    /// Where a reload reads the configuration; without it, a reload only
    /// reloads the certificates.
    pub config_source: Option<ConfigSource>,
    /// The bound `[ops] listen` socket: `/healthz`, `/readyz`, `/metrics`.
    /// Without it, no operations listener runs (metrics are still kept
    /// when `ops.metrics` is on).
    pub ops_listener: Option<TcpListener>,
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
    // Kept only where `/metrics` can be read.
    let metrics = (config.ops.metrics && options.ops_listener.is_some())
        .then(|| Arc::new(Metrics::new(store.kind())));
    let shared = proxy::Shared::new(store, metrics.clone());
    let live = Arc::new(Live::new(Proxy::new(proxy_settings(&config), shared)));
    let slots = Slots::new(config.server.max_connections);
    let mut background = Vec::new();
    let certificates_reload = Arc::new(Notify::new());
    let (acceptor, certificates) = match &config.server.tls {
        Some(tls_config) => {
            let certificates = Arc::new(Certificates::new(tls_config.loaded.clone()));
            let acceptor = tls::acceptor(certificates.clone()).map_err(Error::Tls)?;
            background.push(AbortOnDrop(tokio::spawn(tls::reload::watch(
                tls_config.certificates.clone(),
                certificates.clone(),
                tls_config.watch_interval,
                certificates_reload.clone(),
            ))));
            (Some(acceptor), Some(certificates))
        }
        None => (None, None),
    };
    let reloader = reload::Reloader {
        live: live.clone(),
        metrics: metrics.clone(),
        source: options.config_source,
        applied: config.clone(),
        certificates: certificates_reload,
    };
    background.push(AbortOnDrop(tokio::spawn(
        reloader.run(options.reload.unwrap_or_default()),
    )));
    if let Some(ops_listener) = options.ops_listener {
        let state = Arc::new(ops::Ops {
            live: live.clone(),
            metrics,
            slots: slots.clone(),
            certificates,
            admin_token: config.ops.admin_token.clone(),
        });
        background.push(AbortOnDrop(tokio::spawn(ops::serve(ops_listener, state))));
    }
    match (options.redirect_listener, acceptor.is_some()) {
        (Some(redirect), true) => {
            let https_port = listener.local_addr().map_err(Error::Listener)?.port();
            background.push(AbortOnDrop(tokio::spawn(redirect::serve(
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
    let result = accept::serve(live, slots, &config.server, listener, acceptor, shutdown).await;
    drop(background);
    result
}

/// The proxy's settings, made from the configuration: the one place where
/// configuration becomes the proxy's domain values.
fn proxy_settings(config: &Config) -> proxy::Settings {
    let session = &config.session;
    proxy::Settings {
        cookie: config.cookie.clone(),
        signer: Signer::new(&session.secrets.list),
        routes: Routes::new(&config.auth.protect, config.auth.case_sensitive),
        session_headers: SessionHeaders::new(
            session.header_max_bytes,
            session.header_keys.clone(),
            &session.fields,
        ),
        upstream: Upstream::new(
            &config.upstream,
            config.server.workers,
            config.server.fast_paths,
        ),
        identity_key: config.auth.identity_key.clone(),
        login_url: config.auth.login_url.clone(),
        allow_trace: config.server.allow_trace,
        via: config.server.via,
        hsts: config.server.hsts.clone(),
        body_idle_timeout: config.server.body_idle_timeout,
        policy: proxy::CommitPolicy {
            rolling: config.cookie.rolling,
            save_uninitialized: session.save_uninitialized,
            refresh_on_write: config.cookie.max_age.is_some(),
            ttl: session.ttl,
            max_bytes: session.max_bytes,
            max_set_session_bytes: session.max_set_session_bytes,
            clear_site_data: config.cookie.clear_site_data,
            rotate_on: config
                .auth
                .rotate_on_login
                .then(|| config.auth.identity_key.clone()),
            lifetimes: Lifetimes {
                idle: session.lifetime.idle,
                absolute: session.lifetime.absolute,
            },
            touch_interval: session.lifetime.touch_interval,
            remember_max: session.lifetime.remember_max,
        },
        websocket_origins: config.auth.websocket_origins.clone(),
        cross_origin: config.auth.cross_origin.clone(),
        forward_auth_path: config.auth.forward_auth_path.clone(),
        access_log: proxy::AccessLog {
            enabled: config.log.access,
            query: config.log.access_query,
        },
        users: proxy::UserPolicy::new(
            config.auth.identity_pointer.clone(),
            config.auth.max_sessions_per_user,
            config.auth.session_limit_policy,
        ),
    }
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
        } => AnyStore::Memory(MemoryStore::with_options(
            *max_sessions,
            *sweep_interval,
            crate::store::memory::Clock::Coarse,
            &config.auth.identity_key,
        )),
        StoreConfig::Redis(redis) => {
            AnyStore::Redis(RedisStore::connect_per_worker(redis, workers).await?)
        }
    })
}
