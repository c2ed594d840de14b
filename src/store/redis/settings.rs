//! A Redis store's settings, validated but not connected: where Redis is,
//! the key prefix, timeouts, and the `cookie` object written into records.

use std::fmt;
use std::time::Duration;

use super::RecordCookie;
use crate::domain::secret::Secret;

/// A Redis session store, validated but not connected.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub endpoint: RedisEndpoint,
    /// From `password_env`; overrides the URLs' passwords.
    pub password: Option<Secret>,
    pub prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// The `cookie` object written into records, from `[cookie]`.
    pub record_cookie: RecordCookie,
    /// Records the client-side cache holds at most; 0: no cache.
    pub cache_sessions: usize,
}

#[derive(Debug, Clone)]
pub enum RedisEndpoint {
    /// `store.url`: one server.
    Single(RedisUrl),
    /// `store.cluster_urls`: seed nodes of a Redis Cluster.
    Cluster(Vec<RedisUrl>),
}

impl RedisEndpoint {
    /// The config key naming the endpoint, for messages.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Single(_) => "store.url",
            Self::Cluster(_) => "store.cluster_urls",
        }
    }

    /// The URLs with their passwords masked, for messages and logs.
    pub fn redacted(&self) -> String {
        match self {
            Self::Single(url) => url.redacted(),
            Self::Cluster(urls) => urls
                .iter()
                .map(RedisUrl::redacted)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// A `redis://`, `rediss://` or (one server on this host) `unix://` URL. It
/// may hold a password (a unix URL's in its `pass` parameter), so `Debug`
/// and [`RedisUrl::redacted`] mask it; only the store reads the real text.
#[derive(Clone)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn new(text: String) -> Self {
        Self(text)
    }
}

impl RedisUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether this names a Unix domain socket (`unix://` or
    /// `redis+unix://`, redis-rs's spellings) rather than a host and port.
    pub fn is_unix_socket(&self) -> bool {
        UNIX_SCHEMES
            .iter()
            .any(|scheme| self.0.split_once("://").is_some_and(|(s, _)| s == *scheme))
    }

    /// The URL with any password replaced by `***`: the user-info one of a
    /// TCP URL, the `pass` parameter of a unix one.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.0) else {
            return "<unparsable URL>".into();
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        if url.query_pairs().any(|(key, _)| key == "pass") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "pass" {
                        "***".into()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

/// The schemes of a Unix-socket URL that redis-rs reads.
const UNIX_SCHEMES: [&str; 2] = ["unix", "redis+unix"];

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}
