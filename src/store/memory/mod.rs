//! The in-process session store: the default, and the reference for the
//! store semantics.
//!
//! Sessions live in a fixed number of shards, each a [`Shard`] behind its
//! own `std::sync::Mutex`. Why a blocking mutex: every critical section is
//! a table operation plus, on commit, one merge patch; nothing awaits while
//! a lock is held, and sharding keeps two requests on different sessions
//! off each other's lock. Why shards at all: with one lock every request
//! on every core would queue on it.
//!
//! Bounded: at `max_sessions` a new session evicts an old one (expired first,
//! then empty, then closest to expiry, among a small sample — the way Redis
//! approximates LRU), so anonymous traffic cannot grow memory. A background
//! task sweeps expired sessions so memory is freed without requests.
//!
//! One clock decides expiry, for reads and writes alike ([`Clock`]): the
//! coarse clock in production (no clock read per request), tokio's clock
//! in tests, so that expiry follows paused time.
//!
//! Compact, since a busy site keeps millions of sessions here: a session
//! is filed under its id's 32 bytes ([`key`]) in a packed [`Entry`] of 64
//! bytes that holds a JSON of up to 22 bytes itself (a larger one is boxed
//! beside it), the one form of its data kept ([`entry`]); a shard's table
//! is a dense vector with a table of positions ([`crate::store::slab`]);
//! the user index keeps 40 bytes per member ([`index`]). One million
//! signed-in sessions of `{"user":"alice"}` take about 145 bytes each,
//! index and allocator slack included (`bench/footprint.sh`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

mod agents;
mod entry;
mod index;
mod key;
mod members;
mod shard;

use self::entry::{Entry, Nanos};
use self::key::Key;
use self::shard::Shard;
use super::{Commit, Committed, Loaded, SessionStore, StoreError, Stored, Times};
use crate::domain::session::lifetime::Stamp;
use crate::domain::session::ops::{self, Plan};
use crate::domain::session::{SessionData, SessionId};
use crate::util::coarse_clock;
use crate::util::own_lines::OwnLines;

/// Upper bound on shards; fewer for small stores so the limit stays exact.
const MAX_SHARDS: usize = 64;
/// Sessions per shard below which another shard is not worth it.
const SESSIONS_PER_SHARD: usize = 1024;
/// Largest `max_sessions`: a shard's positions are 32-bit.
const MAX_SESSIONS: usize = u32::MAX as usize;

struct Inner {
    /// Each on lines of its own: see [`OwnLines`].
    shards: Box<[OwnLines<Mutex<Shard>>]>,
    per_shard_limit: usize,
    evictions: AtomicU64,
    /// Read for every expiry decision.
    clock: Clock,
    /// Where expiries' nanoseconds and the stamps' milliseconds count from.
    epoch: Instant,
    /// The session key whose presence means signed in: eviction spares
    /// such sessions while anonymous ones remain.
    identity_key: Box<str>,
    /// The user index (see [`index`]).
    users: index::Users,
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
    /// A store holding at most `max_sessions` (at least 1, at most
    /// `u32::MAX`). When called inside a tokio runtime it starts a sweeper
    /// that runs every `sweep_interval` and stops when the last clone of
    /// the store is dropped.
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
        let max_sessions = max_sessions.clamp(1, MAX_SESSIONS);
        let shard_count = (max_sessions / SESSIONS_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        let inner = Arc::new(Inner {
            shards: (0..shard_count).map(|_| OwnLines::default()).collect(),
            per_shard_limit: max_sessions.div_ceil(shard_count),
            evictions: AtomicU64::new(0),
            clock,
            epoch: clock.now(),
            identity_key: identity_key.into(),
            users: index::Users::default(),
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

/// Saturating nanoseconds of a duration.
fn nanos(duration: Duration) -> Nanos {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The error for a fresh id that [`SessionId::generate`] did not make:
/// the proxy only ever passes generated ones.
fn not_generated() -> StoreError {
    StoreError::Unavailable("the memory store takes only ids made by SessionId::generate".into())
}

/// What a write in place keeps of the entry it replaces.
struct Kept {
    stamp: Stamp,
    /// Whether it was signed in, when the write cannot have changed that.
    logged_in: Option<bool>,
}

impl Inner {
    /// `now` in expiry nanoseconds.
    fn nanos(&self, now: Instant) -> Nanos {
        nanos(now.saturating_duration_since(self.epoch))
    }

    /// `now` in the stamps' milliseconds.
    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The entry for a session written at `now`: a fresh stamp for a new
    /// (or moved) session, the kept one otherwise, remembered if asked.
    fn entry(
        &self,
        key: Key,
        data: &SessionData,
        kept: Option<Kept>,
        remember: Option<Duration>,
        commit: &Commit<'_>,
        now: Instant,
    ) -> (Entry, Stamp) {
        let millis = self.millis(now);
        let (kept_stamp, kept_logged_in) =
            kept.map_or((None, None), |kept| (Some(kept.stamp), kept.logged_in));
        let mut stamp = kept_stamp.unwrap_or_else(|| Stamp::new(millis, commit.lifetimes));
        if let Some(lifetime) = remember {
            stamp = stamp.remembered(millis, lifetime);
        }
        let expires = self
            .nanos(now)
            .saturating_add(nanos(stamp.ttl(millis, commit.ttl)));
        let logged_in = kept_logged_in.unwrap_or_else(|| data.is_logged_in(&self.identity_key));
        (Entry::new(key, data, &stamp, expires, logged_in), stamp)
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        self.shard_of(key.hash())
    }

    /// The shard of a key with `hash`, or of a prefix.
    fn shard_of(&self, hash: u64) -> &Mutex<Shard> {
        // The top bits: the table inside the shard starts from the low
        // ones. The shard count is a power of two.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        &self.shards[index]
    }

    fn sweep(&self) -> usize {
        let now = self.nanos(self.clock.now());
        self.shards.iter().map(|shard| lock(shard).sweep(now)).sum()
    }

    /// Inserts into a shard, evicting one entry when the shard is full.
    fn insert(&self, entry: Entry, now: Instant) -> Result<(), StoreError> {
        let key = *entry.key();
        let mut shard = lock(self.shard(&key));
        if shard.len() >= self.per_shard_limit && !shard.contains(&key) {
            if !shard.evict(self.nanos(now), key.hash()) {
                return Err(StoreError::Full);
            }
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        shard.insert(entry);
        Ok(())
    }

    /// Writes `data` as a session new at `now` under `fresh_id`.
    fn create(
        &self,
        fresh_id: SessionId,
        data: Arc<SessionData>,
        remember: Option<Duration>,
        commit: &Commit<'_>,
        now: Instant,
    ) -> Result<Committed, StoreError> {
        let key = Key::of(&fresh_id).ok_or_else(not_generated)?;
        let (entry, stamp) = self.entry(key, &data, None, remember, commit, now);
        self.insert(entry, now)?;
        Ok(Committed::Saved {
            id: fresh_id,
            data,
            remember: stamp.remember.map(Duration::from_millis),
        })
    }
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
        let unindexed = inner.sweep_users();
        tracing::debug!(unindexed, "user index members of ended sessions dropped");
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId, _with_expiry: bool) -> Result<Loaded, StoreError> {
        let Some(key) = Key::of(id) else {
            return Ok(Loaded::Missing);
        };
        let now = self.inner.clock.now();
        let (nanos, millis) = (self.inner.nanos(now), self.inner.millis(now));
        let mut shard = lock(self.inner.shard(&key));
        let Some(entry) = shard.get(&key) else {
            return Ok(Loaded::Missing);
        };
        let stamp = entry.stamp();
        if !entry.is_live(nanos) || stamp.is_expired(millis) {
            shard.remove(&key);
            return Ok(Loaded::Expired);
        }
        Ok(Loaded::Live(Stored {
            data: entry.data(),
            times: Times {
                expires_in: Some(Duration::from_nanos(entry.expires() - nanos)),
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
                    let fresh_id = commit.fresh_id();
                    self.inner.create(fresh_id, data, remember, &commit, now)
                }
            };
        };
        let Some(key) = Key::of(current_id) else {
            return Ok(Committed::Vanished);
        };
        let mut shard = lock(self.inner.shard(&key));
        let (nanos, millis) = (self.inner.nanos(now), self.inner.millis(now));
        let (planned, stamp, logged_in) = match shard.get(&key) {
            Some(entry) if entry.is_live(nanos) && !entry.stamp().is_expired(millis) => {
                // The common write is planned on the entry's own text; the
                // rest on data built from it.
                let planned =
                    ops::plan_on_text(entry.json(), commit.ops, commit.max_bytes, commit.rotate_on)
                        .unwrap_or_else(|| {
                            ops::plan(
                                Some(&entry.data()),
                                commit.ops,
                                commit.max_bytes,
                                commit.rotate_on,
                            )
                        });
                (planned, entry.stamp(), entry.is_logged_in())
            }
            _ => return Ok(Committed::Vanished),
        };
        match planned? {
            Plan::Keep => Ok(Committed::Unchanged),
            Plan::Delete => {
                shard.remove(&key);
                Ok(Committed::Destroyed)
            }
            Plan::Write {
                data,
                fresh_id: false,
                remember,
            } => {
                let kept = Kept {
                    stamp,
                    // Only a patch naming the identity key can sign the
                    // session in or out.
                    logged_in: (!ops::names(commit.ops, &self.inner.identity_key))
                        .then_some(logged_in),
                };
                let (entry, stamp) =
                    self.inner
                        .entry(key, &data, Some(kept), remember, &commit, now);
                shard.insert(entry);
                Ok(Committed::Saved {
                    id: current_id.clone(),
                    data,
                    remember: stamp.remember.map(Duration::from_millis),
                })
            }
            Plan::Write {
                data,
                fresh_id: true,
                remember,
            } => {
                shard.remove(&key);
                // Never hold two shard locks at once: no lock-order deadlocks.
                drop(shard);
                // A moved session starts its lifetime again (a login), and
                // stays remembered.
                let remember = remember.or(stamp.remember.map(Duration::from_millis));
                let fresh_id = commit.fresh_id();
                self.inner.create(fresh_id, data, remember, &commit, now)
            }
        }
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let Some(key) = Key::of(id) else {
            return Ok(false);
        };
        let now = self.inner.clock.now();
        let (nanos, millis) = (self.inner.nanos(now), self.inner.millis(now));
        let mut shard = lock(self.inner.shard(&key));
        match shard.get_mut(&key) {
            Some(entry) if entry.is_live(nanos) => {
                // Never past the session's absolute deadline.
                let left = entry.stamp().ttl(millis, ttl);
                entry.set_expires(nanos.saturating_add(self::nanos(ttl.min(left))));
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::ops::SessionOp;
    use crate::store::conformance;

    fn store() -> MemoryStore {
        MemoryStore::with_clock(1000, Duration::from_secs(3600), Clock::Tokio)
    }

    // Expiry on tokio's paused clock: no real sleeping.
    conformance::suite!(paused store);

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

    /// Writes `patch` on session `id` in place (no rotation).
    async fn write(store: &MemoryStore, id: &SessionId, patch: serde_json::Value) {
        let serde_json::Value::Object(map) = patch else {
            panic!("not an object");
        };
        let ops = [SessionOp::Patch(map.into())];
        let commit = Commit {
            current: Some(id),
            ops: &ops,
            fresh_id: None,
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 16,
            rotate_on: None,
            lifetimes: Default::default(),
        };
        let committed = store.commit(commit).await.unwrap();
        assert!(matches!(committed, Committed::Saved { id: ref saved, .. } if saved == id));
    }

    async fn is_live(store: &MemoryStore, id: &SessionId) -> bool {
        store.load(id, true).await.unwrap().live().is_some()
    }

    /// Eviction follows sign-ins and sign-outs made in place (a patch on
    /// the session's own id), and writes that name no identity keep what
    /// the session was. Each step a second apart, so that the expiries
    /// (the last tie-break of eviction) are in the order of the steps.
    #[tokio::test(start_paused = true)]
    async fn eviction_follows_signing_in_and_out_in_place() {
        let store = MemoryStore::with_clock(8, Duration::from_secs(3600), Clock::Tokio);
        let ttl = Duration::from_secs(60);
        let second = || tokio::time::advance(Duration::from_secs(1));
        let mut users = Vec::new();
        for index in 0..7 {
            users.push(conformance::create(&store, serde_json::json!({"cart": index}), ttl).await);
        }
        second().await;
        for (index, id) in users.iter().enumerate() {
            write(&store, id, serde_json::json!({"user": {"id": index}})).await;
        }
        second().await;
        for id in &users {
            write(&store, id, serde_json::json!({"cart": 0})).await;
        }
        second().await;
        // Full: the newest session is the only anonymous one, and the one
        // the next session evicts.
        let anonymous = conformance::create(&store, serde_json::json!({"cart": 99}), ttl).await;
        second().await;
        let next = conformance::create(&store, serde_json::json!({"cart": 100}), ttl).await;
        assert!(
            !is_live(&store, &anonymous).await,
            "the anonymous one was evicted"
        );
        for id in &users {
            assert!(
                is_live(&store, id).await,
                "a session signed in in place was evicted"
            );
        }
        // Signed out in place: anonymous again, and older than `later`.
        second().await;
        write(&store, &users[0], serde_json::json!({"user": null})).await;
        second().await;
        store
            .commit(Commit {
                current: Some(&next),
                ops: &[SessionOp::Destroy],
                fresh_id: None,
                ttl,
                max_bytes: 1 << 16,
                rotate_on: None,
                lifetimes: Default::default(),
            })
            .await
            .unwrap();
        let later = conformance::create(&store, serde_json::json!({"cart": 101}), ttl).await;
        second().await;
        conformance::create(&store, serde_json::json!({"cart": 102}), ttl).await;
        assert!(
            !is_live(&store, &users[0]).await,
            "the signed-out session was evicted"
        );
        assert!(is_live(&store, &later).await);
        for id in &users[1..] {
            assert!(is_live(&store, id).await);
        }
    }
}
