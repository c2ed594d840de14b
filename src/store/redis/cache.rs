//! The Redis store's client-side cache: session records this process read
//! or wrote lately, kept correct by Redis itself ([`super::tracking`]).
//!
//! A session read twice in a row costs one round trip to Redis, not two,
//! and a session written is read back from here: a browser's next request
//! after a write costs the compare-and-set alone.
//!
//! # Who guards a record
//! Each worker thread has a *tracked connection*: a RESP3 connection with
//! `CLIENT TRACKING ON NOLOOP`, on which Redis remembers every key the
//! connection reads and, at the first change to one of them by any *other*
//! connection (another worker, another Cloakroom, an Express app,
//! `redis-cli`), or its expiry or eviction, sends that connection an
//! invalidation naming the key. A record is cached only from an answer on
//! a tracked connection, and remembers which one (its *guard*): a change
//! to the key after that answer reaches the guard. So an invalidation
//! drops a record only when it comes from the record's guard; one from
//! another connection is about a change the guard's read or write already
//! saw (it was tracking the key from an earlier read).
//!
//! # The rules that make it correct
//! - **Only while the guard is live.** A connection's records are served
//!   only while its tracking is confirmed; the moment the connection fails
//!   they are dropped, and that worker reads Redis (through its plain
//!   connection) until tracking is back: an invalidation lost with the
//!   connection can never leave a stale record behind.
//! - **No stale fill.** A read or write on a tracked connection reserves
//!   the key (a placeholder with a fresh ticket and the guard) before it
//!   leaves, and fills it only if the placeholder is still there when the
//!   answer arrives. An invalidation from the guard, another request
//!   reserving the key, a write of this process on its plain connection or
//!   the guard failing in between removes the placeholder, so a value that
//!   was overtaken in flight is never cached.
//! - **This process's own writes.** The compare-and-set is sent on the
//!   tracked connection: `NOLOOP` keeps Redis from reporting it back to
//!   that connection (in this mode Redis counts a script's writes as the
//!   calling connection's; in broadcast mode it does not), the script
//!   reads the key again after writing (a write ends Redis's tracking of
//!   the key, the read starts it again), and the value written fills the
//!   cache. A new session (`SET NX` with a `GET` after it) and a
//!   regenerated one (its move script reads the new key once written) are
//!   cached the same way, under their new id. Every other write command
//!   (destroy, touch) goes on the plain connection and drops the key once
//!   Redis has answered, before the response that follows leaves, as the
//!   old id of a regenerated session is dropped: a client never reads back
//!   its own old data.
//! - **Expiry is kept here too**: a record is cached with the time to live
//!   Redis reported or was given, less the coarse clock's resolution, so it
//!   is never served past the moment Redis lets it go, even before the
//!   expiry's invalidation arrives.
//!
//! The window that remains: between another client's write reaching Redis
//! and its invalidation being read by the guard's worker, a read here may
//! still get the record as it was (the README measures it). An
//! invalidation is applied as it is read, so a request the guard's worker
//! takes after it never gets the old record; a request on another worker,
//! run before the guard's worker has read the invalidation, may. Writes
//! stay compare-and-set against Redis, so no update is ever lost.
//!
//! Bounded: at most `store.cache_sessions` records; a full shard drops one
//! to make room.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::cache_entry::{CacheId, Record};
use super::record::Decoded;
use crate::domain::session::lifetime::Stamp;
use crate::domain::session::SessionData;
use crate::metrics::sharded::ShardedCounter;
use crate::store::slab::{Hashed, Slab};
use crate::util::coarse_clock;
use crate::util::own_lines::OwnLines;

/// Shards, so that readers on different sessions do not wait on each
/// other.
const SHARDS: usize = 32;

/// What a commit takes from a cached record ([`SessionCache::entry`]).
pub(super) struct Cached {
    /// The value as Redis holds it: what a commit's compare-and-set
    /// expects, so that a write after a read needs no second `GET`.
    pub raw: Vec<u8>,
    pub decoded: Decoded,
}

/// What a load takes from a cached record: its data and stamp, and when
/// Redis lets it go. Not the raw record, which only a commit needs
/// ([`SessionCache::entry`]): a read leaves it untouched, which among
/// many sessions spares it the cache lines it takes.
pub(super) struct Hit {
    pub data: Arc<SessionData>,
    pub stamp: Option<Stamp>,
    pub expires: Option<Instant>,
}

/// The index of a tracked connection (one per worker thread).
pub(super) type Guard = usize;

enum Slot {
    /// A read or write is on its way on `guard`, under `ticket`.
    Reserved {
        ticket: u64,
        guard: Guard,
    },
    Filled {
        record: Record,
        guard: Guard,
    },
}

impl Slot {
    fn guard(&self) -> Guard {
        match self {
            Self::Reserved { guard, .. } | Self::Filled { guard, .. } => *guard,
        }
    }
}

/// A claim on filling a key; see [`SessionCache::reserve`].
pub(super) struct Ticket {
    number: u64,
    /// The coarse time before the request left: what the time to live
    /// counts from.
    sent: Instant,
}

/// A key as the cache looks it up: the id and its hash, computed once
/// (the hash picks the shard and the place in its table).
struct Key<'a> {
    hash: u64,
    id: &'a str,
}

/// What is held for one key.
struct Entry {
    hash: u64,
    id: CacheId,
    slot: Slot,
}

impl Hashed for Entry {
    fn hash(&self) -> u64 {
        self.hash
    }
}

/// A shard's records, packed ([`crate::store::slab`]). A `HashMap` of
/// the same records keeps up to half of its buckets empty, each the size
/// of an id and its slot: with a million records, some 300 MB of what was
/// once a cache of 750. Here it is the entries themselves (112 bytes, the
/// hash included) and a table of 4-byte positions.
#[derive(Default)]
struct Map {
    entries: Slab<Entry>,
}

impl Map {
    fn find(&self, key: &Key<'_>) -> Option<usize> {
        self.entries.find(key.hash, |entry| {
            entry.hash == key.hash && entry.id.is(key.id)
        })
    }

    fn get(&self, key: &Key<'_>) -> Option<&Slot> {
        let at = self.find(key)?;
        self.entries.get(at).map(|entry| &entry.slot)
    }

    fn get_mut(&mut self, key: &Key<'_>) -> Option<&mut Slot> {
        let at = self.find(key)?;
        self.entries.get_mut(at).map(|entry| &mut entry.slot)
    }

    fn remove(&mut self, key: &Key<'_>) {
        if let Some(at) = self.find(key) {
            self.entries.remove_at(at);
        }
    }

    /// Holds `slot` for `key`, which holds nothing yet; when `limit`
    /// entries are held, one of them (any: they are equally likely to be
    /// read again) is dropped first.
    fn insert(&mut self, key: &Key<'_>, slot: Slot, limit: usize) {
        let held = self.entries.len();
        if held >= limit && held > 0 {
            // The new key's hash says which, as good as a random pick.
            self.entries.remove_at((key.hash % held as u64) as usize);
        }
        // The cache bounds a shard far below the slab's limit.
        self.entries.insert(Entry {
            hash: key.hash,
            id: CacheId::new(key.id),
            slot,
        });
    }

    fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) {
        self.entries.retain(|entry| keep(&entry.slot));
    }

    fn clear(&mut self) {
        self.entries = Slab::default();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What `/metrics` shows of the cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    pub tracking: bool,
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
}

/// One tracked connection's state.
#[derive(Default)]
struct Tracked {
    /// Tracking is confirmed: its records may be served and filled.
    on: AtomicBool,
    connection: Mutex<Option<MultiplexedConnection>>,
}

pub(super) struct SessionCache {
    /// Each on lines of its own: see [`OwnLines`].
    shards: Box<[OwnLines<Mutex<Map>>]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
    tracked: Box<[Tracked]>,
    next_ticket: AtomicU64,
    /// Counted on every read: per thread, so that the workers do not pass
    /// one counter's cache line back and forth.
    hits: ShardedCounter,
    misses: ShardedCounter,
    invalidations: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under the lock leaves the value consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionCache {
    /// A cache of at most `capacity` records (at least one per shard)
    /// guarded by `guards` tracked connections, each off until
    /// [`Self::turn_on`].
    pub fn new(capacity: usize, guards: usize) -> Self {
        let hasher = foldhash::fast::RandomState::default();
        Self {
            shards: (0..SHARDS).map(|_| OwnLines::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher,
            tracked: (0..guards.max(1)).map(|_| Tracked::default()).collect(),
            next_ticket: AtomicU64::new(0),
            hits: ShardedCounter::default(),
            misses: ShardedCounter::default(),
            invalidations: AtomicU64::new(0),
        }
    }

    /// Where `id` is kept: its shard, and its key there.
    fn locate<'a>(&self, id: &'a str) -> (&Mutex<Map>, Key<'a>) {
        let hash = self.hasher.hash_one(id);
        let shard = &self.shards[(hash >> 32) as usize % SHARDS];
        (shard, Key { hash, id })
    }

    /// The guard a worker's requests use.
    pub fn guard_of(&self, worker: usize) -> Guard {
        worker % self.tracked.len()
    }

    fn is_live(&self, guard: Guard) -> bool {
        self.tracked
            .get(guard)
            .is_some_and(|tracked| tracked.on.load(Ordering::Acquire))
    }

    /// Every tracked connection is live (what `/metrics` calls tracking).
    pub fn is_on(&self) -> bool {
        (0..self.tracked.len()).all(|guard| self.is_live(guard))
    }

    /// The tracked connection `guard`, while its tracking is live: where a
    /// read or compare-and-set that may fill the cache is sent.
    pub fn connection(&self, guard: Guard) -> Option<MultiplexedConnection> {
        if !self.is_live(guard) {
            return None;
        }
        lock(&self.tracked[guard].connection).clone()
    }

    /// The record of session `id` if it is cached, its guard live and it
    /// is not past its expiry.
    pub fn get(&self, id: &str) -> Option<Hit> {
        let now = coarse_clock::now();
        let (shard, key) = self.locate(id);
        let mut shard = lock(shard);
        let found = match shard.get(&key) {
            Some(Slot::Filled { record, guard }) if self.is_live(*guard) => {
                if record.expires.is_none_or(|at| now < at) {
                    Some(Hit {
                        data: record.data(),
                        stamp: record.stamp(),
                        expires: record.expires,
                    })
                } else {
                    shard.remove(&key);
                    None
                }
            }
            _ => None,
        };
        drop(shard);
        if found.is_some() {
            self.hits.inc();
        } else if self.is_on() {
            self.misses.inc();
        }
        found
    }

    /// Claims `id` for a read or write about to leave on the tracked
    /// connection `guard`; `None` while that connection is not live. Call
    /// before sending.
    pub fn reserve(&self, id: &str, guard: Guard) -> Option<Ticket> {
        if !self.is_live(guard) {
            return None;
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let sent = coarse_clock::now();
        let reserved = Slot::Reserved { ticket, guard };
        let (shard, key) = self.locate(id);
        let mut shard = lock(shard);
        // A key already held (a session's every write after its first
        // read) keeps its entry.
        if let Some(slot) = shard.get_mut(&key) {
            *slot = reserved;
        } else {
            shard.insert(&key, reserved, self.per_shard);
        }
        drop(shard);
        // Turned off meanwhile: its records may have been dropped before
        // the insert; take the claim back.
        if !self.is_live(guard) {
            self.forget(id);
            return None;
        }
        Some(Ticket {
            number: ticket,
            sent,
        })
    }

    /// Caches what the request under `ticket` found or wrote, unless the
    /// key was dropped or claimed again since. `ttl`: what Redis reported
    /// or was given, `None` for no expiry.
    pub fn fill(
        &self,
        id: &str,
        ticket: Ticket,
        raw: &[u8],
        decoded: &Decoded,
        ttl: Option<Duration>,
    ) {
        let expires = ttl.map(|ttl| {
            // The coarse clock is up to one tick behind: a record is never
            // kept past Redis's expiry.
            let at = ticket.sent + ttl;
            at.checked_sub(coarse_clock::TICK).unwrap_or(ticket.sent)
        });
        let (shard, key) = self.locate(id);
        let mut shard = lock(shard);
        let Some(slot) = shard.get_mut(&key) else {
            return;
        };
        let Slot::Reserved {
            ticket: held,
            guard,
        } = *slot
        else {
            return;
        };
        if held != ticket.number {
            return;
        }
        match Record::new(raw, decoded, expires) {
            Some(record) => *slot = Slot::Filled { record, guard },
            // Too large to keep (past 4 GiB): the claim goes.
            None => shard.remove(&key),
        }
    }

    /// The record last read or written for `id`, if cached and live:
    /// where a commit's compare-and-set starts, its decoding included.
    /// Stale at worst, which costs that commit one more round, never a
    /// lost update. Not counted as a hit or a miss.
    pub fn entry(&self, id: &str) -> Option<Cached> {
        let now = coarse_clock::now();
        let (shard, key) = self.locate(id);
        match lock(shard).get(&key) {
            Some(Slot::Filled { record, guard })
                if self.is_live(*guard) && record.expires.is_none_or(|at| now < at) =>
            {
                Some(Cached {
                    raw: record.raw().to_vec(),
                    decoded: record.decoded(),
                })
            }
            _ => None,
        }
    }

    /// Drops whatever is held for `id`: its record or a claim.
    pub fn forget(&self, id: &str) {
        let (shard, key) = self.locate(id);
        lock(shard).remove(&key);
    }

    /// An invalidation for session `id` from the tracked connection
    /// `from`: drops what `from` guards (see the module documentation).
    pub fn invalidate(&self, id: &str, from: Guard) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        let (shard, key) = self.locate(id);
        let mut shard = lock(shard);
        if shard.get(&key).is_some_and(|slot| slot.guard() == from) {
            shard.remove(&key);
        }
    }

    /// Empties the cache, claims included (a flush of the database).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            lock(shard).clear();
        }
    }

    /// Tracking is confirmed on tracked connection `guard` (`connection`):
    /// its reads and writes may fill the cache.
    pub fn turn_on(&self, guard: Guard, connection: Option<MultiplexedConnection>) {
        let Some(tracked) = self.tracked.get(guard) else {
            return;
        };
        self.drop_guarded(guard);
        *lock(&tracked.connection) = connection;
        tracked.on.store(true, Ordering::Release);
    }

    /// Tracking is lost on `guard`: what it guards is dropped and no longer
    /// served or filled.
    pub fn turn_off(&self, guard: Guard) {
        let Some(tracked) = self.tracked.get(guard) else {
            return;
        };
        tracked.on.store(false, Ordering::Release);
        *lock(&tracked.connection) = None;
        self.drop_guarded(guard);
    }

    fn drop_guarded(&self, guard: Guard) {
        for shard in self.shards.iter() {
            lock(shard).retain(|slot| slot.guard() != guard);
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            tracking: self.is_on(),
            hits: self.hits.get(),
            misses: self.misses.get(),
            invalidations: self.invalidations.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::SessionData;
    use serde_json::json;

    const A: Guard = 0;
    const B: Guard = 1;

    fn data(user: &str) -> Decoded {
        match json!({ "user": user }) {
            serde_json::Value::Object(map) => Decoded {
                data: Arc::new(SessionData::new(map)),
                stamp: None,
                cookie_at: None,
            },
            _ => unreachable!(),
        }
    }

    fn fill(cache: &SessionCache, id: &str, ticket: Ticket, who: &str) {
        let raw = who.as_bytes();
        cache.fill(id, ticket, raw, &data(who), None);
    }

    fn filled(cache: &SessionCache, id: &str, guard: Guard, who: &str) {
        let ticket = cache.reserve(id, guard).expect("on");
        fill(cache, id, ticket, who);
    }

    fn served(cache: &SessionCache, id: &str) -> Option<String> {
        cache.get(id).map(|hit| {
            hit.data.map()["user"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    }

    /// A cache of two guards, both on.
    fn two_guards() -> SessionCache {
        let cache = SessionCache::new(100, 2);
        cache.turn_on(A, None);
        cache.turn_on(B, None);
        cache
    }

    #[test]
    fn nothing_is_cached_or_served_while_its_guard_is_off() {
        let cache = SessionCache::new(100, 2);
        assert!(cache.reserve("a", A).is_none());
        assert!(!cache.is_on());
        cache.turn_on(A, None);
        assert!(!cache.is_on(), "tracking is on once every guard is");
        filled(&cache, "a", A, "ada");
        assert!(cache.reserve("b", B).is_none());
        cache.turn_on(B, None);
        assert!(cache.is_on());
        filled(&cache, "b", B, "bob");
        assert_eq!(served(&cache, "a").as_deref(), Some("ada"));
        cache.turn_off(A);
        assert!(cache.get("a").is_none(), "A's record outlived A");
        assert!(cache.entry("a").is_none());
        assert_eq!(served(&cache, "b").as_deref(), Some("bob"), "B's stays");
        assert!(cache.reserve("a", A).is_none());
        cache.turn_on(A, None);
        assert!(cache.get("a").is_none(), "turning on again starts empty");
    }

    #[test]
    fn a_request_overtaken_by_an_invalidation_or_a_write_fills_nothing() {
        let cache = two_guards();
        for drop_it in [
            &(|c: &SessionCache| c.invalidate("a", A)) as &dyn Fn(&SessionCache),
            &|c: &SessionCache| c.forget("a"),
            &|c: &SessionCache| {
                c.turn_off(A);
                c.turn_on(A, None);
            },
            &|c: &SessionCache| c.clear(),
        ] {
            let ticket = cache.reserve("a", A).unwrap();
            drop_it(&cache);
            fill(&cache, "a", ticket, "old");
            assert!(cache.get("a").is_none(), "a stale answer was cached");
        }
        // A later claim, on either guard, is not filled by an earlier one.
        let first = cache.reserve("a", A).unwrap();
        let second = cache.reserve("a", B).unwrap();
        fill(&cache, "a", first, "old");
        assert!(cache.get("a").is_none());
        fill(&cache, "a", second, "new");
        assert_eq!(served(&cache, "a").as_deref(), Some("new"));
        assert_eq!(
            cache.entry("a").map(|cached| cached.raw.to_vec()),
            Some(b"new".to_vec())
        );
        cache.forget("a");
        assert!(cache.entry("a").is_none());
    }

    #[test]
    fn only_the_guard_s_invalidation_drops_a_record() {
        let cache = two_guards();
        filled(&cache, "a", A, "ada");
        // B tracked the key from an earlier read, and hears of the change
        // A's answer already saw.
        cache.invalidate("a", B);
        assert_eq!(served(&cache, "a").as_deref(), Some("ada"));
        cache.invalidate("a", A);
        assert!(cache.get("a").is_none());
        // The same for a claim.
        let ticket = cache.reserve("a", B).unwrap();
        cache.invalidate("a", A);
        fill(&cache, "a", ticket, "bob");
        assert_eq!(served(&cache, "a").as_deref(), Some("bob"));
        let ticket = cache.reserve("a", B).unwrap();
        cache.invalidate("a", B);
        fill(&cache, "a", ticket, "cy");
        assert!(cache.get("a").is_none());
        assert_eq!(cache.stats().invalidations, 4);
    }

    #[test]
    fn a_record_is_not_served_past_its_time_to_live() {
        let cache = two_guards();
        let ticket = cache.reserve("a", A).unwrap();
        let zero = Some(Duration::ZERO);
        cache.fill("a", ticket, b"", &data("ada"), zero);
        assert!(cache.entry("a").is_none());
        assert!(cache.get("a").is_none());
        let ticket = cache.reserve("b", A).unwrap();
        let long = Duration::from_secs(3600);
        cache.fill("b", ticket, b"", &data("bob"), Some(long));
        assert!(cache.get("b").is_some());
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(cache.stats().misses, 1);
    }

    #[test]
    fn a_claim_on_a_held_key_hides_its_record_and_evicts_nothing() {
        // Four records a shard, every shard full: a new key would evict.
        let cache = SessionCache::new(SHARDS * 4, 1);
        cache.turn_on(A, None);
        for n in 0..SHARDS * 16 {
            filled(&cache, &format!("id{n}"), A, "ada");
        }
        let held: Vec<String> = (0..SHARDS * 16)
            .map(|n| format!("id{n}"))
            .filter(|id| cache.entry(id).is_some())
            .collect();
        let before = held.len();
        for id in &held {
            let ticket = cache.reserve(id, A).unwrap();
            assert!(cache.get(id).is_none(), "a claimed record was served");
            fill(&cache, id, ticket, "bob");
        }
        assert_eq!(cache.len(), before, "a claim on a held key evicted");
        for id in &held {
            assert_eq!(served(&cache, id).as_deref(), Some("bob"));
        }
    }

    #[test]
    fn every_record_is_found_under_its_own_id_as_keys_come_and_go() {
        // About 30 keys a shard: past the slab's linear search, into its
        // table, and back as they go.
        let cache = SessionCache::new(10_000, 1);
        cache.turn_on(A, None);
        let ids: Vec<String> = (0..1000).map(|n| format!("session-{n}")).collect();
        for id in &ids {
            filled(&cache, id, A, id);
        }
        for (n, id) in ids.iter().enumerate() {
            match n % 3 {
                0 => cache.forget(id),
                1 if n % 2 == 0 => cache.invalidate(id, A),
                _ => {}
            }
        }
        let gone = |n: usize| n % 3 == 0 || (n % 3 == 1 && n % 2 == 0);
        for (n, id) in ids.iter().enumerate() {
            let expected = (!gone(n)).then(|| id.clone());
            assert_eq!(served(&cache, id), expected, "{id}");
        }
        let kept = (0..ids.len()).filter(|&n| !gone(n)).count();
        assert_eq!(cache.len(), kept);
    }

    #[test]
    fn an_entry_is_112_bytes() {
        // The id inline and the record's one block: see `cache_entry`.
        assert_eq!(std::mem::size_of::<Entry>(), 112);
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        let cache = SessionCache::new(64, 1);
        cache.turn_on(A, None);
        for n in 0..1000 {
            filled(&cache, &format!("id{n}"), A, "ada");
        }
        assert!(cache.len() <= 64, "{} records held", cache.len());
        assert!(cache.get("id999").is_some(), "the newest record is kept");
    }
}
