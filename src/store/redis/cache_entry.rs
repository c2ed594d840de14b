//! One session record as the Redis store's cache ([`super::cache`]) holds
//! it: the id in the entry itself, and the record in one block beside it.
//!
//! With a million sessions cached, what a read costs is the cache lines
//! it touches that are not in the CPU's cache, and the pages whose
//! translation is not either. So a record is two places, not five:
//! - the entry (in the shard's [`Slab`](crate::store::slab::Slab)), with
//!   the id inline ([`CacheId`]: Cloakroom's ids are 43 characters,
//!   express-session's 32), its expiry and where the block's parts are;
//! - one block ([`Record`]) holding the stamp's encoding, the data's JSON,
//!   then the record as Redis holds it. A read takes the first two, which
//!   for a small session share one cache line; only a commit's
//!   compare-and-set needs the raw record.
//!
//! A read hands out a fresh [`SessionData`] over a copy of the JSON
//! ([`SessionData::copied`]), as the memory store does: nothing in the
//! cache is shared with a request, so no count is updated on a line other
//! threads read, and a record dropped needs nothing to outlive it.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::record::Decoded;
use crate::domain::session::lifetime::{decode_stamp, encode_stamp, Stamp};
use crate::domain::session::SessionData;

/// Bytes of an id held in the entry; a longer one is boxed.
const INLINE_ID: usize = 46;

/// A session id as the cache files it.
pub(super) enum CacheId {
    Inline { length: u8, bytes: [u8; INLINE_ID] },
    Boxed(Box<str>),
}

impl CacheId {
    pub fn new(id: &str) -> Self {
        match u8::try_from(id.len()) {
            Ok(length) if id.len() <= INLINE_ID => {
                let mut bytes = [0u8; INLINE_ID];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                Self::Inline { length, bytes }
            }
            _ => Self::Boxed(id.into()),
        }
    }

    pub fn is(&self, id: &str) -> bool {
        let held = match self {
            Self::Inline { length, bytes } => &bytes[..usize::from(*length)],
            Self::Boxed(text) => text.as_bytes(),
        };
        held == id.as_bytes()
    }
}

/// A record, decoded and raw, in one block.
pub(super) struct Record {
    /// The stamp's encoding (when `json_at` > 0), the data's JSON, then
    /// the raw record.
    block: Box<[u8]>,
    json_at: u32,
    raw_at: u32,
    /// The cookie object's place in the raw record, when known (see
    /// [`Decoded::cookie_at`]); empty when not.
    cookie_at: Range<u32>,
    /// When Redis lets it go (less the clock's resolution); `None` when
    /// the key has no time to live.
    pub expires: Option<Instant>,
}

impl Record {
    /// `raw` as Redis holds it and `decoded`, its reading; `None` for a
    /// record past 4 GiB, which is not cached.
    pub fn new(raw: &[u8], decoded: &Decoded, expires: Option<Instant>) -> Option<Self> {
        let json = decoded.data.ascii_json();
        let mut block = Vec::with_capacity(33 + json.len() + raw.len());
        if let Some(stamp) = &decoded.stamp {
            encode_stamp(stamp, &mut block);
        }
        let json_at = u32::try_from(block.len()).ok()?;
        block.extend_from_slice(json);
        let raw_at = u32::try_from(block.len()).ok()?;
        block.extend_from_slice(raw);
        u32::try_from(block.len()).ok()?;
        let cookie_at = match &decoded.cookie_at {
            Some(at) => u32::try_from(at.start).ok()?..u32::try_from(at.end).ok()?,
            None => 0..0,
        };
        Some(Self {
            block: block.into_boxed_slice(),
            json_at,
            raw_at,
            cookie_at,
            expires,
        })
    }

    fn part(&self, at: Range<u32>) -> &[u8] {
        // Both ends were lengths of the block as it was built.
        let at = at.start as usize..at.end as usize;
        self.block.get(at).unwrap_or_default()
    }

    pub fn stamp(&self) -> Option<Stamp> {
        (self.json_at > 0).then(|| decode_stamp(&self.block).0)
    }

    fn json(&self) -> &[u8] {
        self.part(self.json_at..self.raw_at)
    }

    /// The session's data, built afresh.
    pub fn data(&self) -> Arc<SessionData> {
        Arc::new(SessionData::copied(self.json()))
    }

    /// The record as Redis holds it.
    pub fn raw(&self) -> &[u8] {
        &self.block[self.raw_at as usize..]
    }

    /// What [`Self::new`] was given as the record's reading.
    pub fn decoded(&self) -> Decoded {
        Decoded {
            data: self.data(),
            stamp: self.stamp(),
            cookie_at: (!self.cookie_at.is_empty())
                .then_some(self.cookie_at.start as usize..self.cookie_at.end as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_id_is_found_under_itself_alone_inline_or_boxed() {
        for id in ["", "a", &"x".repeat(INLINE_ID), &"y".repeat(INLINE_ID + 1)] {
            let held = CacheId::new(id);
            assert_eq!(
                matches!(held, CacheId::Inline { .. }),
                id.len() <= INLINE_ID
            );
            assert!(held.is(id), "{id}");
            assert!(!held.is(&format!("{id}z")), "{id}");
            assert!(id.is_empty() || !held.is(&id[1..]), "{id}");
        }
        // Cloakroom's ids are held inline.
        let ours = crate::domain::session::SessionId::generate();
        assert!(matches!(
            CacheId::new(ours.as_str()),
            CacheId::Inline { .. }
        ));
    }

    #[test]
    fn a_record_gives_back_what_it_was_given() {
        let data = match json!({"user": "alice", "n": [1, 2.5, "é"]}) {
            serde_json::Value::Object(map) => Arc::new(SessionData::new(map)),
            _ => unreachable!(),
        };
        let stamps = [
            None,
            Some(Stamp::default()),
            Some(Stamp {
                created: 1,
                absolute: Some(u64::MAX),
                idle: None,
                remember: Some(3),
            }),
        ];
        let raw = br#"{"cookie":{"path":"/"},"user":"alice"}"#;
        for stamp in stamps {
            for cookie_at in [None, Some(10..22)] {
                let decoded = Decoded {
                    data: Arc::clone(&data),
                    stamp,
                    cookie_at: cookie_at.clone(),
                };
                let expires = Some(Instant::now());
                let record = Record::new(raw, &decoded, expires).expect("small");
                assert_eq!(record.raw(), raw);
                assert_eq!(record.stamp(), stamp);
                assert_eq!(record.expires, expires);
                assert_eq!(record.data().ascii_json(), data.ascii_json());
                let back = record.decoded();
                assert_eq!(back.stamp, stamp);
                assert_eq!(back.cookie_at, cookie_at);
                assert_eq!(back.data.ascii_json(), data.ascii_json());
                assert_eq!(back.data.map(), data.map());
            }
        }
    }
}
