//! Session stores: where the data behind a cookie lives.
//!
//! A store knows ids, session data and lifetimes, never HTTP. Every verb is
//! atomic on its own: [`SessionStore::commit`] applies a whole list of
//! `Set-Session` operations in one step, using [`crate::domain::session::ops::plan`]
//! for the semantics, so concurrent requests on one session that patch
//! different keys never lose each other's writes. Expiry is the store's job.
//!
//! Two stores: [`memory`] (in this process, the default) and [`redis`]
//! (shared by instances and with express-session + connect-redis). Both
//! keep what they hold in memory (the memory store its sessions, the
//! Redis store its client-side cache) packed, in `slab`'s set.

pub mod memory;
mod positions;
pub mod redis;
mod slab;
pub mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::domain::session::lifetime::Lifetimes;
use crate::domain::session::ops::{SessionOp, SetSessionError};
use crate::domain::session::{SessionData, SessionId};

pub use self::redis::RedisStore;
pub use memory::MemoryStore;

/// What to commit: the upstream's operations against the session the request
/// carried.
#[derive(Debug)]
pub struct Commit<'a> {
    /// The session the request was served with; `None` for an anonymous request.
    pub current: Option<&'a SessionId>,
    pub ops: &'a [SessionOp],
    /// The id to use if the operations create or move the session; `None`:
    /// a random one, made only then (see [`Commit::fresh_id`]).
    pub fresh_id: Option<SessionId>,
    /// How long the written session lives.
    pub ttl: Duration,
    /// Largest session, as ASCII JSON, the store accepts.
    pub max_bytes: usize,
    /// The identity key, when a login (it appears or changes) moves the
    /// session to `fresh_id` by itself (see [`ops::plan`](crate::domain::session::ops::plan)).
    pub rotate_on: Option<&'a str>,
    /// The idle and absolute timeouts a session created (or moved to a
    /// fresh id) now gets; they are stored with it.
    pub lifetimes: Lifetimes,
}

impl Commit<'_> {
    /// The id a created or moved session gets. Made here, when needed,
    /// rather than for every write: most writes keep their id.
    pub fn fresh_id(&self) -> SessionId {
        self.fresh_id.clone().unwrap_or_else(SessionId::generate)
    }
}

/// What a load found.
#[derive(Debug)]
pub enum Loaded {
    Live(Stored),
    /// The session was there, but past its absolute deadline (it is
    /// deleted now) or its expiry.
    Expired,
    /// No such session.
    Missing,
}

/// A live session and the times the store keeps for it.
#[derive(Debug)]
pub struct Stored {
    pub data: Arc<SessionData>,
    pub times: Times,
}

/// The times a store keeps for a live session, as durations from now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// Time left before the store lets it go (its TTL), when asked for.
    pub expires_in: Option<Duration>,
    /// Time left to its absolute deadline.
    pub absolute_in: Option<Duration>,
    /// Its idle timeout.
    pub idle: Option<Duration>,
    /// The lifetime "remember me" gave it.
    pub remember: Option<Duration>,
}

impl Loaded {
    /// The data of a live session.
    pub fn live(self) -> Option<Arc<SessionData>> {
        match self {
            Self::Live(stored) => Some(stored.data),
            Self::Expired | Self::Missing => None,
        }
    }
}

/// The result of a commit, for the cookie decision.
#[derive(Debug)]
pub enum Committed {
    /// Nothing was written.
    Unchanged,
    /// The session now lives under `id` (the current one or the fresh one).
    Saved {
        id: SessionId,
        data: Arc<SessionData>,
        /// Its "remember me" lifetime, if it has one (its cookie's).
        remember: Option<Duration>,
    },
    /// The session was deleted (or there was none); the cookie is cleared.
    Destroyed,
    /// The request's session was destroyed or regenerated meanwhile by
    /// another request; nothing was written and nothing was re-created.
    Vanished,
}

/// A store failure, the same for every backend.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The operations themselves are invalid (the upstream's fault).
    #[error(transparent)]
    Rejected(#[from] SetSessionError),
    /// The store could not take a new session (memory limit).
    #[error("session store is full")]
    Full,
}

/// The verbs every store offers. The returned futures are `Send` so the
/// proxy can run them on any worker thread.
pub trait SessionStore: Send + Sync + 'static {
    /// The session under `id`. Past its absolute deadline it is deleted
    /// and `Expired`. `with_expiry`: [`Stored::expires_in`] is wanted (an
    /// extra query for Redis).
    fn load(
        &self,
        id: &SessionId,
        with_expiry: bool,
    ) -> impl Future<Output = Result<Loaded, StoreError>> + Send;

    /// Applies `commit.ops` atomically.
    fn commit(
        &self,
        commit: Commit<'_>,
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send;

    /// Extends a live session's life without rewriting its data. `false`
    /// when the session no longer exists.
    fn touch(
        &self,
        id: &SessionId,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The store chosen by configuration. An enum rather than a trait object:
/// the hot path calls the store with static dispatch.
///
/// The Redis arms are boxed. A future is as large as its largest state, and
/// the request future embeds this one: unboxed, a Redis exchange's state
/// (several KiB) would be copied on every request, memory store or not. One
/// allocation beside a network round trip costs nothing; the memory arms
/// stay unboxed. The Redis load is the exception: it boxes its own round
/// trips, so that a read the client-side cache answers allocates and
/// copies nothing of them.
#[derive(Clone)]
pub enum AnyStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// The kind of store only: a store's contents never reach a log.
impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory(_) => "AnyStore::Memory",
            Self::Redis(_) => "AnyStore::Redis",
        })
    }
}

impl AnyStore {
    /// Whether the store answers: always for the memory store, `PING` for
    /// Redis.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(store) => Box::pin(store.ping()).await,
        }
    }

    /// `memory` or `redis`, for metrics' labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// The Redis store's client-side cache counts, when it has a cache.
    pub fn cache_stats(&self) -> Option<redis::CacheStats> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(store) => store.cache_stats(),
        }
    }

    /// A task the store needs run on worker thread `worker`, for as long
    /// as the store lives: the Redis store's tracked connection, when it
    /// has a cache.
    pub fn worker_task(
        &self,
        worker: usize,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(store) => Some(Box::pin(store.worker_task(worker)?)),
        }
    }

    /// Sessions held, for the memory store; `None` for Redis (shared with
    /// other instances, and costly to count).
    pub fn live_sessions(&self) -> Option<usize> {
        match self {
            Self::Memory(store) => Some(store.len()),
            Self::Redis(_) => None,
        }
    }
}

impl SessionStore for AnyStore {
    async fn load(&self, id: &SessionId, with_expiry: bool) -> Result<Loaded, StoreError> {
        match self {
            Self::Memory(store) => store.load(id, with_expiry).await,
            Self::Redis(store) => store.load(id, with_expiry).await,
        }
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<Committed, StoreError> {
        match self {
            Self::Memory(store) => store.commit(commit).await,
            Self::Redis(store) => Box::pin(store.commit(commit)).await,
        }
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Self::Memory(store) => store.touch(id, ttl).await,
            Self::Redis(store) => Box::pin(store.touch(id, ttl)).await,
        }
    }
}

#[cfg(test)]
pub(crate) mod conformance;
