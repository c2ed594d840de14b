//! One session as the memory store keeps it: 64 bytes, and for a larger
//! session the bytes of its JSON beside them.
//!
//! - its [`Key`] (32 bytes);
//! - one word: its expiry in nanoseconds since the store's epoch (the
//!   resolution of the `Instant` it replaces, so expiry decides exactly as
//!   before), with two flags in the top bits: signed in, computed when the
//!   session is written so that eviction never parses JSON, and stamped;
//! - one [`Record`] (24 bytes): the session's [`Stamp`] when it is set (an
//!   app without idle or absolute timeouts has none), then its ASCII JSON,
//!   the one form of the data kept; held in the entry itself up to
//!   [`INLINE`] bytes (`{"user":"alice"}` is 16), boxed beyond. A load
//!   hands out a fresh
//!   [`SessionData`] over a copy of the JSON, its map parsed only if
//!   something asks for it; the data the proxy wrote is not kept, so no
//!   map, no second rendering and no `Arc` per session.

use std::sync::Arc;

use super::key::Key;
use crate::domain::session::lifetime::{decode_stamp, encode_stamp, Stamp};
use crate::domain::session::SessionData;

/// Nanoseconds since the store's epoch.
pub(super) type Nanos = u64;

const LOGGED_IN: u64 = 1 << 63;
const STAMPED: u64 = 1 << 62;
/// The latest expiry: about 146 years after the store started.
pub(super) const NEVER: Nanos = STAMPED - 1;

/// Aligned to its size, so that a lookup reads one cache line: the key it
/// compares, the expiry and inline JSON after it.
#[repr(align(64))]
pub(super) struct Entry {
    key: Key,
    /// The expiry and the flags.
    word: u64,
    /// The stamp's encoding when [`STAMPED`], then the JSON.
    record: Record,
}

/// Bytes a [`Record`] holds without an allocation of its own.
pub(super) const INLINE: usize = 22;

/// A byte string held inline when short: the entry's 24 bytes either way
/// (a boxed slice is 16, and the tag fits beside the inline bytes), where a
/// `Box<[u8]>` alone would add a heap block of at least 32 bytes to the
/// entry's 16 for a session of a few keys.
enum Record {
    Inline { length: u8, bytes: [u8; INLINE] },
    Boxed(Box<[u8]>),
}

impl Record {
    fn new(bytes: &[u8]) -> Self {
        match u8::try_from(bytes.len()) {
            Ok(length) if bytes.len() <= INLINE => {
                let mut inline = [0u8; INLINE];
                inline[..bytes.len()].copy_from_slice(bytes);
                Self::Inline {
                    length,
                    bytes: inline,
                }
            }
            _ => Self::Boxed(bytes.into()),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline { length, bytes } => &bytes[..usize::from(*length)],
            Self::Boxed(bytes) => bytes,
        }
    }
}

impl Entry {
    pub fn new(
        key: Key,
        data: &SessionData,
        stamp: &Stamp,
        expires: Nanos,
        logged_in: bool,
    ) -> Self {
        let json = data.ascii_json();
        let mut word = expires.min(NEVER);
        if logged_in {
            word |= LOGGED_IN;
        }
        let record = if stamp.is_set() {
            word |= STAMPED;
            let mut record = Vec::with_capacity(33 + json.len());
            encode_stamp(stamp, &mut record);
            record.extend_from_slice(json);
            Record::new(&record)
        } else {
            Record::new(json)
        };
        Self { key, word, record }
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn expires(&self) -> Nanos {
        self.word & NEVER
    }

    pub fn set_expires(&mut self, expires: Nanos) {
        self.word = (self.word & !NEVER) | expires.min(NEVER);
    }

    pub fn is_live(&self, now: Nanos) -> bool {
        self.expires() > now
    }

    /// The identity key was present (and not null) when it was written.
    pub fn is_logged_in(&self) -> bool {
        self.word & LOGGED_IN != 0
    }

    pub fn is_empty(&self) -> bool {
        self.json() == b"{}"
    }

    pub fn stamp(&self) -> Stamp {
        if self.word & STAMPED == 0 {
            return Stamp::default();
        }
        decode_stamp(self.record.bytes()).0
    }

    /// The session's JSON, as it was written.
    pub fn json(&self) -> &[u8] {
        let record = self.record.bytes();
        if self.word & STAMPED == 0 {
            return record;
        }
        let (_, length) = decode_stamp(record);
        &record[length..]
    }

    /// The session's data, built afresh.
    pub fn data(&self) -> Arc<SessionData> {
        Arc::new(SessionData::copied(self.json()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::SessionId;
    use serde_json::json;

    fn data(value: serde_json::Value) -> SessionData {
        match value {
            serde_json::Value::Object(map) => SessionData::new(map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_entry_gives_back_what_it_was_given() {
        let key = Key::of(&SessionId::generate()).unwrap();
        let written = data(json!({"user": "alice", "n": [1, 2.5, "é"]}));
        let stamps = [
            Stamp::default(),
            Stamp {
                created: 5,
                absolute: Some(u64::MAX),
                idle: None,
                remember: Some(7),
            },
            Stamp {
                created: u64::MAX,
                absolute: None,
                idle: Some(0),
                remember: None,
            },
            Stamp {
                created: 1,
                absolute: Some(2),
                idle: Some(3),
                remember: Some(4),
            },
        ];
        for stamp in stamps {
            for logged_in in [false, true] {
                for expires in [0, 1, 123_456_789, NEVER, u64::MAX] {
                    let entry = Entry::new(key, &written, &stamp, expires, logged_in);
                    assert!(entry.key() == &key);
                    assert_eq!(entry.stamp(), stamp);
                    assert_eq!(entry.is_logged_in(), logged_in);
                    assert_eq!(entry.expires(), expires.min(NEVER));
                    let read = entry.data();
                    assert_eq!(read.ascii_json(), written.ascii_json());
                    assert_eq!(read.map(), written.map());
                    assert!(!entry.is_empty());
                }
            }
        }
    }

    #[test]
    fn an_entry_is_64_bytes_and_short_json_stays_inline() {
        assert_eq!(std::mem::size_of::<Record>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 64);
        assert_eq!(std::mem::align_of::<Entry>(), 64);
        let key = Key::of(&SessionId::generate()).unwrap();
        let at_limit = data(json!({"user": "alice", "k": 1}));
        assert_eq!(at_limit.ascii_json().len(), INLINE);
        let over = data(json!({"user": "alice", "k": 12}));
        for (written, inline) in [(data(json!({})), true), (at_limit, true), (over, false)] {
            let entry = Entry::new(key, &written, &Stamp::default(), 1, false);
            assert_eq!(matches!(entry.record, Record::Inline { .. }), inline);
            assert_eq!(entry.data().ascii_json(), written.ascii_json());
        }
    }

    #[test]
    fn data_of_every_length_reads_back_and_outlives_its_entry() {
        let key = Key::of(&SessionId::generate()).unwrap();
        // Around the inline record's limit and the short data's (47 bytes,
        // `SessionData::copied`).
        for length in 0..=50 {
            let written = data(json!({ "k": "x".repeat(length) }));
            let entry = Entry::new(key, &written, &Stamp::default(), 1, false);
            let read = entry.data();
            let shared = read.ascii_json().clone();
            drop(entry);
            drop(read);
            assert_eq!(shared, written.ascii_json(), "{length}");
            assert_eq!(shared.slice(1..4), &b"\"k\""[..], "{length}");
        }
    }

    #[test]
    fn the_expiry_changes_alone() {
        let key = Key::of(&SessionId::generate()).unwrap();
        let stamp = Stamp {
            created: 9,
            idle: Some(1),
            ..Stamp::default()
        };
        let mut entry = Entry::new(key, &data(json!({})), &stamp, 10, true);
        assert!(entry.is_empty());
        assert!(entry.is_live(9) && !entry.is_live(10));
        entry.set_expires(u64::MAX);
        assert_eq!(entry.expires(), NEVER);
        entry.set_expires(20);
        assert_eq!(entry.expires(), 20);
        assert!(entry.is_logged_in());
        assert_eq!(entry.stamp(), stamp);
    }
}
