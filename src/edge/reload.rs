//! Live reloads of `proxy.toml`: on each trigger (SIGHUP in the binary)
//! or when the watched file changes, the file is read and validated again;
//! a good one becomes the proxy in force ([`Live`]), a bad one is refused
//! with one log line per problem and the old configuration keeps serving.
//!
//! What a reload changes: everything the proxy is built from (routes,
//! field headers, cookie attributes, session settings, secrets, the
//! upstream URL, its pool and timeouts, cross-origin rules, `server.via`,
//! `server.allow_trace`, `server.hsts`, `server.body_idle_timeout`, the
//! access log). Keys of sockets, threads and the store need a restart:
//! when they change they are named in the log and keep their old values,
//! all of them, so nothing is half-applied. Certificates reload on the
//! same trigger, from the files already configured.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::live::Live;
use crate::config::{Config, StoreConfig};
use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// Where a reload reads the configuration from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file given with `--config`.
    pub path: PathBuf,
    /// Also reload when the file changes, checked this often.
    pub watch: Option<Duration>,
}

pub(super) struct Reloader {
    pub live: Arc<Live>,
    pub metrics: Option<Arc<Metrics>>,
    pub source: Option<ConfigSource>,
    /// The configuration in force.
    pub applied: Config,
    /// Reloads the certificates, after the configuration.
    pub certificates: Arc<Notify>,
}

impl Reloader {
    /// Reloads on each `trigger`, and on each change of the watched file.
    pub async fn run(mut self, trigger: Arc<Notify>) {
        let watch = self.source.as_ref().and_then(|source| source.watch);
        let mut stamp = self.stamp();
        let mut ticks = tokio::time::interval(watch.unwrap_or(Duration::from_secs(3600)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = trigger.notified() => {}
                _ = ticks.tick(), if watch.is_some() => {
                    let now = self.stamp();
                    if now == stamp {
                        continue;
                    }
                    tracing::info!("configuration file changed");
                }
            }
            stamp = self.stamp();
            self.reload();
            self.certificates.notify_one();
        }
    }

    /// The watched file's modification time and size.
    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let source = self.source.as_ref()?;
        let metadata = std::fs::metadata(&source.path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    }

    fn reload(&mut self) {
        let Some(source) = &self.source else {
            tracing::info!("no configuration file (--config) to reload; certificates only");
            return;
        };
        let new = match Config::from_file(&source.path) {
            Ok(config) => config,
            Err(error) => {
                for issue in &error.issues {
                    tracing::error!(key = %issue.key, "{}", issue.message);
                }
                tracing::error!(
                    file = %source.path.display(),
                    problems = error.issues.len(),
                    "configuration reload refused; the configuration in force keeps serving"
                );
                if let Some(metrics) = &self.metrics {
                    metrics.reload(false);
                }
                return;
            }
        };
        for warning in &new.warnings {
            tracing::warn!("{warning}");
        }
        let (merged, restart) = merge(new, &self.applied);
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "these keys changed but take effect only after a restart; their old values stay in force"
            );
        }
        let proxy = Proxy::new(super::proxy_settings(&merged), self.live.current().shared());
        self.live.replace(proxy);
        self.applied = merged;
        tracing::info!(file = %source.path.display(), "configuration reloaded");
        if let Some(metrics) = &self.metrics {
            metrics.reload(true);
        }
    }
}

/// `new`, with every key that needs a restart kept at its value in
/// `applied`; and the names of those that differed.
fn merge(mut new: Config, applied: &Config) -> (Config, Vec<&'static str>) {
    let mut restart = Vec::new();
    let (old_server, server) = (&applied.server, &new.server);
    let mut differs = |key: &'static str, changed: bool| {
        if changed {
            restart.push(key);
        }
    };
    differs("server.listen", new.listen != applied.listen);
    differs(
        "server.header_read_timeout",
        server.header_read_timeout != old_server.header_read_timeout,
    );
    differs(
        "server.max_header_bytes",
        server.max_header_bytes != old_server.max_header_bytes,
    );
    differs(
        "server.max_headers",
        server.max_headers != old_server.max_headers,
    );
    differs(
        "server.max_connections",
        server.max_connections != old_server.max_connections,
    );
    differs(
        "server.trusted_proxies",
        server.trusted_proxies != old_server.trusted_proxies,
    );
    differs(
        "server.shutdown_grace",
        server.shutdown_grace != old_server.shutdown_grace,
    );
    differs("server.workers", server.workers != old_server.workers);
    differs(
        "server.fast_paths",
        server.fast_paths != old_server.fast_paths,
    );
    differs(
        "server.redirect_http_from",
        server.redirect_http_from != old_server.redirect_http_from,
    );
    differs(
        "server.tls",
        tls_shape(&server.tls) != tls_shape(&old_server.tls),
    );
    differs(
        "store",
        store_shape(&new.store) != store_shape(&applied.store),
    );
    differs("ops", new.ops != applied.ops);
    differs("log.format", new.log.format != applied.log.format);

    // Only these server keys are the proxy's; the rest stay as they are.
    let server = std::mem::replace(&mut new.server, applied.server.clone());
    new.server.via = server.via;
    new.server.allow_trace = server.allow_trace;
    new.server.hsts = server.hsts;
    new.server.body_idle_timeout = server.body_idle_timeout;
    new.listen = applied.listen;
    new.store = applied.store.clone();
    new.ops = applied.ops.clone();
    new.log.format = applied.log.format;
    // A made-up secret is made up again by each load: keep the one in
    // force, or every session would end with the reload.
    if new.session.secrets.ephemeral && applied.session.secrets.ephemeral {
        new.session.secrets = applied.session.secrets.clone();
    }
    (new, restart)
}

/// What of `[server.tls]` a reload cannot change: whether TLS is on, the
/// files, the timeouts (the certificates in those files do reload).
fn tls_shape(tls: &Option<crate::config::TlsConfig>) -> Option<String> {
    tls.as_ref().map(|tls| {
        format!(
            "{:?} {:?} {:?}",
            tls.certificates, tls.handshake_timeout, tls.watch_interval
        )
    })
}

/// The store's identity: its kind, where it is and its sizes. The `cookie`
/// object of Redis records follows `[cookie]` and is left out.
fn store_shape(store: &StoreConfig) -> String {
    match store {
        StoreConfig::Memory {
            max_sessions,
            sweep_interval,
        } => format!("memory {max_sessions} {sweep_interval:?}"),
        StoreConfig::Redis(redis) => format!(
            "redis {} {} {:?} {:?} {}",
            redis.endpoint.redacted(),
            redis.prefix,
            redis.connect_timeout,
            redis.command_timeout,
            redis
                .password
                .as_ref()
                .map_or("", |password| password.expose_str()),
        ),
    }
}
