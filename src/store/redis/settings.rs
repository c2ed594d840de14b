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

/// A `redis://` or `rediss://` URL. It may hold a password, so `Debug` and
/// [`RedisUrl::redacted`] mask it; only the store reads the real text.
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

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(url) => url.to_string(),
            Err(_) => "<unparsable URL>".into(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}
