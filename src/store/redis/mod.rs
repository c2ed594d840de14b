//! The Redis session store: sessions shared by every Cloakroom instance on
//! one Redis (or Redis Cluster), in connect-redis's record format so an
//! Express app with express-session + connect-redis shares them too (see
//! [`record`]).
//!
//! # Atomicity: optimistic compare-and-set
//! [`crate::domain::session::ops::plan`] decides what `Set-Session` does, in Rust;
//! merge patch is never re-implemented in Lua. A commit reads the record
//! (or starts from the value the cache read for the request's load, which
//! at worst is stale and costs one more round), plans, then runs a small
//! Lua script that writes only if the stored value
//! is still byte-identical to what was read. When it is not, the script
//! returns the value it found and the commit plans again on it at once, up
//! to [`MAX_ATTEMPTS`] times, then gives up with `StoreError::Unavailable`.
//! So concurrent patches to different keys never lose an update, and a
//! patch never re-creates a session that was destroyed or moved meanwhile
//! (the script finds no value and the commit reports `Vanished`). On a
//! server with its own compare-and-set (`SET ... IFEQ ... GET`, Valkey 8.1,
//! Redis 8.4; probed at connect) that command replaces the script, with
//! the same rule (see `commands`).
//!
//! Within one process, the commits on one session are applied together
//! ([`group`]): one read, the commits planned one after another in arrival
//! order, one compare-and-set. So the compare-and-set only ever races other
//! instances, and 100 concurrent patches on one instance cost a few round
//! trips, not 100 sequential ones (or 100² retries).
//!
//! - **regenerate**, one server: one script checks the old record, writes
//!   the new key and deletes the old one.
//! - **regenerate**, cluster: connect-redis keys have no hash tag, so old
//!   and new id live in different slots and no script may touch both. The
//!   new record is written first (`SET NX PX`), then a script deletes the
//!   old one if it is unchanged; if it changed, the new key is deleted and
//!   the commit starts over. A crash between the two steps leaves an
//!   unreachable copy under the new id (never sent to a client) until its
//!   TTL; the old session is intact.
//! - **destroy**: `DEL`. **touch**: `PEXPIRE`, the data is not rewritten
//!   (as connect-redis's `touch`, which leaves `cookie.expires` as it was).
//!
//! # The client-side cache
//! A load looks in [`cache`] first, a per-process cache of the records read
//! or written lately that Redis keeps correct with key tracking
//! ([`tracking`]); on a miss it reads Redis, on the worker's tracked
//! connection, and caches what it found. A commit's compare-and-set starts
//! from the cached value (what it writes is checked against Redis as
//! above), goes on the same connection, and leaves what it wrote in the
//! cache.
//!
//! # Failures
//! Every command runs under `store.command_timeout`, including the wait for
//! a reconnection; a failure or timeout is `StoreError::Unavailable`, which
//! the proxy answers with 503 and `Retry-After` without touching the
//! cookie. A timed-out write may still have happened in Redis; it is never
//! reported as done when it was not.

mod cache;
mod cache_entry;
mod commands;
mod conn;
mod group;
pub mod record;
pub mod settings;
mod tracking;
mod users;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Commit, Committed, Loaded, SessionStore, StoreError, Stored, Times};
use crate::domain::session::lifetime::{Lifetimes, Stamp};
use crate::domain::session::ops::{self, Plan};
use crate::domain::session::{SessionData, SessionId};
use cache::{Guard, Hit, SessionCache};
use commands::Scripts;
use conn::Connection;
use group::Known;
use settings::RedisConfig;

pub use cache::CacheStats;
pub use conn::ConnectError;
pub use record::RecordCookie;

/// Compare-and-set rounds before a commit gives up. A retry is one round
/// trip, so 64 take milliseconds. Why not 16: with two instances (in one
/// test process) each writing one session from 50 requests at once, the
/// rounds a commit lost in a row fell off geometrically, but with a tail
/// reaching 13 to 25 in 20 runs depending on CPU load, so 16 failed about
/// one run in twenty. 64 leaves a wide margin; a commit that still loses
/// gets a 503 (nothing is lost silently).
pub const MAX_ATTEMPTS: usize = 64;

/// Cheap to clone: clones share the connection and the write queues.
#[derive(Clone)]
pub struct RedisStore {
    /// One connection per worker thread (one in all for a cluster).
    connections: Arc<[Connection]>,
    shared: Arc<Shared>,
}

struct Shared {
    prefix: String,
    cookie: RecordCookie,
    command_timeout: Duration,
    scripts: Scripts,
    /// The write queues, striped by session id (see [`group`]).
    stripes: Box<[group::Stripe]>,
    /// The client-side cache; `None` when `store.cache_sessions` is 0 (or
    /// on a cluster).
    cache: Option<Cache>,
    /// Whether session writes use the server's own compare-and-set
    /// (`SET ... IFEQ ... GET`, see `commands`): probed at connect on a
    /// single server, turned off if the server later refuses it.
    native_cas: AtomicBool,
}

struct Cache {
    cache: Arc<SessionCache>,
    /// What the tracked connections' tasks connect with.
    tracker: tracking::Tracker,
}

impl RedisStore {
    /// Connects and checks that Redis answers; fails with a message naming
    /// the URL (password masked) when it does not.
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        Self::connect_per_worker(config, 1).await
    }

    /// As [`Self::connect`], with one multiplexed connection per worker
    /// thread, so a request's Redis I/O stays on its own thread.
    pub async fn connect_per_worker(
        config: &RedisConfig,
        workers: usize,
    ) -> Result<Self, ConnectError> {
        let connections: Arc<[Connection]> = Connection::open_many(config, workers).await?.into();
        let cache = match (&config.endpoint, config.cache_sessions) {
            (settings::RedisEndpoint::Single(url), sessions) if sessions > 0 => {
                let cache = Arc::new(SessionCache::new(sessions, connections.len()));
                let tracker = tracking::Tracker {
                    client: conn::tracking_client(url, config)?,
                    prefix: config.prefix.clone(),
                    connect_timeout: config.connect_timeout,
                    command_timeout: config.command_timeout,
                };
                Some(Cache { cache, tracker })
            }
            _ => None,
        };
        let native_cas = match &config.endpoint {
            settings::RedisEndpoint::Single(_) => {
                let connection = connections[0].clone();
                commands::probe_native_cas(connection, &config.prefix, config.command_timeout).await
            }
            _ => false,
        };
        tracing::info!(
            redis = %config.endpoint.redacted(),
            prefix = %config.prefix,
            compare_and_set = if native_cas { "SET IFEQ" } else { "script" },
            "Redis session store connected"
        );
        Ok(Self {
            connections,
            shared: Arc::new(Shared {
                prefix: config.prefix.clone(),
                cookie: config.record_cookie.clone(),
                command_timeout: config.command_timeout,
                scripts: Scripts::new(),
                stripes: (0..group::STRIPES)
                    .map(|_| group::Stripe::default())
                    .collect(),
                cache,
                native_cas: AtomicBool::new(native_cas),
            }),
        })
    }

    /// Whether session writes use the server's own compare-and-set
    /// (`SET ... IFEQ`) rather than the script.
    pub fn native_compare_and_set(&self) -> bool {
        self.shared.native_cas.load(Ordering::Relaxed)
    }

    /// What `/metrics` shows of the client-side cache; `None` without one.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache().map(SessionCache::stats)
    }

    /// The task that keeps worker `worker`'s tracked connection, to be run
    /// on that worker's runtime; `None` without a cache. Until it runs, the
    /// worker's loads read Redis and fill nothing.
    pub fn worker_task(
        &self,
        worker: usize,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let cache = self.shared.cache.as_ref()?;
        let guard = cache.cache.guard_of(worker);
        Some(cache.tracker.clone().task(&cache.cache, guard))
    }

    fn cache(&self) -> Option<&SessionCache> {
        self.shared.cache.as_ref().map(|cache| &*cache.cache)
    }

    /// The cache and the calling worker's tracked connection, while that
    /// connection tracks: where a read or compare-and-set that may fill
    /// the cache goes.
    fn tracked(&self) -> Option<(&SessionCache, Guard, Connection)> {
        let cache = self.cache()?;
        let guard = cache.guard_of(crate::util::worker::current());
        let connection = cache.connection(guard)?;
        Some((cache, guard, Connection::Tracked(connection)))
    }

    /// Drops what the cache holds for the session at Redis key `key`: after
    /// every write of this process on its plain connection, so that it
    /// never reads back its own old data.
    pub(super) fn forget(&self, key: &str) {
        if let Some(cache) = self.cache() {
            if let Some(id) = key.strip_prefix(self.shared.prefix.as_str()) {
                cache.forget(id);
            }
        }
    }

    /// The record last read or written for `id`, decoded, when the cache
    /// holds it: where a commit's compare-and-set may start instead of a
    /// `GET`.
    fn cached_record(&self, id: &SessionId) -> Option<Known> {
        let cached = self.cache()?.entry(id.as_str())?;
        Some(Known {
            raw: cached.raw,
            decoded: Some(cached.decoded),
        })
    }

    /// A load answered from the cache; `None` when the session is past a
    /// deadline of its stamp (the caller deletes it).
    fn load_cached(cached: Hit, with_expiry: bool) -> Option<Loaded> {
        let now = unix_millis(SystemTime::now());
        let stamp = cached.stamp.unwrap_or_default();
        if stamp.is_expired(now) {
            return None;
        }
        let expires_in = match (with_expiry, cached.expires) {
            (true, Some(at)) => {
                Some(at.saturating_duration_since(crate::util::coarse_clock::now()))
            }
            _ => None,
        };
        Some(Loaded::Live(Stored {
            data: cached.data,
            times: times(&stamp, now, expires_in),
        }))
    }

    /// The Redis key of a session: `<prefix><id>`, as connect-redis.
    pub fn key(&self, id: &SessionId) -> String {
        let (prefix, id) = (self.shared.prefix.as_str(), id.as_str());
        let mut key = String::with_capacity(prefix.len() + id.len());
        key.push_str(prefix);
        key.push_str(id);
        key
    }

    /// The stored value for `data` with its `stamp` and the record's
    /// cookie object refreshed (a new one when `cookie` is absent), its
    /// TTL in ms (the nearest of `ttl`, the session's default life, and
    /// the stamp's deadlines), and where the cookie object sits in it.
    fn encode(
        &self,
        cookie: record::StoredCookie<'_>,
        stamp: Stamp,
        data: &SessionData,
        ttl: Duration,
    ) -> (Vec<u8>, u64, std::ops::Range<usize>) {
        let now = SystemTime::now();
        let ttl = stamp.ttl(unix_millis(now), ttl);
        let settings = &self.shared.cookie;
        let expiry = settings.expiry(now, ttl);
        let cookie = settings.rendered_for_write(cookie, ttl, expiry);
        let millis = record::ttl_millis(expiry, now, ttl);
        let value = record::encode_data(&cookie, Some(stamp), data);
        (value, millis, record::cookie_place(cookie.len()))
    }
}

/// Unix time in ms: the clock of the stamps in Redis records (shared by
/// every instance).
pub(super) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A stamp for a session written now: `kept`, or a fresh one, remembered
/// if asked.
pub(super) fn stamp_for(
    kept: Option<Stamp>,
    lifetimes: Lifetimes,
    remember: Option<Duration>,
) -> Stamp {
    let now = unix_millis(SystemTime::now());
    let stamp = kept.unwrap_or_else(|| Stamp::new(now, lifetimes));
    match remember {
        Some(lifetime) => stamp.remembered(now, lifetime),
        None => stamp,
    }
}

impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId, with_expiry: bool) -> Result<Loaded, StoreError> {
        // The round trips are boxed: their futures are large, and a cache
        // hit should not carry (and copy) their room.
        if let Some(cached) = self.cache().and_then(|cache| cache.get(id.as_str())) {
            if let Some(loaded) = Self::load_cached(cached, with_expiry) {
                return Ok(loaded);
            }
            Box::pin(self.delete(&self.key(id))).await?;
            return Ok(Loaded::Expired);
        }
        Box::pin(self.load_missed(id, with_expiry)).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<Committed, StoreError> {
        let Some(current_id) = commit.current else {
            return match ops::plan(None, commit.ops, commit.max_bytes, None)? {
                Plan::Keep => Ok(Committed::Unchanged),
                Plan::Delete => Ok(Committed::Destroyed),
                Plan::Write { data, remember, .. } => {
                    let stamp = stamp_for(None, commit.lifetimes, remember);
                    let (value, millis, cookie_at) =
                        self.encode(record::StoredCookie::Absent, stamp, &data, commit.ttl);
                    let written = record::Decoded {
                        data: Arc::new(data.text_copy()),
                        // The stamp as a read of the record will find it.
                        stamp: Some(stamp).filter(Stamp::is_set),
                        cookie_at: Some(cookie_at),
                    };
                    let fresh_id = commit.fresh_id();
                    Box::pin(self.create(&fresh_id, &value, millis, &written)).await?;
                    Ok(Committed::Saved {
                        id: fresh_id,
                        data,
                        remember: stamp.remember.map(Duration::from_millis),
                    })
                }
            };
        };
        self.enqueue(current_id, commit).await
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.expire(&self.key(id), millis).await
    }
}

impl RedisStore {
    /// A load the cache could not answer: from Redis, on the worker's
    /// tracked connection (filling the cache) while it tracks.
    async fn load_missed(&self, id: &SessionId, with_expiry: bool) -> Result<Loaded, StoreError> {
        let Some((cache, guard, connection)) = self.tracked() else {
            let connection = self.connection();
            let (loaded, _) = self.load_from_redis(connection, id, with_expiry).await?;
            return Ok(loaded);
        };
        // Claimed before the read leaves, so that a change meanwhile keeps
        // what it read out of the cache (see `cache`).
        let ticket = cache.reserve(id.as_str(), guard);
        let loaded = self.load_from_redis(connection, id, true).await;
        if let Some(ticket) = ticket {
            match &loaded {
                Ok((Loaded::Live(stored), Some(fetched))) => cache.fill(
                    id.as_str(),
                    ticket,
                    &fetched.raw,
                    &record::Decoded {
                        data: Arc::clone(&stored.data),
                        stamp: fetched.stamp,
                        cookie_at: None,
                    },
                    fetched.ttl,
                ),
                _ => cache.forget(id.as_str()),
            }
        }
        let (mut loaded, _) = match loaded {
            Ok(loaded) => loaded,
            // The tracked connection failed (its task turns the cache off
            // for this worker once it notices): a read can be sent again,
            // on the plain connection, which reconnects by itself.
            Err(_) => {
                let connection = self.connection();
                self.load_from_redis(connection, id, with_expiry).await?
            }
        };
        if let (Loaded::Live(stored), false) = (&mut loaded, with_expiry) {
            stored.times.expires_in = None;
        }
        Ok(loaded)
    }

    /// A load from Redis on `connection`; for a live session, also what
    /// the cache keeps.
    async fn load_from_redis(
        &self,
        connection: Connection,
        id: &SessionId,
        with_ttl: bool,
    ) -> Result<(Loaded, Option<Fetched>), StoreError> {
        let key = self.key(id);
        let (bytes, ttl) = if with_ttl {
            self.get_with_ttl(connection, &key).await?
        } else {
            (self.get(&key).await?, None)
        };
        let Some(bytes) = bytes else {
            return Ok((Loaded::Missing, None));
        };
        let Some((stamp, data)) = record::decode_data(&bytes) else {
            tracing::warn!("a Redis session record is not a JSON object; treated as no session");
            return Ok((Loaded::Missing, None));
        };
        let now = unix_millis(SystemTime::now());
        let read_stamp = stamp;
        let stamp = stamp.unwrap_or_default();
        if stamp.is_expired(now) {
            // Redis lets it go at the same deadline; this makes sure.
            self.delete(&key).await?;
            return Ok((Loaded::Expired, None));
        }
        let ttl = ttl.map(Duration::from_millis);
        let stored = Stored {
            // The cache keeps it: text only (a parsed map would take
            // several times the memory, for every cached session).
            data: Arc::new(SessionData::rendered(&data)),
            times: times(&stamp, now, ttl),
        };
        let fetched = Fetched {
            raw: bytes,
            stamp: read_stamp,
            ttl,
        };
        Ok((Loaded::Live(stored), Some(fetched)))
    }
}

/// A live record as read, beside its decoding: what the cache keeps.
struct Fetched {
    raw: Vec<u8>,
    /// As read: `None` when the record has none.
    stamp: Option<Stamp>,
    /// Its time to live, when asked for and it has one.
    ttl: Option<Duration>,
}

/// A live session's times, at `now` (Unix ms).
fn times(stamp: &Stamp, now: u64, expires_in: Option<Duration>) -> Times {
    Times {
        expires_in,
        absolute_in: stamp.absolute_in(now),
        idle: stamp.idle.map(Duration::from_millis),
        remember: stamp.remember.map(Duration::from_millis),
    }
}

// Shared with the integration tests, which use more of it.
#[cfg(test)]
#[allow(dead_code)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;
