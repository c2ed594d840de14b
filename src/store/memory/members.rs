//! One user's members in the memory store's user index: 48 bytes each.
//!
//! A member names its session by the first 16 bytes of its key
//! ([`Prefix`]; the session, found by them in its shard, gives the whole
//! id back), and keeps when it was created, the client's address as an
//! [`IpAddr`] (not its text) and its user agent as an [`Agent`].

use std::net::IpAddr;

use super::agents::Agent;
use super::key::Prefix;
use super::slab::{Hashed, Slab};

pub(super) struct Member {
    pub session: Prefix,
    /// Unix time in milliseconds.
    pub created: u64,
    pub ip: IpAddr,
    pub agent: Agent,
}

impl Hashed for Member {
    fn hash(&self) -> u64 {
        self.session.hash()
    }
}

/// A user's members, one per session.
#[derive(Default)]
pub(super) struct Members {
    members: Slab<Member>,
}

impl Members {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.entries().iter()
    }

    /// Adds `member`; returns the member it replaced (the same session's).
    /// `member` is dropped and returned when the user has `u32::MAX`.
    pub fn insert(&mut self, member: Member) -> Option<Member> {
        let replaced = self.remove(&member.session);
        match replaced {
            Some(old) => {
                self.members.insert(member);
                Some(old)
            }
            None if self.members.len() < u32::MAX as usize => {
                self.members.insert(member);
                None
            }
            None => Some(member),
        }
    }

    pub fn remove(&mut self, session: &Prefix) -> Option<Member> {
        let at = self
            .members
            .find(session.hash(), |member| member.session == *session)?;
        Some(self.members.remove_at(at))
    }

    /// Keeps the members for which `keep` holds (which may take what it
    /// needs of those it drops); returns how many went.
    pub fn retain(&mut self, keep: impl FnMut(&Member) -> bool) -> usize {
        self.members.retain(keep)
    }
}
