//! `[store]`: which session store, and its settings.
//!
//! `kind = "memory"` takes `max_sessions` and `sweep_interval`; `kind =
//! "redis"` takes `url` or `cluster_urls`, `prefix`, `password_env`,
//! `connect_timeout`, `command_timeout` and `cache_sessions`. A key of the other kind is an
//! error (it would be silently ignored). Redis URLs are checked here,
//! offline: `cloakroom check` never connects. `store.url` may name a Unix
//! socket (`unix:///path?db=N&pass=…`); a cluster's nodes may not.

use std::time::Duration;

use redis::IntoConnectionInfo as _;

use super::raw::RawStore;
use super::{Checker, CookieSettings, SameSite, Secret, Secure};
pub use crate::store::redis::settings::{RedisConfig, RedisEndpoint, RedisUrl};
use crate::store::redis::RecordCookie;

const MEMORY_DEFAULT_MAX_SESSIONS: usize = 100_000;
const MEMORY_DEFAULT_SWEEP: &str = "30s";
const REDIS_DEFAULT_PREFIX: &str = "sess:";
const REDIS_DEFAULT_CONNECT_TIMEOUT: &str = "2s";
const REDIS_DEFAULT_COMMAND_TIMEOUT: &str = "500ms";
/// Records the client-side cache holds by default: a few hundred bytes
/// each, so tens of MB at most.
const REDIS_DEFAULT_CACHE_SESSIONS: usize = 100_000;

#[derive(Debug, Clone)]
pub enum StoreConfig {
    Memory {
        max_sessions: usize,
        sweep_interval: Duration,
    },
    Redis(RedisConfig),
}

/// What `[cookie]` means for the `cookie` object of connect-redis records.
pub fn record_cookie(cookie: &CookieSettings) -> RecordCookie {
    RecordCookie {
        path: cookie.path.clone(),
        http_only: cookie.http_only,
        secure: match cookie.secure {
            Secure::Always => Some(true),
            Secure::Never => Some(false),
            Secure::Auto => None,
        },
        same_site: match cookie.same_site {
            SameSite::Strict => "strict",
            SameSite::None => "none",
            SameSite::Lax => "lax",
        }
        .into(),
        domain: cookie.domain.clone(),
        persistent: cookie.max_age.is_some(),
    }
}

pub(super) fn build(
    raw: &RawStore,
    cookie: &CookieSettings,
    check: &mut Checker,
) -> Option<StoreConfig> {
    match raw.kind.as_str() {
        "memory" => Some(build_memory(raw, check)),
        "redis" => build_redis(raw, cookie, check).map(StoreConfig::Redis),
        other => {
            check.fail(
                "store.kind",
                format!("`{other}` is not a store this build has; use \"memory\" or \"redis\""),
            );
            None
        }
    }
}

fn build_memory(raw: &RawStore, check: &mut Checker) -> StoreConfig {
    let redis_keys = [
        ("store.url", raw.url.is_some()),
        ("store.cluster_urls", raw.cluster_urls.is_some()),
        ("store.prefix", raw.prefix.is_some()),
        ("store.password_env", raw.password_env.is_some()),
        ("store.connect_timeout", raw.connect_timeout.is_some()),
        ("store.command_timeout", raw.command_timeout.is_some()),
        ("store.cache_sessions", raw.cache_sessions.is_some()),
    ];
    for (key, _) in redis_keys.iter().filter(|(_, set)| *set) {
        check.fail(
            key,
            "is a Redis store setting: set store.kind = \"redis\", or remove the key to keep the memory store",
        );
    }
    let max_sessions = raw.max_sessions.unwrap_or(MEMORY_DEFAULT_MAX_SESSIONS);
    let sweep = raw
        .sweep_interval
        .as_deref()
        .unwrap_or(MEMORY_DEFAULT_SWEEP);
    StoreConfig::Memory {
        max_sessions: check.at_least("store.max_sessions", max_sessions, 1),
        sweep_interval: check.positive_duration("store.sweep_interval", sweep),
    }
}

fn build_redis(
    raw: &RawStore,
    cookie: &CookieSettings,
    check: &mut Checker,
) -> Option<RedisConfig> {
    let memory_keys = [
        ("store.max_sessions", raw.max_sessions.is_some()),
        ("store.sweep_interval", raw.sweep_interval.is_some()),
    ];
    for (key, _) in memory_keys.iter().filter(|(_, set)| *set) {
        check.fail(
            key,
            "is a memory store setting that Redis does not use (Redis bounds memory with its own maxmemory); remove the key",
        );
    }
    let endpoint = redis_endpoint(raw, check);
    let password = raw.password_env.as_deref().and_then(|name| {
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                check.fail(
                    "store.password_env",
                    format!("the environment variable {name} is not set or empty; export the Redis password in it, or remove the key to use the URL's password"),
                );
                None
            }
        }
    });
    let prefix = raw.prefix.as_deref().unwrap_or(REDIS_DEFAULT_PREFIX);
    if prefix.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        check.fail(
            "store.prefix",
            "must not contain spaces or control characters; connect-redis's default is \"sess:\"",
        );
    }
    let connect_timeout = check.positive_duration(
        "store.connect_timeout",
        raw.connect_timeout
            .as_deref()
            .unwrap_or(REDIS_DEFAULT_CONNECT_TIMEOUT),
    );
    let command_timeout = check.positive_duration(
        "store.command_timeout",
        raw.command_timeout
            .as_deref()
            .unwrap_or(REDIS_DEFAULT_COMMAND_TIMEOUT),
    );
    let cache_sessions = match (&endpoint, raw.cache_sessions) {
        (Some(RedisEndpoint::Cluster(_)), Some(n)) if n > 0 => {
            check.fail(
                "store.cache_sessions",
                "the client-side cache needs one Redis server (it tracks keys on one connection); set it to 0 or remove it with store.cluster_urls",
            );
            0
        }
        (Some(RedisEndpoint::Cluster(_)), _) => 0,
        (_, Some(n)) => n,
        (_, None) => REDIS_DEFAULT_CACHE_SESSIONS,
    };
    Some(RedisConfig {
        endpoint: endpoint?,
        password,
        prefix: prefix.to_owned(),
        connect_timeout,
        command_timeout,
        record_cookie: record_cookie(cookie),
        cache_sessions,
    })
}

fn redis_endpoint(raw: &RawStore, check: &mut Checker) -> Option<RedisEndpoint> {
    match (&raw.url, &raw.cluster_urls) {
        (None, None) => {
            check.fail(
                "store.url",
                "is required with kind = \"redis\": write it like \"redis://127.0.0.1:6379\" (or list a cluster's nodes in store.cluster_urls)",
            );
            None
        }
        (Some(_), Some(_)) => {
            check.fail(
                "store.cluster_urls",
                "use store.url for one Redis server or store.cluster_urls for a Redis Cluster, not both; remove one",
            );
            None
        }
        (Some(url), None) => redis_url("store.url", url, check).map(RedisEndpoint::Single),
        (None, Some(urls)) if urls.is_empty() => {
            check.fail(
                "store.cluster_urls",
                "is empty: list one or more cluster nodes like [\"redis://10.0.0.1:6379\"]",
            );
            None
        }
        (None, Some(urls)) => {
            let parsed: Vec<RedisUrl> = urls
                .iter()
                .filter_map(|url| redis_url("store.cluster_urls", url, check))
                .collect();
            if parsed.len() != urls.len() {
                return None;
            }
            // Offline: checks that the nodes agree on TLS and credentials.
            let infos = parsed.iter().map(RedisUrl::expose);
            if let Err(error) = redis::cluster::ClusterClient::builder(infos).build() {
                check.fail(
                    "store.cluster_urls",
                    format!(
                        "{}; give every node the same scheme, user and password",
                        error.detail().unwrap_or_else(|| error.category())
                    ),
                );
                return None;
            }
            Some(RedisEndpoint::Cluster(parsed))
        }
    }
}

fn redis_url(key: &str, text: &str, check: &mut Checker) -> Option<RedisUrl> {
    let url = RedisUrl::new(text.to_owned());
    let scheme = text.split_once("://").map(|(scheme, _)| scheme);
    let single = key == "store.url";
    let example = if url.is_unix_socket() {
        "\"unix:///run/redis/redis.sock?db=0\""
    } else {
        "\"redis://user:password@host:6379/0\""
    };
    match scheme {
        Some("redis" | "rediss") => {}
        Some(_) if url.is_unix_socket() && single => {}
        Some(_) if url.is_unix_socket() => {
            check.fail(
                key,
                format!(
                    "`{}` is a Unix socket, which names one server; a cluster's nodes need redis:// or rediss:// URLs",
                    url.redacted()
                ),
            );
            return None;
        }
        _ => {
            let unix = if single {
                ", or unix:// for a socket on this host"
            } else {
                ""
            };
            check.fail(
                key,
                format!(
                    "`{}` needs the redis:// or rediss:// (TLS) scheme{unix}, like \"redis://127.0.0.1:6379\"",
                    url.redacted()
                ),
            );
            return None;
        }
    }
    match url.expose().into_connection_info() {
        Ok(_) => Some(url),
        Err(error) => {
            let detail = error.detail().unwrap_or_else(|| error.category());
            check.fail(
                key,
                format!(
                    "`{}` is not a usable Redis URL ({detail}); write it like {example}",
                    url.redacted()
                ),
            );
            None
        }
    }
}
