//! The user index: from a user's identity to their live sessions, kept in
//! the store beside the sessions, so that every instance sharing a store
//! sees the same index.
//!
//! - memory: a map from identity to its sessions, beside the shards; stale
//!   members are dropped when the index is read and at every sweep;
//! - Redis: a hash `<prefix>user:<identity>` per user, whose fields are
//!   session ids and whose values are a [`Member`] as JSON. Stale fields are
//!   dropped when the hash is read; the key's TTL is kept no shorter than
//!   its longest-living session, so an abandoned index expires by itself.
//!
//! The index is not updated atomically with the sessions (the proxy writes
//! it after the session commit): a member whose session has expired or
//! vanished is harmless, since every read checks each member against the
//! store and drops it.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{AnyStore, StoreError};
use crate::domain::session::identity::Identity;
use crate::domain::session::SessionId;

/// Longest `User-Agent` kept in the index, in bytes.
const MAX_USER_AGENT_BYTES: usize = 256;

/// What the index keeps of a session: when its identity appeared, and the
/// client's address and `User-Agent` then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Unix time in milliseconds.
    pub created: u64,
    /// As JSON, its text (`"192.0.2.1"`, `"2001:db8::1"`).
    pub ip: IpAddr,
    pub ua: String,
}

impl Member {
    /// A member created now. The user agent is cut to a bounded length (at
    /// a character boundary).
    pub fn now(ip: IpAddr, user_agent: &str) -> Self {
        let mut cut = user_agent.len().min(MAX_USER_AGENT_BYTES);
        while !user_agent.is_char_boundary(cut) {
            cut -= 1;
        }
        Self {
            created: unix_millis(SystemTime::now()),
            ip,
            ua: user_agent[..cut].to_owned(),
        }
    }

    /// The stored form: `{"created":…,"ip":"…","ua":"…"}`.
    pub fn encode(&self) -> String {
        // Serialising strings and a number cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored form; `None` for anything else (another writer's
    /// value is not trusted).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// A live session of a user, as the index lists it.
#[derive(Debug, Clone)]
pub struct IndexedSession {
    pub id: SessionId,
    pub member: Member,
    /// When the store will drop the session, if it has an expiry.
    pub expires: Option<SystemTime>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl AnyStore {
    /// Adds (or replaces) `id` in `identity`'s index; `ttl` is the
    /// session's lifetime, which the index outlives. Redis: the index's
    /// size after; memory: `None` (its sweep keeps it clean).
    pub async fn index_add(
        &self,
        identity: &Identity,
        id: &SessionId,
        member: &Member,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Memory(store) => {
                store.index_add(identity, id, member);
                Ok(None)
            }
            Self::Redis(store) => Box::pin(store.index_add(identity, id, member, ttl))
                .await
                .map(Some),
        }
    }

    /// Moves `old`'s entry in `identity`'s index to `new` (the session
    /// moved to a fresh id), keeping what it recorded; with no entry for
    /// `old`, `new` gets `member`.
    pub async fn index_move(
        &self,
        identity: &Identity,
        moved: (&SessionId, &SessionId),
        member: &Member,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.index_move(identity, moved, member);
                Ok(())
            }
            Self::Redis(store) => Box::pin(store.index_move(identity, moved, member, ttl)).await,
        }
    }

    /// Makes `identity`'s index live at least `ttl` from now (a session of
    /// its user was extended), if it exists.
    pub async fn index_outlive(
        &self,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(store) => Box::pin(store.index_outlive(identity, ttl)).await,
        }
    }

    /// Removes `id` from `identity`'s index.
    pub async fn index_remove(
        &self,
        identity: &Identity,
        id: &SessionId,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.index_remove(identity, id);
                Ok(())
            }
            Self::Redis(store) => Box::pin(store.index_remove(identity, id)).await,
        }
    }

    /// `identity`'s live sessions, oldest first. Members whose session has
    /// expired or vanished are dropped from the index on the way.
    pub async fn index_list(&self, identity: &Identity) -> Result<Vec<IndexedSession>, StoreError> {
        let mut sessions = match self {
            Self::Memory(store) => store.index_list(identity),
            Self::Redis(store) => Box::pin(store.index_list(identity)).await?,
        };
        sessions.sort_by_key(|session| session.member.created);
        Ok(sessions)
    }

    /// Live sessions in the store: the memory store's live entries; on
    /// Redis, a `SCAN` of the session keys (O(n) in the keys of the
    /// database).
    pub async fn count_sessions(&self) -> Result<u64, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.live_len() as u64),
            Self::Redis(store) => Box::pin(store.count_sessions()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_and_foreign_values_are_refused() {
        let member = Member {
            created: 1_700_000_000_123,
            ip: "192.0.2.1".parse().unwrap(),
            ua: "curl/8".into(),
        };
        assert_eq!(
            member.encode(),
            r#"{"created":1700000000123,"ip":"192.0.2.1","ua":"curl/8"}"#
        );
        assert_eq!(Member::decode(member.encode().as_bytes()), Some(member));
        for bad in [
            &b"1"[..],
            b"{}",
            b"not json",
            br#"{"created":"x","ip":"","ua":""}"#,
        ] {
            assert_eq!(Member::decode(bad), None);
        }
    }

    #[test]
    fn a_long_user_agent_is_cut_at_a_character_boundary() {
        let member = Member::now("::1".parse().unwrap(), &"é".repeat(200));
        assert!(member.ua.len() <= MAX_USER_AGENT_BYTES);
        assert!(member.ua.chars().all(|c| c == 'é'));
        assert!(member.created > 1_700_000_000_000);
    }
}
