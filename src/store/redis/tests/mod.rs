//! The conformance suite (on one server and on a cluster) and the
//! Redis-specific checks, each against its own `redis-server` (or
//! `REDIS_URL`): the record format, concurrent writers, connecting.

use std::time::Duration;

use super::test_server::{external_url, RedisCluster, RedisServer};
use super::*;
use crate::config::{Config, StoreConfig};
use crate::domain::session::ops::SessionOp;
use crate::store::conformance;

/// A store with the server(s) it talks to, stopped when this drops.
pub(crate) struct Harness {
    pub(super) store: RedisStore,
    pub(super) server: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

impl SessionStore for Harness {
    async fn load(&self, id: &SessionId, with_expiry: bool) -> Result<Loaded, StoreError> {
        self.store.load(id, with_expiry).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<Committed, StoreError> {
        self.store.commit(commit).await
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        self.store.touch(id, ttl).await
    }
}

/// The `[store]` part of a configuration, through the real config pipeline.
pub(super) fn redis_config(store_toml: &str, cookie_toml: &str) -> RedisConfig {
    let text = format!(
        "upstream.url = \"http://127.0.0.1:1\"\nsession.secrets = [\"0123456789abcdef0123456789abcdef\"]\n[cookie]\n{cookie_toml}\n[store]\nkind = \"redis\"\n{store_toml}"
    );
    match Config::from_toml_str(&text) {
        Ok(Config {
            store: StoreConfig::Redis(redis),
            ..
        }) => redis,
        Ok(_) => unreachable!("kind is redis"),
        Err(error) => panic!("test config invalid: {error}"),
    }
}

pub(super) async fn harness_with(test: &str, cookie_toml: &str) -> Option<Harness> {
    let (url, server) = match external_url() {
        Some(url) => (url, None),
        None => {
            let server = RedisServer::start(test)?;
            (server.url(), Some(server))
        }
    };
    let config = redis_config(&format!("url = \"{url}\""), cookie_toml);
    let store = RedisStore::connect(&config).await.unwrap();
    Some(Harness {
        store,
        server,
        _cluster: None,
    })
}

/// A harness on a redis-server of its own, even when `REDIS_URL` names a
/// shared one: for tests that pause it, flush its scripts or cut its
/// connections.
pub(super) async fn own_harness(test: &str) -> Option<Harness> {
    let server = RedisServer::start(test)?;
    let config = redis_config(&format!("url = \"{}\"", server.url()), "");
    let store = RedisStore::connect(&config).await.unwrap();
    Some(Harness {
        store,
        server: Some(server),
        _cluster: None,
    })
}

/// An [`own_harness`] once its worker 0 tracks.
pub(super) async fn own_tracked_harness(test: &str) -> Option<Harness> {
    Some(tracking(own_harness(test).await?).await)
}

impl Harness {
    /// The redis-server of an [`own_harness`].
    pub(super) fn own_server(&self) -> &RedisServer {
        self.server
            .as_ref()
            .expect("a harness made by own_harness has its own redis-server")
    }
}

async fn harness() -> Option<Harness> {
    harness_with("redis store conformance", "").await
}

conformance::suite!(async harness);

/// A harness whose worker 0 tracks: loads and compare-and-sets go
/// through the tracked connection and fill the cache.
pub(super) async fn tracked_harness(test: &str) -> Option<Harness> {
    Some(tracking(harness_with(test, "").await?).await)
}

/// `harness` once its worker 0's tracked connection is up.
pub(super) async fn tracking(harness: Harness) -> Harness {
    let task = harness.store.worker_task(0).expect("the store has a cache");
    tokio::spawn(task);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !harness
        .store
        .cache_stats()
        .is_some_and(|stats| stats.tracking)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "tracking never came on"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    harness
}

/// A store on its own Valkey (8.1 or later), which has the native
/// compare-and-set: `store_toml` added to its `[store]`.
pub(super) async fn valkey_harness(test: &str, store_toml: &str) -> Option<Harness> {
    let server = RedisServer::start_valkey(test)?;
    let config = redis_config(&format!("url = \"{}\"\n{store_toml}", server.url()), "");
    let store = RedisStore::connect(&config).await.unwrap();
    assert!(store.native_compare_and_set(), "Valkey 8.1 has SET IFEQ");
    Some(Harness {
        store,
        server: Some(server),
        _cluster: None,
    })
}

/// The same suite with the client-side cache tracking: loads and
/// compare-and-sets go through the tracked connection and fill the cache.
mod with_the_cache_tracking {
    use super::*;

    async fn tracked() -> Option<Harness> {
        tracked_harness("redis store conformance, cache tracking").await
    }

    conformance::suite!(async tracked);
}

/// The same suite where writes use the server's own compare-and-set
/// (`SET ... IFEQ ... GET`), tracked as in production: in a transaction
/// with the read that tracks the key again.
mod with_the_native_compare_and_set {
    use super::*;

    async fn tracked() -> Option<Harness> {
        let test = "redis store conformance, native compare-and-set";
        Some(tracking(valkey_harness(test, "").await?).await)
    }

    conformance::suite!(async tracked);
}

/// The same, without the cache: the plain `SET ... IFEQ ... GET`.
mod with_the_native_compare_and_set_untracked {
    use super::*;

    async fn untracked() -> Option<Harness> {
        let test = "redis store conformance, native compare-and-set, no cache";
        valkey_harness(test, "cache_sessions = 0").await
    }

    conformance::suite!(async untracked);
}

/// The same suite on a server reached through a Unix socket (`unix://`),
/// tracked as in production: the tracked connections, their invalidations
/// and the compare-and-set all go over the socket.
mod over_a_unix_socket {
    use super::*;

    async fn tracked() -> Option<Harness> {
        let server = RedisServer::start_with_socket("redis store conformance over a unix socket")?;
        let config = redis_config(&format!("url = \"{}\"", server.socket_url()), "");
        let store = RedisStore::connect(&config).await.unwrap();
        let harness = Harness {
            store,
            server: Some(server),
            _cluster: None,
        };
        Some(tracking(harness).await)
    }

    conformance::suite!(async tracked);
}

/// The same suite on a three-node Redis Cluster: regenerate crosses slots.
mod on_a_cluster {
    use super::*;

    async fn cluster_harness() -> Option<Harness> {
        let cluster = RedisCluster::start("redis store conformance on a cluster")?;
        let urls: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
        let config = redis_config(&format!("cluster_urls = [{}]", urls.join(", ")), "");
        let store = RedisStore::connect(&config).await.unwrap();
        Some(Harness {
            store,
            server: None,
            _cluster: Some(cluster),
        })
    }

    conformance::suite!(async cluster_harness);
}

pub(super) fn patch(value: serde_json::Value) -> SessionOp {
    match value {
        serde_json::Value::Object(map) => SessionOp::Patch(map.into()),
        other => panic!("not an object: {other}"),
    }
}

/// A commit on `store` patching `value` into `id`, with `lifetimes`.
pub(super) async fn patch_with(
    store: &RedisStore,
    id: &SessionId,
    value: serde_json::Value,
    lifetimes: crate::domain::session::lifetime::Lifetimes,
) -> Committed {
    let ops = [patch(value)];
    let commit = Commit {
        current: Some(id),
        ops: &ops,
        fresh_id: None,
        ttl: Duration::from_secs(60),
        max_bytes: 65536,
        rotate_on: None,
        lifetimes,
    };
    store.commit(commit).await.unwrap()
}

pub(super) async fn raw_get(store: &RedisStore, key: &str) -> Option<String> {
    let bytes = store.get(key).await.unwrap()?;
    Some(String::from_utf8(bytes).unwrap())
}

/// The URL of the Redis a harness talks to.
pub(super) fn url_of(h: &Harness) -> String {
    h.server
        .as_ref()
        .map_or_else(|| external_url().unwrap_or_default(), RedisServer::url)
}

mod concurrency;
mod connection;
mod records;
