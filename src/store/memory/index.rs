//! The memory store's user index: identity → its sessions, beside the
//! shards (see [`crate::store::users`]).
//!
//! Why a blocking mutex: its critical sections are a few map operations,
//! nothing awaits while it is held, and it is taken at logins, logouts and
//! admin calls, not per request. Lock order: the index, then a shard;
//! nothing takes the index while holding a shard, so the two cannot
//! deadlock.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::{lock, Inner, MemoryStore};
use crate::domain::session::identity::Identity;
use crate::domain::session::SessionId;
use crate::store::users::{IndexedSession, Member};

type ByUser = HashMap<Identity, HashMap<SessionId, Member>>;

/// The index. Bounded by the store: a member is dropped once its session
/// is gone (read or sweep), and the store holds at most `max_sessions`.
#[derive(Default)]
pub(super) struct Users {
    by_user: Mutex<ByUser>,
}

impl Users {
    fn lock(&self) -> MutexGuard<'_, ByUser> {
        self.by_user.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// The live session `id`'s expiry, if it is live.
    fn expiry_of(&self, id: &SessionId, now: tokio::time::Instant) -> Option<SystemTime> {
        let map = lock(self.shard(id.as_str()));
        let entry = map.get(id.as_str()).filter(|entry| entry.is_live(now))?;
        Some(SystemTime::now() + entry.expires.saturating_duration_since(now))
    }

    /// Drops every member whose session is gone; returns how many.
    pub(super) fn sweep_users(&self) -> usize {
        let now = self.clock.now();
        let mut by_user = self.users.lock();
        let mut removed = 0;
        by_user.retain(|_, sessions| {
            let before = sessions.len();
            sessions.retain(|id, _| self.expiry_of(id, now).is_some());
            removed += before - sessions.len();
            !sessions.is_empty()
        });
        removed
    }
}

impl MemoryStore {
    pub(crate) fn index_add(&self, identity: &Identity, id: &SessionId, member: &Member) {
        self.inner
            .users
            .lock()
            .entry(identity.clone())
            .or_default()
            .insert(id.clone(), member.clone());
    }

    pub(crate) fn index_move(
        &self,
        identity: &Identity,
        (old, new): (&SessionId, &SessionId),
        member: &Member,
    ) {
        let mut by_user = self.inner.users.lock();
        let sessions = by_user.entry(identity.clone()).or_default();
        let kept = sessions.remove(old.as_str());
        sessions.insert(new.clone(), kept.unwrap_or_else(|| member.clone()));
    }

    pub(crate) fn index_remove(&self, identity: &Identity, id: &SessionId) {
        let mut by_user = self.inner.users.lock();
        if let Some(sessions) = by_user.get_mut(identity) {
            sessions.remove(id.as_str());
            if sessions.is_empty() {
                by_user.remove(identity);
            }
        }
    }

    /// `identity`'s live sessions (in no order); stale members dropped.
    pub(crate) fn index_list(&self, identity: &Identity) -> Vec<IndexedSession> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut by_user = inner.users.lock();
        let Some(sessions) = by_user.get_mut(identity) else {
            return Vec::new();
        };
        let mut live = Vec::with_capacity(sessions.len());
        sessions.retain(|id, member| match inner.expiry_of(id, now) {
            Some(expires) => {
                live.push(IndexedSession {
                    id: id.clone(),
                    member: member.clone(),
                    expires: Some(expires),
                });
                true
            }
            None => false,
        });
        if sessions.is_empty() {
            by_user.remove(identity);
        }
        live
    }

    /// Live sessions (expired ones not yet swept left out).
    pub fn live_len(&self) -> usize {
        let now = self.inner.clock.now();
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).values().filter(|e| e.is_live(now)).count())
            .sum()
    }

    /// Members held in the index, for tests of its bound.
    #[cfg(test)]
    pub(crate) fn index_len(&self) -> usize {
        self.inner.users.lock().values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::conformance;
    use crate::store::memory::{Clock, MemoryStore};
    use crate::store::users::Member;
    use crate::store::AnyStore;

    use super::*;

    fn member(created: u64) -> Member {
        Member {
            created,
            ip: "::1".into(),
            ua: "test".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn members_of_expired_sessions_go_on_read_and_at_the_sweep() {
        let store = MemoryStore::with_clock(100, Duration::from_secs(3600), Clock::Tokio);
        let ada = Identity::new("ada").unwrap();
        let data = serde_json::json!({"user": "ada"});
        let short = conformance::create(&store, data.clone(), Duration::from_secs(1)).await;
        let long = conformance::create(&store, data, Duration::from_secs(60)).await;
        store.index_add(&ada, &short, &member(1));
        store.index_add(&ada, &long, &member(2));
        let listed = AnyStore::Memory(store.clone())
            .index_list(&ada)
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].id, short, "oldest first");

        tokio::time::sleep(Duration::from_secs(2)).await;
        let listed = store.index_list(&ada);
        assert_eq!(listed.len(), 1, "the expired one is not listed");
        assert_eq!(listed[0].id, long);
        assert_eq!(store.index_len(), 1, "and left the index");

        // A member whose session never existed goes at the sweep.
        let grace = Identity::new("grace").unwrap();
        store.index_add(&grace, &SessionId::generate(), &member(3));
        assert_eq!(store.index_len(), 2);
        assert_eq!(store.inner.sweep_users(), 1);
        assert_eq!(store.index_len(), 1);
        // A move keeps what the entry recorded.
        let moved = SessionId::generate();
        store.index_move(&ada, (&long, &moved), &member(9));
        assert_eq!(store.index_len(), 1);
        let by_user = store.inner.users.lock();
        assert_eq!(by_user[&ada][moved.as_str()].created, 2);
        drop(by_user);
        store.index_remove(&ada, &moved);
        assert_eq!(store.index_len(), 0);
    }
}
