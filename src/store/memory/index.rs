//! The memory store's user index: identity → its sessions, beside the
//! shards (see [`crate::store::users`]).
//!
//! Why a blocking mutex: its critical sections are a few map operations,
//! nothing awaits while it is held, and it is taken at logins, logouts and
//! admin calls, not per request. Lock order: the index, then a shard;
//! nothing takes the index while holding a shard, so the two cannot
//! deadlock.
//!
//! Compact ([`members`](super::members)): a member is 40 bytes, its user
//! agent held once for all members ([`agents`](super::agents)). An id that
//! does not decode to a key names no session of this store, so it is not
//! indexed.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::agents::Agents;
use super::key::{Key, Prefix};
use super::members::{self, Members};
use super::{lock, Inner, MemoryStore};
use crate::domain::session::identity::Identity;
use crate::domain::session::SessionId;
use crate::store::users::{IndexedSession, Member};

#[derive(Default)]
struct ByUser {
    users: HashMap<Identity, Members>,
    agents: Agents,
}

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

impl ByUser {
    fn compact(&mut self, key: &Key, member: &Member) -> members::Member {
        let agent = self.agents.hold(&member.ua);
        members::Member::new(key.prefix(), member.created, member.ip, agent)
    }

    /// Adds `member` to `identity`'s members, in place of its session's.
    fn add(&mut self, identity: &Identity, member: members::Member) {
        let sessions = self.users.entry(identity.clone()).or_default();
        if let Some(dropped) = sessions.insert(member) {
            self.agents.release(dropped.agent);
        }
    }

    /// Removes `identity`'s members for which `gone` holds; how many.
    fn drop_where(&mut self, identity: &Identity, gone: impl Fn(&Prefix) -> bool) -> usize {
        let Some(sessions) = self.users.get_mut(identity) else {
            return 0;
        };
        let agents = &mut self.agents;
        let removed = sessions.retain(|member| {
            let keep = !gone(&member.session);
            if !keep {
                agents.release(member.agent);
            }
            keep
        });
        if sessions.is_empty() {
            self.users.remove(identity);
        }
        removed
    }
}

impl Inner {
    /// The live session named by `prefix`: its key and its time left.
    fn live_session(&self, prefix: &Prefix, now: tokio::time::Instant) -> Option<(Key, Duration)> {
        let nanos = self.nanos(now);
        let shard = lock(self.shard_of(prefix.hash()));
        let entry = shard
            .by_prefix(prefix)
            .filter(|entry| entry.is_live(nanos))?;
        Some((*entry.key(), Duration::from_nanos(entry.expires() - nanos)))
    }

    /// Drops every member whose session is gone; returns how many.
    pub(super) fn sweep_users(&self) -> usize {
        let now = self.clock.now();
        let mut by_user = self.users.lock();
        let ByUser { users, agents } = &mut *by_user;
        let mut removed = 0;
        users.retain(|_, sessions| {
            removed += sessions.retain(|member| {
                let live = self.live_session(&member.session, now).is_some();
                if !live {
                    agents.release(member.agent);
                }
                live
            });
            !sessions.is_empty()
        });
        removed
    }
}

impl MemoryStore {
    pub(crate) fn index_add(&self, identity: &Identity, id: &SessionId, member: &Member) {
        let Some(key) = Key::of(id) else { return };
        let mut by_user = self.inner.users.lock();
        let member = by_user.compact(&key, member);
        by_user.add(identity, member);
    }

    pub(crate) fn index_move(
        &self,
        identity: &Identity,
        (old, new): (&SessionId, &SessionId),
        member: &Member,
    ) {
        let mut by_user = self.inner.users.lock();
        let kept = Key::of(old).and_then(|old| {
            let sessions = by_user.users.get_mut(identity)?;
            sessions.remove(&old.prefix())
        });
        let Some(new) = Key::of(new) else {
            if let Some(kept) = kept {
                by_user.agents.release(kept.agent);
            }
            return;
        };
        let moved = match kept {
            Some(mut kept) => {
                kept.session = new.prefix();
                kept
            }
            None => by_user.compact(&new, member),
        };
        by_user.add(identity, moved);
    }

    pub(crate) fn index_remove(&self, identity: &Identity, id: &SessionId) {
        let Some(key) = Key::of(id) else { return };
        let prefix = key.prefix();
        self.inner
            .users
            .lock()
            .drop_where(identity, |session| *session == prefix);
    }

    /// `identity`'s live sessions (in no order); stale members dropped.
    pub(crate) fn index_list(&self, identity: &Identity) -> Vec<IndexedSession> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut by_user = inner.users.lock();
        let ByUser { users, agents } = &mut *by_user;
        let Some(sessions) = users.get_mut(identity) else {
            return Vec::new();
        };
        let mut live = Vec::with_capacity(sessions.len());
        sessions.retain(|member| match inner.live_session(&member.session, now) {
            Some((key, left)) => {
                live.push(IndexedSession {
                    id: key.id(),
                    member: Member {
                        created: member.created(),
                        ip: member.ip,
                        ua: agents.text(member.agent).to_owned(),
                    },
                    expires: Some(SystemTime::now() + left),
                });
                true
            }
            None => {
                agents.release(member.agent);
                false
            }
        });
        if sessions.is_empty() {
            users.remove(identity);
        }
        live
    }

    /// Live sessions (expired ones not yet swept left out).
    pub fn live_len(&self) -> usize {
        let now = self.inner.nanos(self.inner.clock.now());
        self.inner
            .shards
            .iter()
            .map(|shard| {
                lock(shard)
                    .entries()
                    .iter()
                    .filter(|e| e.is_live(now))
                    .count()
            })
            .sum()
    }

    /// Members held in the index, for tests of its bound.
    #[cfg(test)]
    pub(crate) fn index_len(&self) -> usize {
        self.inner
            .users
            .lock()
            .users
            .values()
            .map(Members::len)
            .sum()
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
            ip: "::1".parse().unwrap(),
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
        let moved_to = Key::of(&moved).unwrap().prefix();
        let by_user = store.inner.users.lock();
        let kept = by_user.users[&ada].iter().find(|m| m.session == moved_to);
        assert_eq!(kept.map(members::Member::created), Some(2));
        drop(by_user);
        store.index_remove(&ada, &moved);
        assert_eq!(store.index_len(), 0);
    }
}
