//! The in-process session store: the default, and the reference for the
//! store semantics.
//!
//! Sessions live in a fixed number of shards, each a `HashMap` behind its own
//! `std::sync::Mutex`. Why a blocking mutex: every critical section is a map
//! operation plus, on commit, one merge patch; nothing awaits while a lock is
//! held, and sharding keeps two requests on different sessions off each
//! other's lock. Why shards at all: with one lock every request on every
//! core would queue on it.
//!
//! Bounded: at `max_sessions` a new session evicts an old one (expired first,
//! then empty, then closest to expiry, among a small sample — the way Redis
//! approximates LRU), so anonymous traffic cannot grow memory. A background
//! task sweeps expired sessions so memory is freed without requests.
//!
//! One clock decides expiry, for reads and writes alike ([`Clock`]): the
//! coarse clock in production (no clock read per request), tokio's clock
//! in tests, so that expiry follows paused time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{Commit, Committed, Loaded, SessionStore, StoreError, Stored, Times};
use crate::domain::session::lifetime::Stamp;
use crate::domain::session::ops::{self, Plan};
use crate::domain::session::{SessionData, SessionId};
use crate::util::coarse_clock;

/// How many entries eviction looks at to choose a victim.
const EVICTION_SAMPLE: usize = 16;
/// Upper bound on shards; fewer for small stores so the limit stays exact.
const MAX_SHARDS: usize = 64;
/// Sessions per shard below which another shard is not worth it.
const SESSIONS_PER_SHARD: usize = 1024;

struct Entry {
    data: Arc<SessionData>,
    expires: Instant,
    /// Its lifetime facts, in ms since the store's epoch.
    stamp: Stamp,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires > now
    }
}

type Shard = HashMap<SessionId, Entry, BuildHasherDefault<IdHasher>>;

/// Hashes a session id by its first eight bytes. Safe from hash flooding
/// without a keyed hash: every id in the store, and every id looked up,
/// was made by the proxy from 256 random bits (a client's id is used only
/// once its signature verified), so no one can choose ids that collide.
/// One multiplication instead of SipHash over the whole id, on every
/// request with a session.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let head = bytes.len().min(8);
        word[..head].copy_from_slice(&bytes[..head]);
        // The product carries every input bit into its top half (the
        // map's probe tags and the shard come from there); folding the top
        // half down does the same for the low bits (the map's buckets),
        // which alone would depend on the first byte or two only.
        let mixed = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 32);
    }

    fn write_u8(&mut self, byte: u8) {
        // `str`'s hash ends with a 0xff marker; it adds nothing here.
        self.0 ^= u64::from(byte);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    per_shard_limit: usize,
    evictions: AtomicU64,
    /// Read for every expiry decision.
    clock: Clock,
    /// Where the stamps' milliseconds count from.
    epoch: Instant,
    /// The session key whose presence means signed in: eviction spares
    /// such sessions while anonymous ones remain.
    identity_key: Box<str>,
}

/// The clock a memory store reads expiry from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The process's coarse clock: never ahead of real time, at most one
    /// tick (20 ms) behind. What the proxy uses.
    Coarse,
    /// tokio's clock, which tests can pause and advance.
    Tokio,
}

impl Clock {
    fn now(self) -> Instant {
        match self {
            Self::Coarse => Instant::from_std(coarse_clock::now()),
            Self::Tokio => Instant::now(),
        }
    }
}

/// Cheap to clone: clones share one store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl MemoryStore {
    /// A store holding at most `max_sessions` (at least 1). When called
    /// inside a tokio runtime it starts a sweeper that runs every
    /// `sweep_interval` and stops when the last clone of the store is dropped.
    pub fn new(max_sessions: usize, sweep_interval: Duration) -> Self {
        Self::with_clock(max_sessions, sweep_interval, Clock::Coarse)
    }

    /// [`MemoryStore::new`] on the given clock.
    pub fn with_clock(max_sessions: usize, sweep_interval: Duration, clock: Clock) -> Self {
        Self::with_options(max_sessions, sweep_interval, clock, "user")
    }

    /// [`Self::with_clock`], with the identity key (`auth.identity_key`)
    /// that eviction reads to spare signed-in sessions.
    pub fn with_options(
        max_sessions: usize,
        sweep_interval: Duration,
        clock: Clock,
        identity_key: &str,
    ) -> Self {
        let max_sessions = max_sessions.max(1);
        let shard_count = (max_sessions / SESSIONS_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        let inner = Arc::new(Inner {
            shards: (0..shard_count).map(|_| Mutex::default()).collect(),
            per_shard_limit: max_sessions.div_ceil(shard_count),
            evictions: AtomicU64::new(0),
            clock,
            epoch: clock.now(),
            identity_key: identity_key.into(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_forever(Arc::downgrade(&inner), sweep_interval));
        }
        Self { inner }
    }

    /// Sessions currently held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired session now; returns how many.
    pub fn sweep(&self) -> usize {
        self.inner.sweep()
    }
}

impl Inner {
    /// `now` in the stamps' milliseconds.
    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The entry for a session written at `now`: a fresh stamp for a new
    /// (or moved) session, the kept one otherwise, remembered if asked.
    fn entry(
        &self,
        data: Arc<SessionData>,
        kept: Option<Stamp>,
        remember: Option<Duration>,
        commit: &Commit<'_>,
        now: Instant,
    ) -> Entry {
        let millis = self.millis(now);
        let mut stamp = kept.unwrap_or_else(|| Stamp::new(millis, commit.lifetimes));
        if let Some(lifetime) = remember {
            stamp = stamp.remembered(millis, lifetime);
        }
        Entry {
            data,
            expires: now + stamp.ttl(millis, commit.ttl),
            stamp,
        }
    }

    fn shard(&self, id: &str) -> &Mutex<Shard> {
        let mut hasher = IdHasher::default();
        hasher.write(id.as_bytes());
        // The top bits: the map inside the shard starts from the low ones.
        // The shard count is a power of two.
        let index = (hasher.finish() >> 32) as usize & (self.shards.len() - 1);
        &self.shards[index]
    }

    fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|_, entry| entry.is_live(now));
            removed += before - map.len();
        }
        removed
    }

    /// Inserts into a shard, evicting one entry when the shard is full.
    fn insert(&self, id: SessionId, entry: Entry, now: Instant) -> Result<(), StoreError> {
        let mut map = lock(self.shard(id.as_str()));
        if map.len() >= self.per_shard_limit && !map.contains_key(id.as_str()) {
            let victim = choose_victim(&map, now, &self.identity_key).ok_or(StoreError::Full)?;
            map.remove(&victim);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        map.insert(id, entry);
        Ok(())
    }
}

/// The session to evict from a full shard: among a sample, an expired one,
/// else an anonymous one (empty first), else the one expiring soonest. When
/// the sample holds only live signed-in sessions, the whole shard is
/// searched for an anonymous or expired one first: an anonymous flood never
/// evicts a signed-in session while an anonymous one remains.
fn choose_victim(map: &Shard, now: Instant, identity_key: &str) -> Option<SessionId> {
    let rank = |entry: &Entry| {
        (
            entry.is_live(now),
            entry.data.is_logged_in(identity_key),
            !entry.data.is_empty(),
            entry.expires,
        )
    };
    let (id, entry) = map
        .iter()
        .take(EVICTION_SAMPLE)
        .min_by_key(|(_, entry)| rank(entry))?;
    if entry.is_live(now) && entry.data.is_logged_in(identity_key) {
        if let Some((anonymous, _)) = map
            .iter()
            .filter(|(_, e)| !e.is_live(now) || !e.data.is_logged_in(identity_key))
            .min_by_key(|(_, e)| rank(e))
        {
            return Some(anonymous.clone());
        }
    }
    Some(id.clone())
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn sweep_forever(inner: Weak<Inner>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.tick().await;
    let mut reported_evictions = 0;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let swept = inner.sweep();
        let evictions = inner.evictions.load(Ordering::Relaxed);
        if evictions > reported_evictions {
            tracing::warn!(
                evicted = evictions - reported_evictions,
                "memory store is full: live sessions were evicted; raise [store] max_sessions"
            );
            reported_evictions = evictions;
        }
        tracing::debug!(swept, "expired sessions swept");
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId, _with_expiry: bool) -> Result<Loaded, StoreError> {
        let now = self.inner.clock.now();
        let millis = self.inner.millis(now);
        let mut map = lock(self.inner.shard(id.as_str()));
        let Some(entry) = map.get(id.as_str()) else {
            return Ok(Loaded::Missing);
        };
        if !entry.is_live(now) || entry.stamp.is_expired(millis) {
            map.remove(id.as_str());
            return Ok(Loaded::Expired);
        }
        let stamp = entry.stamp;
        Ok(Loaded::Live(Stored {
            data: entry.data.clone(),
            times: Times {
                expires_in: Some(entry.expires.saturating_duration_since(now)),
                absolute_in: stamp.absolute_in(millis),
                idle: stamp.idle.map(Duration::from_millis),
                remember: stamp.remember.map(Duration::from_millis),
            },
        }))
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<Committed, StoreError> {
        let now = self.inner.clock.now();
        let Some(current_id) = commit.current else {
            return match ops::plan(None, commit.ops, commit.max_bytes, None)? {
                Plan::Keep => Ok(Committed::Unchanged),
                Plan::Delete => Ok(Committed::Destroyed),
                Plan::Write { data, remember, .. } => {
                    let entry = self.inner.entry(data.clone(), None, remember, &commit, now);
                    let remember = entry.stamp.remember.map(Duration::from_millis);
                    self.inner.insert(commit.fresh_id.clone(), entry, now)?;
                    Ok(Committed::Saved {
                        id: commit.fresh_id,
                        data,
                        remember,
                    })
                }
            };
        };
        let mut map = lock(self.inner.shard(current_id.as_str()));
        let millis = self.inner.millis(now);
        let (current, stamp) = match map.get(current_id.as_str()) {
            Some(entry) if entry.is_live(now) && !entry.stamp.is_expired(millis) => {
                (entry.data.clone(), entry.stamp)
            }
            _ => return Ok(Committed::Vanished),
        };
        match ops::plan(
            Some(&current),
            commit.ops,
            commit.max_bytes,
            commit.rotate_on,
        )? {
            Plan::Keep => Ok(Committed::Unchanged),
            Plan::Delete => {
                map.remove(current_id.as_str());
                Ok(Committed::Destroyed)
            }
            Plan::Write {
                data,
                fresh_id: false,
                remember,
            } => {
                let entry = self
                    .inner
                    .entry(data.clone(), Some(stamp), remember, &commit, now);
                let remember = entry.stamp.remember.map(Duration::from_millis);
                map.insert(current_id.clone(), entry);
                Ok(Committed::Saved {
                    id: current_id.clone(),
                    data,
                    remember,
                })
            }
            Plan::Write {
                data,
                fresh_id: true,
                remember,
            } => {
                map.remove(current_id.as_str());
                // Never hold two shard locks at once: no lock-order deadlocks.
                drop(map);
                // A moved session starts its lifetime again (a login), and
                // stays remembered.
                let remember = remember.or(stamp.remember.map(Duration::from_millis));
                let entry = self.inner.entry(data.clone(), None, remember, &commit, now);
                let remember = entry.stamp.remember.map(Duration::from_millis);
                self.inner.insert(commit.fresh_id.clone(), entry, now)?;
                Ok(Committed::Saved {
                    id: commit.fresh_id,
                    data,
                    remember,
                })
            }
        }
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.inner.clock.now();
        let mut map = lock(self.inner.shard(id.as_str()));
        match map.get_mut(id.as_str()) {
            Some(entry) if entry.is_live(now) => {
                // Never past the session's absolute deadline.
                let left = entry.stamp.ttl(self.inner.millis(now), ttl);
                entry.expires = now + ttl.min(left);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    fn store() -> MemoryStore {
        MemoryStore::with_clock(1000, Duration::from_secs(3600), Clock::Tokio)
    }

    // Expiry on tokio's paused clock: no real sleeping.
    conformance::suite!(paused store);

    #[test]
    fn ids_spread_over_shards_buckets_and_probe_tags() {
        use std::collections::HashSet;
        use std::hash::BuildHasher;
        let hashes: Vec<u64> = (0..4096)
            .map(|_| BuildHasherDefault::<IdHasher>::default().hash_one(SessionId::generate()))
            .collect();
        let distinct: HashSet<_> = hashes.iter().collect();
        assert_eq!(distinct.len(), hashes.len(), "colliding hashes");
        let shards: HashSet<_> = hashes.iter().map(|h| (h >> 32) & 63).collect();
        assert_eq!(shards.len(), 64, "shards left empty");
        let buckets: HashSet<_> = hashes.iter().map(|h| h & 1023).collect();
        assert!(buckets.len() > 900, "low bits: {} of 1024", buckets.len());
        let tags: HashSet<_> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(tags.len(), 128, "top bits unused");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_sessions_are_swept_without_any_request() {
        let store = MemoryStore::with_clock(1000, Duration::from_secs(1), Clock::Tokio);
        let id = conformance::create(
            &store,
            serde_json::json!({"user": "ada"}),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(store.len(), 1);
        tokio::time::sleep(Duration::from_secs(7)).await;
        // Let the sweeper run.
        tokio::task::yield_now().await;
        assert_eq!(store.len(), 0, "sweeper should have freed {id:?}");
    }

    #[tokio::test]
    async fn the_limit_holds_and_evicts_empty_sessions_first() {
        let store = MemoryStore::new(3, Duration::from_secs(3600));
        let ttl = Duration::from_secs(60);
        let empty = conformance::create(&store, serde_json::json!({}), ttl).await;
        let a = conformance::create(&store, serde_json::json!({"user": "a"}), ttl).await;
        let b = conformance::create(&store, serde_json::json!({"user": "b"}), ttl).await;
        let c = conformance::create(&store, serde_json::json!({"user": "c"}), ttl).await;
        assert_eq!(store.len(), 3);
        assert!(store.load(&empty, true).await.unwrap().live().is_none());
        for id in [a, b, c] {
            assert!(store.load(&id, true).await.unwrap().live().is_some());
        }
    }

    #[tokio::test]
    async fn an_anonymous_flood_never_evicts_signed_in_sessions() {
        // More than the sample per shard, so the sample alone would miss.
        let store = MemoryStore::with_options(64, Duration::from_secs(3600), Clock::Coarse, "user");
        let ttl = Duration::from_secs(60);
        let mut signed_in = Vec::new();
        for index in 0..40 {
            let data = serde_json::json!({"user": {"id": index}});
            signed_in.push(conformance::create(&store, data, ttl).await);
        }
        for index in 0..1000 {
            conformance::create(&store, serde_json::json!({"cart": index}), ttl).await;
        }
        assert_eq!(store.len(), 64, "the bound holds");
        for id in signed_in {
            assert!(
                store.load(&id, true).await.unwrap().live().is_some(),
                "a signed-in session was evicted"
            );
        }
    }
}
