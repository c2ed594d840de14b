//! Session lifetimes enforced on the server: the idle timeout (a session
//! unused this long is dead), the absolute timeout (a session older than
//! this is dead, however active), and "remember me" (one session given a
//! longer life by the upstream).
//!
//! A session's own [`Stamp`] is stored with it: when it was created, its
//! absolute deadline, its idle timeout and its remembered lifetime, in
//! milliseconds on the store's clock (Unix time for Redis). The idle
//! deadline itself is the store's expiry: touching a session moves it
//! without rewriting the data. Pure: the stores read their own clocks.

use std::time::Duration;

use serde_json::{Map, Value};

/// The record key holding the [`Stamp`] (a Redis record's top-level key,
/// beside express-session's `cookie`). Reserved: hidden from the upstream,
/// and no patch may touch it.
pub const STAMP_KEY: &str = "__cloakroom";

/// The configured lifetimes (`session.idle_timeout`,
/// `session.absolute_timeout`); `None`: off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetimes {
    pub idle: Option<Duration>,
    pub absolute: Option<Duration>,
}

/// One session's lifetime facts, in ms on the store's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    pub created: u64,
    /// When the session dies, however active.
    pub absolute: Option<u64>,
    /// How long it may stay unused.
    pub idle: Option<u64>,
    /// The lifetime the upstream asked for ("remember me"), also the
    /// cookie's max age.
    pub remember: Option<u64>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Stamp {
    /// A session created at `now` under `lifetimes`.
    pub fn new(now: u64, lifetimes: Lifetimes) -> Self {
        Self {
            created: now,
            absolute: lifetimes.absolute.map(|d| now.saturating_add(millis(d))),
            idle: lifetimes.idle.map(millis),
            remember: None,
        }
    }

    /// The session remembered for `lifetime`: its idle and absolute
    /// timeouts are at least that long, counted from `now`.
    pub fn remembered(self, now: u64, lifetime: Duration) -> Self {
        let lifetime = millis(lifetime);
        let until = now.saturating_add(lifetime);
        Self {
            absolute: self.absolute.map(|deadline| deadline.max(until)),
            idle: self.idle.map(|idle| idle.max(lifetime)),
            remember: Some(lifetime),
            ..self
        }
    }

    /// Whether the absolute deadline has passed.
    pub fn is_expired(&self, now: u64) -> bool {
        self.absolute.is_some_and(|deadline| now >= deadline)
    }

    /// Whether anything here needs storing (a session of an app that knows
    /// nothing of this has no stamp).
    pub fn is_set(&self) -> bool {
        self.absolute.is_some() || self.idle.is_some() || self.remember.is_some()
    }

    /// The store expiry for a session written or touched at `now`, whose
    /// default lifetime is `ttl`: the nearest of `ttl` (or the remembered
    /// lifetime), the idle timeout and the absolute deadline (at least
    /// 1 ms, so a store never reads it as "no expiry").
    pub fn ttl(&self, now: u64, ttl: Duration) -> Duration {
        let mut left = self.remember.unwrap_or_else(|| millis(ttl));
        if let Some(idle) = self.idle {
            left = left.min(idle);
        }
        if let Some(deadline) = self.absolute {
            left = left.min(deadline.saturating_sub(now));
        }
        Duration::from_millis(left.max(1))
    }

    /// Time left to the absolute deadline.
    pub fn absolute_in(&self, now: u64) -> Option<Duration> {
        self.absolute
            .map(|deadline| Duration::from_millis(deadline.saturating_sub(now)))
    }

    pub fn to_json(self) -> Value {
        let mut map = Map::new();
        map.insert("created".into(), Value::from(self.created));
        for (key, value) in [
            ("absolute", self.absolute),
            ("idle", self.idle),
            ("remember", self.remember),
        ] {
            if let Some(value) = value {
                map.insert(key.into(), Value::from(value));
            }
        }
        Value::Object(map)
    }

    /// Reads a stored stamp; anything malformed reads as no stamp (the
    /// session then lives by its store expiry alone, as an app's does).
    pub fn from_json(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        let field = |key: &str| map.get(key).and_then(Value::as_u64);
        Some(Self {
            created: field("created")?,
            absolute: field("absolute"),
            idle: field("idle"),
            remember: field("remember"),
        })
    }
}

// A stamp's binary encoding, for stores that keep it beside a session's
// JSON: a byte saying which of `absolute`, `idle` and `remember` follow
// (bits 0, 1, 2), `created`, then those present, each 8 bytes
// little-endian: 9 to 33 bytes.

/// Appends `stamp`'s encoding to `out`.
pub fn encode_stamp(stamp: &Stamp, out: &mut Vec<u8>) {
    let optional = [stamp.absolute, stamp.idle, stamp.remember];
    let present = optional.iter().enumerate().fold(0u8, |bits, (bit, value)| {
        bits | (u8::from(value.is_some()) << bit)
    });
    out.push(present);
    out.extend_from_slice(&stamp.created.to_le_bytes());
    for value in optional.into_iter().flatten() {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// The stamp encoded at the start of `bytes`, and the bytes it took.
pub fn decode_stamp(bytes: &[u8]) -> (Stamp, usize) {
    let present = bytes.first().copied().unwrap_or(0);
    let mut at = 1;
    let mut next = || {
        let mut word = [0u8; 8];
        if let Some(field) = bytes.get(at..at + 8) {
            word.copy_from_slice(field);
        }
        at += 8;
        u64::from_le_bytes(word)
    };
    let created = next();
    let mut field = |bit: u8| (present & (1 << bit) != 0).then(&mut next);
    let stamp = Stamp {
        created,
        absolute: field(0),
        idle: field(1),
        remember: field(2),
    };
    (stamp, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn lifetimes(idle: u64, absolute: u64) -> Lifetimes {
        Lifetimes {
            idle: Some(Duration::from_millis(idle)),
            absolute: Some(Duration::from_millis(absolute)),
        }
    }

    #[test]
    fn the_store_expiry_is_the_nearest_deadline() {
        let stamp = Stamp::new(0, lifetimes(30 * MIN, 120 * MIN));
        let day = Duration::from_secs(86_400);
        assert_eq!(stamp.ttl(0, day), Duration::from_millis(30 * MIN));
        assert_eq!(stamp.ttl(100 * MIN, day), Duration::from_millis(20 * MIN));
        assert_eq!(stamp.ttl(130 * MIN, day), Duration::from_millis(1));
        assert!(!stamp.is_expired(119 * MIN));
        assert!(stamp.is_expired(120 * MIN));
        let short = Duration::from_millis(MIN);
        assert_eq!(
            stamp.ttl(0, short),
            short,
            "the cookie's life bounds it too"
        );
        assert_eq!(Stamp::new(0, Lifetimes::default()).ttl(5, day), day);
    }

    #[test]
    fn remember_me_lengthens_both_timeouts() {
        let month = Duration::from_secs(30 * 86_400);
        let stamp = Stamp::new(0, lifetimes(30 * MIN, 120 * MIN)).remembered(10, month);
        assert_eq!(stamp.ttl(10, Duration::from_secs(86_400)), month);
        assert!(!stamp.is_expired(29 * 86_400_000));
        assert!(stamp.is_expired(10 + 30 * 86_400_000));
        let unbounded = Stamp::new(0, Lifetimes::default()).remembered(0, month);
        assert_eq!(unbounded.ttl(0, Duration::from_secs(60)), month);
        assert!(
            !unbounded.is_expired(u64::MAX - 1),
            "no absolute timeout set"
        );
    }

    #[test]
    fn stamps_round_trip_and_bad_ones_read_as_none() {
        let stamp = Stamp::new(5, lifetimes(1, 2));
        assert_eq!(Stamp::from_json(&stamp.to_json()), Some(stamp));
        assert_eq!(Stamp::from_json(&Value::from("x")), None);
        assert_eq!(Stamp::from_json(&serde_json::json!({"idle": 1})), None);
    }
}
