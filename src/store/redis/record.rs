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
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::domain::session::lifetime::{Stamp, STAMP_KEY};
use crate::domain::session::ops::RESERVED_KEY;
use crate::domain::session::scan;
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

/// What a write needs of a stored record besides its bytes, once this
/// process has read or made it: what [`decode_data`] reads (the data, kept
/// as text, and the stamp), and where the cookie object sits when known.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub data: Arc<SessionData>,
    pub stamp: Option<Stamp>,
    /// The cookie object's place in the record, when this process wrote
    /// it ([`encode_data`] puts it first, and no other member is named
    /// `cookie`); else found by [`stored_cookie`].
    pub cookie_at: Option<Range<usize>>,
}

impl Decoded {
    /// [`decode_data`]'s reading of `bytes`, the data kept as text alone.
    pub fn read(bytes: &[u8]) -> Option<Self> {
        let (stamp, data) = decode_data(bytes)?;
        Some(Self {
            data: Arc::new(SessionData::rendered(&data)),
            stamp,
            cookie_at: None,
        })
    }

    /// The cookie object of `bytes`, the record this is the decoding of.
    pub fn cookie<'a>(&self, bytes: &'a [u8]) -> StoredCookie<'a> {
        match self.cookie_at.clone().and_then(|at| bytes.get(at)) {
            Some(text) => StoredCookie::Text(text),
            None => stored_cookie(bytes),
        }
    }
}

/// Where [`encode_data`] puts a cookie object of `length` bytes.
pub fn cookie_place(length: usize) -> Range<usize> {
    COOKIE_MEMBER.len()..COOKIE_MEMBER.len() + length
}

/// How every record Cloakroom writes starts.
const COOKIE_MEMBER: &[u8] = b"{\"cookie\":";

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

/// The stored value: `cookie` (the cookie object's JSON) first, as
/// express-session writes it, then the stamp (if set), then the data keys
/// in their order. `data` never holds `cookie` or the stamp's key (patches
/// touching them are refused and decoding removes them).
pub fn encode(cookie: &[u8], stamp: Option<Stamp>, data: &Map<String, Value>) -> Vec<u8> {
    // Serialising a map of JSON values cannot fail.
    let body = serde_json::to_vec(data).unwrap_or_else(|_| b"{}".to_vec());
    encode_rendered(cookie, stamp, &body)
}

/// [`encode`] for session data: its ASCII rendering is its compact JSON
/// as well when nothing in it was escaped to ASCII (no `\u` in it), and
/// is then copied rather than rendered again.
pub fn encode_data(cookie: &[u8], stamp: Option<Stamp>, data: &SessionData) -> Vec<u8> {
    let ascii = data.ascii_json();
    if ascii.windows(2).any(|pair| pair == b"\\u") {
        encode(cookie, stamp, data.map())
    } else {
        encode_rendered(cookie, stamp, ascii)
    }
}

/// [`encode`] with the data already rendered as compact JSON (`{...}`):
/// its members are copied after the cookie and the stamp.
fn encode_rendered(cookie: &[u8], stamp: Option<Stamp>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + data.len() + 64);
    out.extend_from_slice(COOKIE_MEMBER);
    out.extend_from_slice(cookie);
    if let Some(stamp) = stamp.filter(Stamp::is_set) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(STAMP_KEY.as_bytes());
        out.extend_from_slice(b"\":");
        // Serialising a JSON value cannot fail.
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

/// A stored record's cookie object, as a write finds it.
#[derive(Debug, PartialEq)]
pub enum StoredCookie<'a> {
    /// Its text, found by scanning the record.
    Text(&'a [u8]),
    /// Parsed, where the scan left the record to serde.
    Parsed(Map<String, Value>),
    /// The record has none (or `cookie` is not an object).
    Absent,
}

/// The cookie object of the stored value `bytes`, which decodes (the
/// caller has decoded it, or holds its decoding): its text when the scan
/// is sure of the record's members, else parsed, as [`decode`] reads it.
pub fn stored_cookie(bytes: &[u8]) -> StoredCookie<'_> {
    let Some(members) = scan::members(bytes) else {
        return decode(bytes)
            .and_then(|record| record.cookie)
            .map_or(StoredCookie::Absent, StoredCookie::Parsed);
    };
    // A key given twice: its last value counts, as in `decode`.
    match members
        .iter()
        .rev()
        .find(|(key, _)| *key == RESERVED_KEY.as_bytes())
    {
        Some((_, value)) if value.first() == Some(&b'{') => StoredCookie::Text(value),
        _ => StoredCookie::Absent,
    }
}

impl RecordCookie {
    /// When a cookie written at `now` for a session that lives `ttl`
    /// expires, to the millisecond (as `expires` says it); `None` for a
    /// browser-session cookie.
    pub fn expiry(&self, now: SystemTime, ttl: Duration) -> Option<SystemTime> {
        self.persistent.then(|| {
            let millis = (now + ttl).duration_since(UNIX_EPOCH).map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
            UNIX_EPOCH + Duration::from_millis(millis)
        })
    }

    /// The cookie object to write with a session that lives `ttl` from
    /// `now` (its [`Self::expiry`] is `expiry`). An existing object keeps
    /// its fields (an express app's settings survive Cloakroom's writes);
    /// `originalMaxAge` and `expires` are refreshed either way.
    pub fn for_write(
        &self,
        existing: Option<Map<String, Value>>,
        ttl: Duration,
        expiry: Option<SystemTime>,
    ) -> Map<String, Value> {
        let mut cookie = existing.unwrap_or_else(|| self.fresh());
        let (max_age, expires) = match expiry {
            Some(expiry) => {
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                (Value::from(millis), Value::from(js_date(expiry)))
            }
            None => (Value::Null, Value::Null),
        };
        cookie.insert("originalMaxAge".into(), max_age);
        cookie.insert("expires".into(), expires);
        cookie
    }

    /// [`Self::for_write`] on a stored record's cookie object, rendered.
    /// An object found as text is patched as text: its other members are
    /// copied, not parsed and rendered again.
    pub fn rendered_for_write(
        &self,
        stored: StoredCookie<'_>,
        ttl: Duration,
        expiry: Option<SystemTime>,
    ) -> Vec<u8> {
        let existing = match stored {
            StoredCookie::Text(text) => {
                let (max_age, expires) = expiry_texts(ttl, expiry);
                if let Some(patched) = self
                    .refresh_own(text, &max_age, &expires)
                    .or_else(|| refresh_expiry(text, &max_age, &expires))
                {
                    return patched;
                }
                serde_json::from_slice(text).ok()
            }
            StoredCookie::Parsed(map) => Some(map),
            StoredCookie::Absent => None,
        };
        // Serialising a map of JSON values cannot fail.
        serde_json::to_vec(&self.for_write(existing, ttl, expiry))
            .unwrap_or_else(|_| b"{}".to_vec())
    }

    /// [`refresh_expiry`] for an object exactly as these settings write
    /// it (the object of every record Cloakroom wrote, but for the two
    /// fields it refreshes): compared piece by piece rather than scanned,
    /// since every Redis write refreshes it. `None` for any other text,
    /// which `refresh_expiry` then reads.
    fn refresh_own(&self, text: &[u8], max_age: &[u8], expires: &[u8]) -> Option<Vec<u8>> {
        let rest = text.strip_prefix(b"{\"originalMaxAge\":")?;
        let rest = match rest.strip_prefix(b"null") {
            Some(rest) => rest,
            None => {
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                rest.get(digits..)?
            }
        };
        let rest = rest.strip_prefix(b",\"expires\":")?;
        let rest = match rest.strip_prefix(b"null") {
            Some(rest) => rest,
            None => {
                let rest = rest.strip_prefix(b"\"")?;
                let date = rest.get(..DATE_LEN)?;
                if !date
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-:.".contains(b))
                {
                    return None;
                }
                rest.get(DATE_LEN..)?.strip_prefix(b"\"")?
            }
        };
        if !self.is_own_tail(rest) {
            return None;
        }
        let mut out = Vec::with_capacity(text.len() + 8);
        out.extend_from_slice(b"{\"originalMaxAge\":");
        out.extend_from_slice(max_age);
        out.extend_from_slice(b",\"expires\":");
        out.extend_from_slice(expires);
        out.extend_from_slice(rest);
        Some(out)
    }

    /// Whether `rest` is what follows `expires` in [`Self::fresh`]'s
    /// object as serde_json renders it: then the object is one valid JSON
    /// object in which neither refreshed field appears again. Settings
    /// whose strings JSON would escape are left to the scan.
    fn is_own_tail(&self, mut rest: &[u8]) -> bool {
        fn eat(rest: &mut &[u8], piece: &[u8]) -> bool {
            let Some(after) = rest.strip_prefix(piece) else {
                return false;
            };
            *rest = after;
            true
        }
        fn eat_string(rest: &mut &[u8], text: &str) -> bool {
            let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
            plain && eat(rest, b"\"") && eat(rest, text.as_bytes()) && eat(rest, b"\"")
        }
        let boolean = |flag: bool| -> &[u8] {
            if flag {
                b"true"
            } else {
                b"false"
            }
        };
        self.secure
            .is_none_or(|secure| eat(&mut rest, b",\"secure\":") && eat(&mut rest, boolean(secure)))
            && eat(&mut rest, b",\"httpOnly\":")
            && eat(&mut rest, boolean(self.http_only))
            && self.domain.as_ref().is_none_or(|domain| {
                eat(&mut rest, b",\"domain\":") && eat_string(&mut rest, domain)
            })
            && eat(&mut rest, b",\"path\":")
            && eat_string(&mut rest, &self.path)
            && eat(&mut rest, b",\"sameSite\":")
            && eat_string(&mut rest, &self.same_site)
            && rest == b"}"
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

/// What [`RecordCookie::for_write`] does to the object rendered as `text`,
/// done on the text: `originalMaxAge` and `expires` replaced where they
/// are, or added last, in that order. `None` (the map decides) when the
/// scan is unsure or a key is given twice.
/// `max_age` and `expires` are the two fields' new values, as JSON text
/// ([`expiry_texts`]).
fn refresh_expiry(text: &[u8], max_age: &[u8], expires: &[u8]) -> Option<Vec<u8>> {
    const MAX_AGE: &[u8] = b"originalMaxAge";
    const EXPIRES: &[u8] = b"expires";
    let members = scan::members(text)?;
    let mut out = Vec::with_capacity(text.len() + 32);
    out.push(b'{');
    let (mut has_max_age, mut has_expires) = (false, false);
    for (index, &(key, value)) in members.iter().enumerate() {
        if members[..index].iter().any(|&(earlier, _)| earlier == key) {
            return None;
        }
        let value = match key {
            MAX_AGE => {
                has_max_age = true;
                max_age
            }
            EXPIRES => {
                has_expires = true;
                expires
            }
            _ => value,
        };
        push_member(&mut out, key, value);
    }
    if !has_max_age {
        push_member(&mut out, MAX_AGE, max_age);
    }
    if !has_expires {
        push_member(&mut out, EXPIRES, expires);
    }
    out.push(b'}');
    Some(out)
}

/// One of [`expiry_texts`]' values: on the stack, since every Redis write
/// makes two (`originalMaxAge` has at most 20 digits, `expires` is a
/// quoted date).
type ExpiryText = SmallVec<[u8; DATE_LEN + 2]>;

/// The new values of `originalMaxAge` and `expires`, as JSON text: the
/// session's lifetime in ms and its expiry as a JavaScript date, or two
/// `null`s for a browser-session cookie.
fn expiry_texts(ttl: Duration, expiry: Option<SystemTime>) -> (ExpiryText, ExpiryText) {
    match expiry {
        Some(expiry) => {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let mut expires = ExpiryText::new();
            expires.push(b'"');
            expires.extend_from_slice(&js_date_bytes(expiry));
            expires.push(b'"');
            (decimal(millis), expires)
        }
        None => (
            ExpiryText::from_slice(b"null"),
            ExpiryText::from_slice(b"null"),
        ),
    }
}

/// `n` in decimal ASCII digits.
fn decimal(mut n: u64) -> ExpiryText {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    ExpiryText::from_slice(&digits[start..])
}

/// `"key":value`, after a comma unless it is the object's first member.
fn push_member(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    if out.len() > 1 {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value);
}

/// The record's time to live in milliseconds, connect-redis's rule: until
/// the cookie's `expiry` when it has one (at least 1 ms), otherwise
/// `default`.
pub fn ttl_millis(expiry: Option<SystemTime>, now: SystemTime, default: Duration) -> u64 {
    let ttl = expiry.map_or(default, |expiry| {
        expiry.duration_since(now).unwrap_or(Duration::ZERO)
    });
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The length of [`js_date`]'s text.
const DATE_LEN: usize = 24;

/// JavaScript's `Date#toJSON`: `2026-11-22T06:40:57.123Z`.
pub fn js_date(time: SystemTime) -> String {
    String::from_utf8_lossy(&js_date_bytes(time)).into_owned()
}

/// [`js_date`]'s text, written digit by digit: it is part of every Redis
/// write.
fn js_date_bytes(time: SystemTime) -> [u8; DATE_LEN] {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    // Within the years 0 to 9999 for any time a session can expire.
    let (year, month, day) = civil_from_days(days)
        .filter(|&(year, _, _)| (0..=9999).contains(&year))
        .unwrap_or((1970, 1, 1));
    let mut text = *b"0000-00-00T00:00:00.000Z";
    for (at, width, mut value) in [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, in_day / 3_600_000),
        (14, 2, in_day / 60_000 % 60),
        (17, 2, in_day / 1000 % 60),
        (20, 3, in_day % 1000),
    ] {
        for place in (at..at + width).rev() {
            text[place] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    text
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

    #[test]
    fn a_lifetime_in_ms_is_written_as_its_decimal_digits() {
        for n in [0, 7, 10, 86_400_000, 1_209_600_000, u64::MAX] {
            assert_eq!(&decimal(n)[..], n.to_string().as_bytes(), "{n}");
        }
        let (max_age, expires) = expiry_texts(Duration::from_millis(86_400_000), Some(at(0)));
        assert_eq!(&max_age[..], b"86400000");
        assert_eq!(&expires[..], b"\"1970-01-01T00:00:00.000Z\"");
        let (max_age, expires) = expiry_texts(Duration::from_millis(5), None);
        assert_eq!((&max_age[..], &expires[..]), (&b"null"[..], &b"null"[..]));
    }

    /// What a write makes of `existing` at `now` for `ttl`.
    fn written(
        template: &RecordCookie,
        existing: Option<Map<String, Value>>,
        now: SystemTime,
        ttl: Duration,
    ) -> Map<String, Value> {
        template.for_write(existing, ttl, template.expiry(now, ttl))
    }

    /// The cookie object of a session written at a fixed time for a minute.
    fn minute_cookie() -> Map<String, Value> {
        written(
            &template(true),
            None,
            at(1_700_000_000_123),
            Duration::from_secs(60),
        )
    }

    fn json_of(cookie: &Map<String, Value>) -> Vec<u8> {
        serde_json::to_vec(cookie).unwrap()
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
        assert_eq!(
            encode(&json_of(&cookie), record.stamp, &record.data),
            stored.to_vec()
        );
    }

    #[test]
    fn session_data_is_written_as_its_map_would_be() {
        use crate::domain::session::test_json::random_object;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let cookie = minute_cookie();
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
                encode_data(&json_of(&cookie), stamp, &data),
                encode(&json_of(&cookie), stamp, &map),
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
        let cookie = minute_cookie();
        for n in 0..1000_u64 {
            let stamp = (n % 3 > 0).then_some(Stamp {
                created: n,
                absolute: None,
                idle: Some(60),
                remember: None,
            });
            let bytes = encode(&json_of(&cookie), stamp, &random_object(&mut rng, 2));
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
        let cookie = minute_cookie();
        let bytes = encode(&json_of(&cookie), None, &Map::new());
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"cookie":{"originalMaxAge":60000,"expires":"2023-11-14T22:14:20.123Z","httpOnly":true,"path":"/","sameSite":"lax"}}"#
        );
        let session_cookie = written(&template(false), None, at(0), Duration::from_secs(60));
        assert_eq!(session_cookie["expires"], Value::Null);
        assert_eq!(session_cookie["originalMaxAge"], Value::Null);
    }

    #[test]
    fn a_write_keeps_the_existing_cookie_fields_and_refreshes_the_expiry() {
        let existing = json!({"originalMaxAge": 1, "expires": "1999-01-01T00:00:00.000Z", "secure": true, "path": "/app", "sameSite": "strict"});
        let Value::Object(existing) = existing else {
            unreachable!()
        };
        let cookie = written(
            &template(true),
            Some(existing),
            at(0),
            Duration::from_secs(2),
        );
        assert_eq!(
            Value::Object(cookie),
            json!({"originalMaxAge": 2000, "expires": "1970-01-01T00:00:02.000Z", "secure": true, "path": "/app", "sameSite": "strict"})
        );
    }

    /// What the map path makes of a stored cookie object, rendered.
    fn by_map(
        template: &RecordCookie,
        existing: Option<Map<String, Value>>,
        ttl: Duration,
        expiry: Option<SystemTime>,
    ) -> Vec<u8> {
        json_of(&template.for_write(existing, ttl, expiry))
    }

    #[test]
    fn a_cookie_object_refreshed_as_text_is_the_one_the_map_gives() {
        use crate::domain::session::test_json::{random_object, random_value};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut as_text = 0;
        for n in 0..2000_u64 {
            // An express-session cookie object, or any object, with or
            // without the two fields, wherever they sit.
            let mut existing = if n % 2 == 0 {
                template(true).fresh()
            } else {
                random_object(&mut rng, 2)
            };
            for field in ["originalMaxAge", "expires"] {
                if rng.random_bool(0.3) {
                    existing.shift_remove(field);
                } else if rng.random_bool(0.3) {
                    existing.insert(field.into(), random_value(&mut rng, 1));
                }
            }
            let text = json_of(&existing);
            let settings = template(n % 3 > 0);
            let now = at(1_700_000_000_000 + n * 7_777);
            let ttl = Duration::from_millis(rng.random_range(1..10_000_000_000));
            let expiry = settings.expiry(now, ttl);
            let refreshed = settings.rendered_for_write(StoredCookie::Text(&text), ttl, expiry);
            assert_eq!(
                refreshed,
                by_map(&settings, Some(existing.clone()), ttl, expiry),
                "{}",
                String::from_utf8_lossy(&text)
            );
            let (max_age, expires) = expiry_texts(ttl, expiry);
            as_text += usize::from(refresh_expiry(&text, &max_age, &expires).is_some());
        }
        // The scan leaves escaped keys to the map; most objects have none.
        assert!(as_text > 1500, "{as_text} of 2000 refreshed as text");
        // Spaces and a key given twice: the same JSON as the map's.
        let settings = template(true);
        let ttl = Duration::from_secs(60);
        let expiry = settings.expiry(at(0), ttl);
        for odd in [
            &br#" { "path" : "/" , "expires" : null } "#[..],
            br#"{"path":"/","path":"/app","originalMaxAge":1}"#,
            br#"{"p\u0061th":"/"}"#,
        ] {
            let refreshed = settings.rendered_for_write(StoredCookie::Text(odd), ttl, expiry);
            let existing: Map<String, Value> = serde_json::from_slice(odd).unwrap();
            let by_map: Value =
                serde_json::from_slice(&by_map(&settings, Some(existing), ttl, expiry)).unwrap();
            assert_eq!(serde_json::from_slice::<Value>(&refreshed).unwrap(), by_map);
        }
    }

    #[test]
    fn an_object_as_cloakroom_writes_it_is_refreshed_without_a_scan_to_the_same_text() {
        let mut own = 0;
        for (n, (secure, domain, path)) in [
            (None, None, "/"),
            (Some(true), Some("example.test"), "/app"),
            (Some(false), Some("we\"ird"), "/"),
            (None, None, "/a\\b"),
        ]
        .into_iter()
        .enumerate()
        {
            for persistent in [true, false] {
                let settings = RecordCookie {
                    path: path.into(),
                    http_only: n % 2 == 0,
                    secure,
                    same_site: ["lax", "strict"][n % 2].into(),
                    domain: domain.map(str::to_owned),
                    persistent,
                };
                let ttl = Duration::from_millis(86_400_000 + n as u64);
                let expiry = settings.expiry(at(1_700_000_000_123), ttl);
                let written = settings.rendered_for_write(StoredCookie::Absent, ttl, expiry);
                let (max_age, expires) =
                    expiry_texts(Duration::from_secs(5), settings.expiry(at(9), ttl));
                let scanned = refresh_expiry(&written, &max_age, &expires).unwrap();
                // Settings JSON would escape are left to the scan.
                let plain = !path.contains('\\') && !domain.is_some_and(|d| d.contains('"'));
                let fast = settings.refresh_own(&written, &max_age, &expires);
                assert_eq!(
                    fast.is_some(),
                    plain,
                    "{}",
                    String::from_utf8_lossy(&written)
                );
                own += usize::from(fast.is_some());
                assert!(fast.is_none_or(|fast| fast == scanned));
                // Any byte left out, doubled or changed: the same text as
                // the scan's, or left to it.
                for at in 0..written.len() {
                    let mut variants = vec![written.clone(), written.clone(), written.clone()];
                    variants[0].remove(at);
                    variants[1].insert(at, written[at]);
                    variants[2][at] = if written[at] == b'1' { b'x' } else { b'1' };
                    for text in variants {
                        if let Some(fast) = settings.refresh_own(&text, &max_age, &expires) {
                            assert_eq!(
                                Some(fast),
                                refresh_expiry(&text, &max_age, &expires),
                                "{}",
                                String::from_utf8_lossy(&text)
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(own, 4);
        // express-session's own key order is left to the scan.
        let theirs = br#"{"originalMaxAge":1,"expires":null,"httpOnly":true,"path":"/","sameSite":"lax","secure":false}"#;
        assert_eq!(template(true).refresh_own(theirs, b"2", b"null"), None);
    }

    #[test]
    fn a_write_finds_the_cookie_object_decode_finds() {
        use crate::domain::session::test_json::{random_object, random_value};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let mut records: Vec<Vec<u8>> = (0..1000)
            .map(|n| {
                let cookie = if n % 4 == 0 {
                    json_of(&random_object(&mut rng, 2))
                } else {
                    json_of(&written(
                        &template(true),
                        None,
                        at(n),
                        Duration::from_secs(60),
                    ))
                };
                let stamp = rng.random_bool(0.5).then_some(Stamp {
                    created: n,
                    absolute: Some(n + 1),
                    idle: None,
                    remember: None,
                });
                let mut bytes = encode(&cookie, stamp, &random_object(&mut rng, 2));
                if n % 5 == 0 {
                    // The cookie last: an app that writes its own records.
                    let mut record: Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
                    let cookie = record.shift_remove("cookie").unwrap();
                    record.insert("cookie".into(), cookie);
                    bytes = serde_json::to_vec(&record).unwrap();
                }
                if n % 7 == 0 {
                    let mut record: Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
                    record.insert("cookie".into(), random_value(&mut rng, 0));
                    bytes = serde_json::to_vec(&record).unwrap();
                }
                bytes
            })
            .collect();
        records.extend(
            [
                &br#"{"cookie":{"path":"/"},"a":1,"cookie":{"path":"/app"}}"#[..],
                br#"{"a":1,"cookie":"odd"}"#,
                br#"{"a":1}"#,
                br#" {"cookie" : {"path":"/"} , "\u0061":1 } "#,
                br#"{"\u0063ookie":{"path":"/x"}}"#,
            ]
            .map(<[u8]>::to_vec),
        );
        let mut found_as_text = 0;
        for bytes in &records {
            let by_decode = decode(bytes).unwrap().cookie;
            let found = match stored_cookie(bytes) {
                StoredCookie::Text(text) => {
                    found_as_text += 1;
                    Some(serde_json::from_slice(text).unwrap())
                }
                StoredCookie::Parsed(map) => Some(map),
                StoredCookie::Absent => None,
            };
            assert_eq!(found, by_decode, "{}", String::from_utf8_lossy(bytes));
        }
        assert!(found_as_text > 700, "{found_as_text} found as text");
    }

    #[test]
    fn the_cookie_object_of_a_record_written_here_is_where_encode_put_it() {
        use crate::domain::session::test_json::random_object;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        for n in 0..500 {
            let cookie = json_of(&written(
                &template(n % 2 == 0),
                None,
                at(n),
                Duration::from_secs(9),
            ));
            let data = SessionData::new(random_object(&mut rng, 2));
            let stamp = (n % 3 == 0).then_some(Stamp {
                created: n,
                absolute: None,
                idle: Some(5),
                remember: None,
            });
            let bytes = encode_data(&cookie, stamp, &data);
            let mut decoded = Decoded::read(&bytes).unwrap();
            assert_eq!(decoded.cookie(&bytes), stored_cookie(&bytes));
            decoded.cookie_at = Some(cookie_place(cookie.len()));
            assert_eq!(decoded.cookie(&bytes), StoredCookie::Text(&cookie));
            let whole: Map<String, Value> = serde_json::from_slice(&cookie).unwrap();
            assert_eq!(decode(&bytes).unwrap().cookie, Some(whole));
        }
    }

    #[test]
    fn ttl_follows_connect_redis() {
        let now = at(1_700_000_000_000);
        let day = Duration::from_secs(86_400);
        let ttl = |template: RecordCookie, written_at: SystemTime, lives: Duration| {
            ttl_millis(template.expiry(written_at, lives), now, day)
        };
        assert_eq!(ttl(template(true), now, Duration::from_secs(90)), 90_000);
        assert_eq!(ttl(template(false), now, day), 86_400_000);
        assert_eq!(
            ttl(template(true), at(0), Duration::from_secs(1)),
            1,
            "at least 1 ms"
        );
        // The expiry is the one `expires` says: to the millisecond.
        let odd = now + Duration::from_micros(1_500);
        assert_eq!(ttl(template(true), odd, Duration::from_secs(90)), 90_001);
    }
}
