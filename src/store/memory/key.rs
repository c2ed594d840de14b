//! What the memory store files a session under: the 32 random bytes of its
//! id ([`Key`]), not the id's 43 characters of base64 in a box of their
//! own, and the 12 of them that the user index keeps ([`Prefix`]).
//!
//! Every session the store holds was created under a fresh id from
//! [`SessionId::generate`] (the proxy never adopts a client's id), so every
//! id it holds decodes to 32 bytes. An id that does not (express-session's,
//! say) names no session here: a load finds it missing, a commit on it
//! finds it vanished.
//!
//! Hashing without a keyed hash is safe from flooding for the same reason:
//! every key is 256 random bits the proxy drew, and a key looked up comes
//! from an id whose signature verified, so no one can choose keys that
//! collide.

use crate::domain::session::{SessionId, ID_BYTES};

/// Bytes of a key the user index keeps: 96 bits.
///
/// Why that is enough: a member finds its session as the one in its shard
/// whose key starts with its prefix, so two live sessions sharing a prefix
/// would let a member find the other (the admin API could list it under
/// the wrong user, and revoking it there would end it). Keys are 256 bits
/// the proxy drew at random, so prefixes are uniform and nobody can aim
/// for one: of `n` live sessions, two share a prefix with a probability of
/// about n²/2⁹⁷, under 10⁻¹⁷ for a million, about 10⁻¹⁰ at the store's
/// limit of 2³² sessions. A lookup for a member whose session is gone
/// meets another's prefix with a probability of n/2⁹⁶, about 10⁻²³ per
/// lookup for a million. 16 bytes would take a member past 40 bytes (see
/// [`members`](super::members)) for no risk that matters. The hashes read
/// only the first 8 bytes, so a key and its prefix hash alike.
pub(super) const PREFIX_BYTES: usize = 12;

/// A session's key: its id's bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Key([u8; ID_BYTES]);

impl Key {
    /// The key of `id`; `None` when `id` was not made by
    /// [`SessionId::generate`], so no session of this store has it.
    pub fn of(id: &SessionId) -> Option<Self> {
        id.to_bytes().map(Self)
    }

    /// The id this key was decoded from.
    pub fn id(&self) -> SessionId {
        SessionId::from_bytes(&self.0)
    }

    pub fn prefix(&self) -> Prefix {
        let mut prefix = [0u8; PREFIX_BYTES];
        prefix.copy_from_slice(&self.0[..PREFIX_BYTES]);
        Prefix(prefix)
    }

    /// The hash both the shard choice and the shard's table use: its
    /// prefix's, so the user index finds a session by its prefix alone.
    pub fn hash(&self) -> u64 {
        self.prefix().hash()
    }

    pub fn starts_with(&self, prefix: &Prefix) -> bool {
        self.0[..PREFIX_BYTES] == prefix.0
    }
}

/// The first bytes of a key: how the user index names a session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Prefix([u8; PREFIX_BYTES]);

impl Prefix {
    /// Its first eight bytes, mixed: one multiplication carries every bit
    /// into the top half (the table's probe tags and the shard come from
    /// there), and folding the top half down does the same for the low
    /// bits (the table's buckets).
    pub fn hash(&self) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        let mixed = u64::from_le_bytes(word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        mixed ^ (mixed >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_decode_to_keys_and_back() {
        for _ in 0..100 {
            let id = SessionId::generate();
            let key = Key::of(&id).expect("a generated id decodes");
            assert_eq!(key.id(), id);
            assert!(key.starts_with(&key.prefix()));
        }
    }

    #[test]
    fn ids_not_made_by_generate_have_no_key() {
        let id = SessionId::generate();
        let text = id.as_str();
        // A canonical id ends in A, E, I, ... (a multiple of 4): 'B' (1)
        // sets the two unused bits of the last character.
        let last_bits_set = format!("{}B", &text[..42]);
        for other in [
            "tXGk0a3TLJ5B8Hqz-1yjG8ZKhaD6YUHj".to_owned(), // express-session's shape
            text[..42].to_owned(),
            format!("{text}A"),
            format!("{}.", &text[..42]),
            last_bits_set,
        ] {
            let other = SessionId::parse(&other).unwrap();
            assert!(Key::of(&other).is_none(), "{}", other.as_str());
        }
    }

    #[test]
    fn keys_spread_over_shards_buckets_and_probe_tags() {
        let hashes: Vec<u64> = (0..4096)
            .map(|_| Key::of(&SessionId::generate()).unwrap().hash())
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
}
