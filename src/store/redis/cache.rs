//! The Redis store's client-side cache: session records this process read
//! lately, kept correct by Redis itself ([`super::tracking`]).
//!
//! A session read twice in a row costs one round trip to Redis, not two.
//! What keeps a cached record from going stale: Redis's key tracking in
//! broadcast mode. Every write to a key under the store's prefix, by any
//! client (another Cloakroom, an Express app, `redis-cli`), and every
//! expiry or eviction, sends this process an invalidation naming the key,
//! which drops it here.
//!
//! # The rules that make it correct
//! - **Only while tracking is live.** The cache starts off, is turned on
//!   (empty) when the tracking connection has confirmed `CLIENT TRACKING`,
//!   and is emptied and turned off the moment that connection fails: an
//!   invalidation lost with it can never leave a stale record behind.
//!   While off, every load reads Redis.
//! - **No stale fill.** A read reserves the key (a placeholder with a fresh
//!   ticket) before its `GET` leaves, and fills it only if the placeholder
//!   is still there when the answer arrives. An invalidation, a write of
//!   this process or the cache turning off in between removes the
//!   placeholder, so a value that was overtaken in flight is never cached.
//! - **This process's own writes** drop the key when Redis has answered
//!   them (every write command of [`super::commands`]), before the response
//!   that follows them leaves: a client never reads back its own old data.
//! - **Expiry is kept here too**: a record is cached with the time to live
//!   Redis reported, less the coarse clock's resolution, so it is never
//!   served past the moment Redis lets it go, even before the expiry's
//!   invalidation arrives.
//!
//! The window that remains: between another client's write reaching Redis
//! and its invalidation reaching this process, a read here may still get
//! the record as it was (the README measures it). Writes are untouched by
//! the cache: they stay compare-and-set against Redis, so no update is ever
//! lost.
//!
//! Bounded: at most `store.cache_sessions` records; a full shard drops one
//! to make room.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::session::lifetime::Stamp;
use crate::domain::session::SessionData;
use crate::util::coarse_clock;

/// Shards, so that readers on different sessions do not wait on each
/// other.
const SHARDS: usize = 32;

/// A session record as read from Redis, decoded.
#[derive(Clone)]
pub(super) struct Cached {
    /// The value as Redis holds it: what a commit's compare-and-set
    /// expects, so that a write after a read needs no second `GET`.
    pub raw: Arc<[u8]>,
    pub data: Arc<SessionData>,
    pub stamp: Stamp,
    /// When Redis lets it go (less the clock's resolution); `None` when
    /// the key has no time to live.
    pub expires: Option<Instant>,
}

enum Slot {
    /// A read is on its way, under this ticket.
    Reserved(u64),
    Filled(Cached),
}

/// A read's claim on filling a key; see [`SessionCache::reserve`].
pub(super) struct Ticket {
    number: u64,
    /// The coarse time before the read left: what the time to live counts
    /// from.
    sent: Instant,
}

type Map = HashMap<Box<str>, Slot, foldhash::fast::RandomState>;

/// What `/metrics` shows of the cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    pub tracking: bool,
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
}

pub(super) struct SessionCache {
    shards: Box<[Mutex<Map>]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
    /// Tracking is live: the cache may be read and filled.
    on: AtomicBool,
    next_ticket: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
}

fn lock(shard: &Mutex<Map>) -> MutexGuard<'_, Map> {
    // A panic under the lock leaves a map that is still consistent.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionCache {
    /// A cache of at most `capacity` records (at least one per shard), off
    /// until [`Self::turn_on`].
    pub fn new(capacity: usize) -> Self {
        let hasher = foldhash::fast::RandomState::default();
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Map::with_hasher(hasher.clone())))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher,
            on: AtomicBool::new(false),
            next_ticket: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: &str) -> &Mutex<Map> {
        let hash = self.hasher.hash_one(id);
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// The record of session `id` if it is cached and not past its expiry.
    pub fn get(&self, id: &str) -> Option<Cached> {
        if !self.is_on() {
            return None;
        }
        let now = coarse_clock::now();
        let mut shard = lock(self.shard(id));
        let found = match shard.get(id) {
            Some(Slot::Filled(cached)) if cached.expires.is_none_or(|at| now < at) => {
                Some(cached.clone())
            }
            Some(Slot::Filled(_)) => {
                shard.remove(id);
                None
            }
            _ => None,
        };
        drop(shard);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Claims `id` for a read about to leave; `None` while the cache is
    /// off. Call before sending the read.
    pub fn reserve(&self, id: &str) -> Option<Ticket> {
        if !self.is_on() {
            return None;
        }
        let number = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let sent = coarse_clock::now();
        let mut shard = lock(self.shard(id));
        if !shard.contains_key(id) && shard.len() >= self.per_shard {
            // Any record: they are equally likely to be read again.
            let victim = shard.keys().next().cloned();
            if let Some(victim) = victim {
                shard.remove(&victim);
            }
        }
        shard.insert(id.into(), Slot::Reserved(number));
        drop(shard);
        // Turned off meanwhile: the emptying may have run before the
        // insert; take the claim back.
        if !self.is_on() {
            self.forget(id);
            return None;
        }
        Some(Ticket { number, sent })
    }

    /// Caches what the read under `ticket` found, unless the key was
    /// dropped since (by an invalidation, a write here, or the cache
    /// turning off). `ttl`: what Redis reported, `None` for no expiry.
    pub fn fill(
        &self,
        id: &str,
        ticket: Ticket,
        raw: &[u8],
        data: Arc<SessionData>,
        stamp: Stamp,
        ttl: Option<Duration>,
    ) {
        let expires = ttl.map(|ttl| {
            // The coarse clock is up to one tick behind: a record is never
            // kept past Redis's expiry.
            let at = ticket.sent + ttl;
            at.checked_sub(coarse_clock::TICK).unwrap_or(ticket.sent)
        });
        let mut shard = lock(self.shard(id));
        if let Some(slot) = shard.get_mut(id) {
            if matches!(*slot, Slot::Reserved(number) if number == ticket.number) {
                *slot = Slot::Filled(Cached {
                    raw: raw.into(),
                    data,
                    stamp,
                    expires,
                });
            }
        }
    }

    /// The value last read for `id`, if cached and live: where a commit's
    /// compare-and-set starts. Stale at worst, which costs that commit one
    /// more round, never a lost update. Not counted as a hit or a miss.
    pub fn raw(&self, id: &str) -> Option<Vec<u8>> {
        if !self.is_on() {
            return None;
        }
        let now = coarse_clock::now();
        match lock(self.shard(id)).get(id) {
            Some(Slot::Filled(cached)) if cached.expires.is_none_or(|at| now < at) => {
                Some(cached.raw.to_vec())
            }
            _ => None,
        }
    }

    /// Drops whatever is held for `id`: its record or a read's claim.
    pub fn forget(&self, id: &str) {
        lock(self.shard(id)).remove(id);
    }

    /// An invalidation from Redis for session `id`.
    pub fn invalidate(&self, id: &str) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.forget(id);
    }

    /// Empties the cache, claims included.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            lock(shard).clear();
        }
    }

    /// Tracking is confirmed: starts caching, from empty.
    pub fn turn_on(&self) {
        self.clear();
        self.on.store(true, Ordering::Release);
    }

    /// Tracking is lost: stops caching and empties the cache.
    pub fn turn_off(&self) {
        self.on.store(false, Ordering::Release);
        self.clear();
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            tracking: self.is_on(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
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
    use serde_json::json;

    fn data(user: &str) -> Arc<SessionData> {
        match json!({ "user": user }) {
            serde_json::Value::Object(map) => Arc::new(SessionData::new(map)),
            _ => unreachable!(),
        }
    }

    fn user(cached: &Cached) -> String {
        cached.data.map()["user"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn filled(cache: &SessionCache, id: &str, who: &str) {
        let ticket = cache.reserve(id).expect("on");
        cache.fill(
            id,
            ticket,
            who.as_bytes(),
            data(who),
            Stamp::default(),
            None,
        );
    }

    #[test]
    fn nothing_is_cached_or_served_while_off() {
        let cache = SessionCache::new(100);
        assert!(cache.reserve("a").is_none());
        cache.turn_on();
        filled(&cache, "a", "ada");
        assert_eq!(cache.get("a").map(|c| user(&c)).as_deref(), Some("ada"));
        cache.turn_off();
        assert!(cache.get("a").is_none());
        assert!(cache.reserve("a").is_none());
        cache.turn_on();
        assert!(cache.get("a").is_none(), "turning on again starts empty");
    }

    #[test]
    fn a_read_overtaken_by_an_invalidation_or_a_write_fills_nothing() {
        let cache = SessionCache::new(100);
        cache.turn_on();
        for drop_it in [
            &(|c: &SessionCache| c.invalidate("a")) as &dyn Fn(&SessionCache),
            &|c: &SessionCache| c.forget("a"),
            &|c: &SessionCache| {
                c.turn_off();
                c.turn_on();
            },
        ] {
            let ticket = cache.reserve("a").unwrap();
            drop_it(&cache);
            cache.fill("a", ticket, b"old", data("old"), Stamp::default(), None);
            assert!(cache.get("a").is_none(), "a stale read was cached");
        }
        // A later read's claim is not filled by an earlier read.
        let first = cache.reserve("a").unwrap();
        let second = cache.reserve("a").unwrap();
        cache.fill("a", first, b"old", data("old"), Stamp::default(), None);
        assert!(cache.get("a").is_none());
        cache.fill("a", second, b"new", data("new"), Stamp::default(), None);
        assert_eq!(cache.get("a").map(|c| user(&c)).as_deref(), Some("new"));
        assert_eq!(cache.raw("a").as_deref(), Some(&b"new"[..]));
        cache.forget("a");
        assert_eq!(cache.raw("a"), None);
    }

    #[test]
    fn a_record_is_not_served_past_its_time_to_live() {
        let cache = SessionCache::new(100);
        cache.turn_on();
        let ticket = cache.reserve("a").unwrap();
        let zero = Some(Duration::ZERO);
        cache.fill("a", ticket, b"", data("ada"), Stamp::default(), zero);
        assert!(cache.raw("a").is_none());
        assert!(cache.get("a").is_none());
        let ticket = cache.reserve("b").unwrap();
        let long = Duration::from_secs(3600);
        cache.fill("b", ticket, b"", data("bob"), Stamp::default(), Some(long));
        assert!(cache.get("b").is_some());
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(cache.stats().misses, 1);
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        let cache = SessionCache::new(64);
        cache.turn_on();
        for n in 0..1000 {
            filled(&cache, &format!("id{n}"), "ada");
        }
        assert!(cache.len() <= 64, "{} records held", cache.len());
        assert!(cache.get("id999").is_some(), "the newest record is kept");
    }
}
