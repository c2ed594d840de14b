//! The record format, connect-redis's, so that a session written by
//! express-session + connect-redis loads here and the reverse.
//!
//! - Key: `<prefix><id>` (connect-redis's default prefix is `sess:`).
//! - Value: the JSON of express-session's session object: a `cookie` object
//!   (what express-session's `Cookie#toJSON` gives: `originalMaxAge`,
//!   `expires`, `secure`, `httpOnly`, `domain`, `path`, `sameSite`, each left
//!   out when unset) next to the data keys. `cookie` is reserved: upstream
//!   patches may not touch it, and the data Cloakroom serves never holds it.
//! - `__cloakroom`: the session's lifetime stamp (creation, absolute
//!   deadline, idle timeout, "remember me"), when it has one. express-session
//!   keeps unknown keys, so it survives an Express app's writes; it is not
//!   session data and never reaches the upstream.
//! - TTL: connect-redis's `getTTL`: until `cookie.expires` when it is set,
//!   otherwise the store's ttl (connect-redis's default is one day). Written
//!   with millisecond precision (`PX`) where connect-redis rounds up to
//!   seconds (`EX`).
//!
//! Everything here is pure: no I/O.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::domain::session::lifetime::{Stamp, STAMP_KEY};
use crate::domain::session::ops::RESERVED_KEY;
use crate::domain::session::SessionData;

use crate::util::date::{civil_from_days, days_from_civil};

/// The cookie settings written into new records, from `[cookie]`: plain
/// values, not HTTP types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCookie {
    pub path: String,
    pub http_only: bool,
    /// `None` when the flag is decided per request (`secure = "auto"`): the
    /// store does not see requests, so the field is left out, as
    /// express-session leaves out an unset option.
    pub secure: Option<bool>,
    /// `"lax"`, `"strict"` or `"none"`, as express-session stores the option.
    pub same_site: String,
    pub domain: Option<String>,
    /// The cookie has a max age: `originalMaxAge` and `expires` are set.
    /// Otherwise both are `null` (a browser-session cookie).
    pub persistent: bool,
}

/// A stored session, split into express-session's cookie object and the data.
#[derive(Debug)]
pub struct Record {
    pub cookie: Option<Map<String, Value>>,
    pub stamp: Option<Stamp>,
    pub data: Map<String, Value>,
}

/// Reads a stored value. `None` when it is not a JSON object: such a record
/// is not a session.
pub fn decode(bytes: &[u8]) -> Option<Record> {
    let mut data: Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    let cookie = match data.shift_remove(RESERVED_KEY) {
        Some(Value::Object(cookie)) => Some(cookie),
        _ => None,
    };
    let stamp = data
        .shift_remove(STAMP_KEY)
        .and_then(|stamp| Stamp::from_json(&stamp));
    Some(Record {
        cookie,
        stamp,
        data,
    })
}

/// [`decode`] for a load, which needs no cookie object: the stamp and the
/// data, with the cookie object skipped rather than built.
pub fn decode_data(bytes: &[u8]) -> Option<(Option<Stamp>, Map<String, Value>)> {
    let DataOnly { stamp, data } = serde_json::from_slice(bytes).ok()?;
    Some((stamp, data))
}

struct DataOnly {
    stamp: Option<Stamp>,
    data: Map<String, Value>,
}

impl<'de> Deserialize<'de> for DataOnly {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DataOnlyVisitor)
    }
}

struct DataOnlyVisitor;

impl<'de> Visitor<'de> for DataOnlyVisitor {
    type Value = DataOnly;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DataOnly, A::Error> {
        let mut decoded = DataOnly {
            stamp: None,
            data: Map::new(),
        };
        // As `decode` reads the record: a key given twice keeps its first
        // place and its last value.
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                RESERVED_KEY => {
                    map.next_value::<IgnoredAny>()?;
                }
                STAMP_KEY => decoded.stamp = Stamp::from_json(&map.next_value::<Value>()?),
                _ => {
                    let value = map.next_value::<Value>()?;
                    decoded.data.insert(key, value);
                }
            }
        }
        Ok(decoded)
    }
}

/// The stored value: `cookie` first, as express-session writes it, then the
/// stamp (if set), then the data keys in their order. `data` never holds
/// `cookie` or the stamp's key (patches touching them are refused and
/// decoding removes them).
pub fn encode(
    cookie: &Map<String, Value>,
    stamp: Option<Stamp>,
    data: &Map<String, Value>,
) -> Vec<u8> {
    // Serialising a map of JSON values cannot fail.
    let body = serde_json::to_vec(data).unwrap_or_else(|_| b"{}".to_vec());
    encode_rendered(cookie, stamp, &body)
}

/// [`encode`] for session data: its ASCII rendering is its compact JSON
/// as well when nothing in it was escaped to ASCII (no `\u` in it), and
/// is then copied rather than rendered again.
pub fn encode_data(
    cookie: &Map<String, Value>,
    stamp: Option<Stamp>,
    data: &SessionData,
) -> Vec<u8> {
    let ascii = data.ascii_json();
    if ascii.windows(2).any(|pair| pair == b"\\u") {
        encode(cookie, stamp, data.map())
    } else {
        encode_rendered(cookie, stamp, ascii)
    }
}

/// [`encode`] with the data already rendered as compact JSON (`{...}`):
/// its members are copied after the cookie and the stamp.
fn encode_rendered(cookie: &Map<String, Value>, stamp: Option<Stamp>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"cookie\":");
    // Serialising maps of JSON values cannot fail.
    let _ = serde_json::to_writer(&mut out, cookie);
    if let Some(stamp) = stamp.filter(Stamp::is_set) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(STAMP_KEY.as_bytes());
        out.extend_from_slice(b"\":");
        let _ = serde_json::to_writer(&mut out, &stamp.to_json());
    }
    match data.get(1..) {
        // `data` is `{...}`: splice its members after the cookie.
        Some(members) if members != b"}" => {
            out.push(b',');
            out.extend_from_slice(members);
        }
        _ => out.push(b'}'),
    }
    out
}

impl RecordCookie {
    /// The cookie object to write with a session that lives `ttl` from
    /// `now`. An existing object keeps its fields (an express app's settings
    /// survive Cloakroom's writes); `originalMaxAge` and `expires` are
    /// refreshed either way.
    pub fn for_write(
        &self,
        existing: Option<Map<String, Value>>,
        now: SystemTime,
        ttl: Duration,
    ) -> Map<String, Value> {
        let mut cookie = existing.unwrap_or_else(|| self.fresh());
        let (max_age, expires) = if self.persistent {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            (Value::from(millis), Value::from(js_date(now + ttl)))
        } else {
            (Value::Null, Value::Null)
        };
        cookie.insert("originalMaxAge".into(), max_age);
        cookie.insert("expires".into(), expires);
        cookie
    }

    /// A new cookie object, in the key order of express-session's `toJSON`.
    fn fresh(&self) -> Map<String, Value> {
        let mut cookie = Map::new();
        cookie.insert("originalMaxAge".into(), Value::Null);
        cookie.insert("expires".into(), Value::Null);
        if let Some(secure) = self.secure {
            cookie.insert("secure".into(), Value::Bool(secure));
        }
        cookie.insert("httpOnly".into(), Value::Bool(self.http_only));
        if let Some(domain) = &self.domain {
            cookie.insert("domain".into(), Value::from(domain.as_str()));
        }
        cookie.insert("path".into(), Value::from(self.path.as_str()));
        cookie.insert("sameSite".into(), Value::from(self.same_site.as_str()));
        cookie
    }
}

/// The record's time to live in milliseconds, connect-redis's rule: until
/// `cookie.expires` when the record has one (at least 1 ms), otherwise
/// `default`.
pub fn ttl_millis(cookie: &Map<String, Value>, now: SystemTime, default: Duration) -> u64 {
    let until_expiry = cookie
        .get("expires")
        .and_then(Value::as_str)
        .and_then(parse_js_date)
        .map(|expires| expires.duration_since(now).unwrap_or(Duration::ZERO));
    let ttl = until_expiry.unwrap_or(default);
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// JavaScript's `Date#toJSON`: `2026-11-22T06:40:57.123Z`.
pub fn js_date(time: SystemTime) -> String {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    // Within the years 0 to 9999 for any time a session can expire.
    let (year, month, day) = civil_from_days(days).unwrap_or((1970, 1, 1));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Reads what [`js_date`] writes (the milliseconds may be left out).
pub fn parse_js_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let shape_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b.last() == Some(&b'Z');
    if !shape_ok {
        return None;
    }
    let millis = match &b[19..] {
        b"Z" => 0,
        [b'.', .., b'Z'] if b.len() == 24 => num(20..23)?,
        _ => return None,
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let total = ((days * 24 + hour) * 60 + minute) * 60 + second;
    let total_millis = total.checked_mul(1000)?.checked_add(millis)?;
    let since_epoch = Duration::from_millis(u64::try_from(total_millis).ok()?);
    UNIX_EPOCH.checked_add(since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    fn template(persistent: bool) -> RecordCookie {
        RecordCookie {
            path: "/".into(),
            http_only: true,
            secure: None,
            same_site: "lax".into(),
            domain: None,
            persistent,
        }
    }

    #[test]
    fn dates_are_written_and_read_like_javascripts_to_json() {
        assert_eq!(js_date(at(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(js_date(at(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(js_date(at(951_782_400_000)), "2000-02-29T00:00:00.000Z");
        for millis in [0, 1_700_000_000_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_js_date(&js_date(at(millis))), Some(at(millis)));
        }
        assert_eq!(
            parse_js_date("2023-11-14T22:13:20Z"),
            Some(at(1_700_000_000_000))
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-13-14T22:13:20.123Z",
            "2023-11-14T22:13:20.1Z",
        ] {
            assert_eq!(parse_js_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_connect_redis_record_splits_into_cookie_and_data() {
        let stored = br#"{"cookie":{"originalMaxAge":3600000,"expires":"2026-11-22T07:40:57.123Z","secure":true,"httpOnly":true,"path":"/","sameSite":"strict"},"user":{"name":"ada"},"views":3}"#;
        let record = decode(stored).unwrap();
        assert_eq!(
            Value::Object(record.data.clone()),
            json!({"user": {"name": "ada"}, "views": 3})
        );
        let cookie = record.cookie.unwrap();
        assert_eq!(cookie["sameSite"], json!("strict"));
        assert_eq!(encode(&cookie, record.stamp, &record.data), stored.to_vec());
    }

    #[test]
    fn session_data_is_written_as_its_map_would_be() {
        use crate::domain::session::test_json::random_object;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let cookie = template(true).for_write(None, at(1_700_000_000_123), Duration::from_secs(60));
        let stamp = Some(Stamp {
            created: 1,
            absolute: Some(2),
            idle: None,
            remember: None,
        });
        let mut copied = 0;
        for _ in 0..2000 {
            let map = random_object(&mut rng, 2);
            let data =
                SessionData::from_ascii_json(SessionData::new(map.clone()).ascii_json().clone());
            assert_eq!(
                encode_data(&cookie, stamp, &data),
                encode(&cookie, stamp, &map),
                "{map:?}"
            );
            copied += usize::from(!data.ascii_json().windows(2).any(|pair| pair == b"\\u"));
        }
        // Both ways were taken: non-ASCII text is rendered again.
        assert!((500..1900).contains(&copied), "{copied} of 2000 copied");
    }

    #[test]
    fn a_load_reads_the_stamp_and_the_data_as_the_whole_record_gives_them() {
        use crate::domain::session::test_json::random_object;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let cookie = template(true).for_write(None, at(1_700_000_000_123), Duration::from_secs(60));
        for n in 0..1000_u64 {
            let stamp = (n % 3 > 0).then_some(Stamp {
                created: n,
                absolute: None,
                idle: Some(60),
                remember: None,
            });
            let bytes = encode(&cookie, stamp, &random_object(&mut rng, 2));
            let whole = decode(&bytes).unwrap();
            let (read_stamp, data) = decode_data(&bytes).unwrap();
            assert_eq!((read_stamp, &data), (whole.stamp, &whole.data));
            // Key order too: the data is rendered from it.
            assert!(data.keys().eq(whole.data.keys()));
        }
        // Written by hand: a key twice, the cookie not an object, the stamp first.
        let odd = br#"{"__cloakroom":{"created":5},"a":1,"cookie":"x","b":2,"a":3}"#;
        let whole = decode(odd).unwrap();
        assert_eq!(decode_data(odd), Some((whole.stamp, whole.data)));
        for bad in [&b"not json"[..], b"[1]", b"\"s\"", b"{\"a\":"] {
            assert!(decode_data(bad).is_none());
        }
    }

    #[test]
    fn values_that_are_not_json_objects_are_not_sessions() {
        for bad in [&b"not json"[..], b"[1]", b"\"s\"", b"{\"a\":"] {
            assert!(decode(bad).is_none());
        }
        let record = decode(br#"{"cookie":"odd","a":1}"#).unwrap();
        assert!(record.cookie.is_none());
        assert_eq!(Value::Object(record.data), json!({"a": 1}));
    }

    #[test]
    fn a_new_record_carries_express_sessions_cookie_object() {
        let cookie = template(true).for_write(None, at(1_700_000_000_123), Duration::from_secs(60));
        let bytes = encode(&cookie, None, &Map::new());
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"cookie":{"originalMaxAge":60000,"expires":"2023-11-14T22:14:20.123Z","httpOnly":true,"path":"/","sameSite":"lax"}}"#
        );
        let session_cookie = template(false).for_write(None, at(0), Duration::from_secs(60));
        assert_eq!(session_cookie["expires"], Value::Null);
        assert_eq!(session_cookie["originalMaxAge"], Value::Null);
    }

    #[test]
    fn a_write_keeps_the_existing_cookie_fields_and_refreshes_the_expiry() {
        let existing = json!({"originalMaxAge": 1, "expires": "1999-01-01T00:00:00.000Z", "secure": true, "path": "/app", "sameSite": "strict"});
        let Value::Object(existing) = existing else {
            unreachable!()
        };
        let cookie = template(true).for_write(Some(existing), at(0), Duration::from_secs(2));
        assert_eq!(
            Value::Object(cookie),
            json!({"originalMaxAge": 2000, "expires": "1970-01-01T00:00:02.000Z", "secure": true, "path": "/app", "sameSite": "strict"})
        );
    }

    #[test]
    fn ttl_follows_connect_redis() {
        let now = at(1_700_000_000_000);
        let day = Duration::from_secs(86_400);
        let cookie = template(true).for_write(None, now, Duration::from_secs(90));
        assert_eq!(ttl_millis(&cookie, now, day), 90_000);
        let browser_session = template(false).for_write(None, now, day);
        assert_eq!(ttl_millis(&browser_session, now, day), 86_400_000);
        let past = template(true).for_write(None, at(0), Duration::from_secs(1));
        assert_eq!(ttl_millis(&past, now, day), 1, "at least 1 ms");
    }
}
