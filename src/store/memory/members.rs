//! One user's members in the memory store's user index: 40 bytes each.
//!
//! A member names its session by the first 12 bytes of its key
//! ([`Prefix`]; the session, found by them in its shard, gives the whole
//! id back; why 96 bits are enough is in [`key`](super::key)), and keeps
//! when it was created, the client's address as an [`IpAddr`] (not its
//! text) and its user agent as an [`Agent`].
//!
//! Layout: 12 (prefix) + 6 (created) + 17 (address) + 4 (agent) = 39
//! bytes, 40 with the agent's alignment. `created` is kept as 48 bits of
//! milliseconds in bytes, not a `u64`: that spares the `u64`'s two unused
//! bytes and its 8-byte alignment, and 2^48 ms after 1970 is the year
//! 10889. The address stays a whole `IpAddr`: folding it to 16 bytes (an
//! IPv4 address as IPv4-mapped IPv6) would save one byte but turn a
//! trusted proxy's `X-Forwarded-For` of `::ffff:192.0.2.1` into
//! `192.0.2.1` in the admin API, which must show what was recorded.

use std::net::IpAddr;

use super::agents::Agent;
use super::key::Prefix;
use crate::store::slab::{Hashed, Slab};

/// Bytes of `created` kept.
const CREATED_BYTES: usize = 6;
/// The latest `created` kept; a later one (a clock past the year 10889) is
/// kept as this.
const CREATED_MAX: u64 = (1 << (8 * CREATED_BYTES)) - 1;

pub(super) struct Member {
    pub session: Prefix,
    /// Unix time in milliseconds, little-endian, up to [`CREATED_MAX`].
    created: [u8; CREATED_BYTES],
    pub ip: IpAddr,
    pub agent: Agent,
}

impl Member {
    pub fn new(session: Prefix, created: u64, ip: IpAddr, agent: Agent) -> Self {
        let mut bytes = [0u8; CREATED_BYTES];
        bytes.copy_from_slice(&created.min(CREATED_MAX).to_le_bytes()[..CREATED_BYTES]);
        Self {
            session,
            created: bytes,
            ip,
            agent,
        }
    }

    /// Unix time in milliseconds.
    pub fn created(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes[..CREATED_BYTES].copy_from_slice(&self.created);
        u64::from_le_bytes(bytes)
    }
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

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::super::agents::Agents;
    use super::super::key::Key;
    use super::*;
    use crate::domain::session::SessionId;

    #[test]
    fn a_member_takes_40_bytes_and_gives_back_what_it_was_given() {
        // At most 40; exact, so that a change of layout is seen here.
        assert_eq!(size_of::<Member>(), 40);
        let mut agents = Agents::default();
        let firefox = agents.hold("Firefox");
        for (ip, created, agent) in [
            ("192.0.2.1", 1_700_000_000_123, firefox),
            ("2001:db8::1", 1_764_854_400_999, Agent::NONE),
            // As recorded: not folded to 192.0.2.1.
            ("::ffff:192.0.2.1", 0, firefox),
            ("0.0.0.0", CREATED_MAX, Agent::NONE),
        ] {
            let session = Key::of(&SessionId::generate()).unwrap().prefix();
            let member = Member::new(session, created, ip.parse().unwrap(), agent);
            assert!(member.session == session);
            assert_eq!(member.created(), created);
            assert_eq!(member.ip.to_string(), ip);
            assert_eq!(member.agent, agent);
        }
        assert_eq!(agents.text(firefox), "Firefox");
    }

    #[test]
    fn a_created_past_48_bits_is_kept_as_the_latest() {
        let session = Key::of(&SessionId::generate()).unwrap().prefix();
        let ip = "192.0.2.1".parse().unwrap();
        let member = Member::new(session, u64::MAX, ip, Agent::NONE);
        assert_eq!(member.created(), CREATED_MAX);
    }
}
