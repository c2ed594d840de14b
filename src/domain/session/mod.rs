//! The session model: ids, session data, and what the upstream may do to them.
//!
//! Everything here is pure: no I/O, no HTTP types. `ops` parses `Set-Session`
//! values and plans their effect; `patch` keeps a merge patch as the upstream
//! wrote it when it can be merged by copying bytes, and `text_patch` merges
//! it into a session's rendering; `ascii_json` renders data as header-safe
//! JSON; `identity` says which user a session belongs to.

pub mod ascii_json;
pub mod identity;
pub mod lifetime;
pub mod lookup;
pub mod ops;
pub mod patch;
pub mod scan;
#[cfg(test)]
pub(crate) mod test_json;
pub mod text_patch;

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

use self::scan::Scan;

/// Longest session id accepted from a cookie. Ours are 43 characters;
/// express-session's default ids are 32.
const MAX_ID_LEN: usize = 128;

/// Random bytes in an id the proxy makes.
pub const ID_BYTES: usize = 32;

/// The bytes an id may hold, by value: ASCII letters and digits, `-`, `_`
/// and `.`.
static ID_CHARACTERS: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < table.len() {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        byte += 1;
    }
    table
};

/// A session id: URL-safe base64 characters (and `.`, which custom
/// express-session id generators use) only, so it can never break a header,
/// a cookie or a Redis key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Box<str>);

impl SessionId {
    /// A fresh id: 256 bits from the thread-local CSPRNG (ChaCha, seeded
    /// and periodically reseeded from the operating system). Why not a
    /// system call per id: every session write needs a candidate id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        Self::from_bytes(&bytes)
    }

    /// The id whose bytes are `bytes`: what [`Self::generate`] makes of
    /// its random bytes.
    pub fn from_bytes(bytes: &[u8; ID_BYTES]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes).into_boxed_str())
    }

    /// The bytes of an id made by [`Self::generate`] (or
    /// [`Self::from_bytes`]); `None` for any other id, such as
    /// express-session's. One id has one text: base64 whose unused bits
    /// are not zero is refused, so two texts never give the same bytes.
    pub fn to_bytes(&self) -> Option<[u8; ID_BYTES]> {
        crate::util::base64_256::decode(
            self.0.as_bytes(),
            crate::util::base64_256::Alphabet::UrlSafe,
        )
    }

    /// Accepts an id in the shape the proxy (or express-session) issues.
    /// Callers must only pass ids whose signature has been verified.
    pub fn parse(text: &str) -> Option<Self> {
        // Every byte looked up, none branched on: an id's characters are
        // random, so testing each for a class (digit, letter, other)
        // mispredicted often; sampled natively, that took about 40% of
        // reading the session cookie.
        let ok = !text.is_empty()
            && text.len() <= MAX_ID_LEN
            && text
                .bytes()
                .fold(true, |ok, b| ok & ID_CHARACTERS[usize::from(b)]);
        ok.then(|| Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Redacted: a raw id is a bearer credential and must never reach a log.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// The data of one session: its header-safe JSON rendering, computed once
/// when the data is built so reading a session never re-serialises it, and
/// its map.
///
/// The map is optional until asked for: data read back from a store that
/// keeps the rendering alone ([`Self::from_ascii_json`], the memory store)
/// is parsed on the first call to [`Self::map`], so a request that only
/// passes `X-Session` on never builds it, and [`Self::is_logged_in`] and
/// [`Self::lookup`] read the one value they need from the text.
pub struct SessionData {
    json: Bytes,
    map: OnceLock<Map<String, Value>>,
}

impl SessionData {
    pub fn new(map: Map<String, Value>) -> Self {
        let json = Bytes::from(ascii_json::object_to_ascii(&map));
        Self {
            json,
            map: OnceLock::from(map),
        }
    }

    /// The data of `map`, kept as its rendering only: for data held long
    /// (the Redis store's cache), where the parsed map would cost several
    /// times its text. The map is parsed again if something asks for it.
    pub fn rendered(map: &Map<String, Value>) -> Self {
        Self::from_ascii_json(Bytes::from(ascii_json::object_to_ascii(map)))
    }

    /// The data whose rendering is `json`, which must be what
    /// [`Self::ascii_json`] gave for some data (the memory store keeps
    /// nothing else). The map is parsed when first asked for.
    pub fn from_ascii_json(json: Bytes) -> Self {
        Self {
            json,
            map: OnceLock::new(),
        }
    }

    /// The data whose rendering is `json` (as [`Self::from_ascii_json`]),
    /// over a copy of it: one block for a short session, as a store hands
    /// out what it keeps.
    pub fn copied(json: &[u8]) -> Self {
        let json = match SmallJson::new(json) {
            Some(small) => Bytes::from_owner(small),
            None => Bytes::copy_from_slice(json),
        };
        Self::from_ascii_json(json)
    }

    /// The rendering, when the map has not been parsed (the memory store's
    /// sessions): what a write can patch as text.
    pub fn text_only(&self) -> Option<&[u8]> {
        self.map.get().is_none().then_some(self.json.as_ref())
    }

    /// The same data, kept as its rendering alone (the rendering is
    /// shared, not copied): what a cache holds, and what a plan may build
    /// a map on without building it in data others share.
    pub fn text_copy(&self) -> Self {
        Self::from_ascii_json(self.json.clone())
    }

    pub fn empty() -> Arc<Self> {
        Arc::new(Self::new(Map::new()))
    }

    pub fn map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| {
            // A rendering of a map always parses back to it; the fallback
            // is for text that broke [`Self::from_ascii_json`]'s contract.
            serde_json::from_slice(&self.json).unwrap_or_default()
        })
    }

    /// The map, owned: a copy of the built one, or parsed from the
    /// rendering without keeping it (for a caller that changes it, such as
    /// a commit's plan: parsing into the cache and then copying would do
    /// the work twice).
    pub fn to_map(&self) -> Map<String, Value> {
        match self.map.get() {
            Some(map) => map.clone(),
            None => serde_json::from_slice(&self.json).unwrap_or_default(),
        }
    }

    /// Compact JSON of the whole session, printable ASCII only.
    pub fn ascii_json(&self) -> &Bytes {
        &self.json
    }

    pub fn is_empty(&self) -> bool {
        // The rendering of an empty map, and of nothing else.
        self.json.as_ref() == b"{}"
    }

    /// Logged in means the identity key is present and not null.
    pub fn is_logged_in(&self, identity_key: &str) -> bool {
        match self.map.get() {
            Some(map) => map.get(identity_key).is_some_and(|v| !v.is_null()),
            None => lookup::is_present_in_rendering(&self.json, identity_key),
        }
    }

    /// Whether `self` and `other` hold the same value at `tokens` (or both
    /// none). Told from the renderings when their texts there are the
    /// same, or both absent, without building either value: one value has
    /// one rendering, though two renderings (members in another order) may
    /// be one value, so any other answer of the scan is left to the values.
    pub fn same_at(&self, other: &SessionData, tokens: &[String]) -> bool {
        match (
            scan::value_at_rendered(&self.json, tokens),
            scan::value_at_rendered(&other.json, tokens),
        ) {
            (Scan::Found(mine), Scan::Found(theirs)) if mine == theirs => true,
            (Scan::Absent, Scan::Absent) => true,
            _ => self.lookup(tokens) == other.lookup(tokens),
        }
    }

    /// The value at a JSON pointer given as its unescaped tokens (RFC
    /// 6901; an array index is digits without a leading zero). Taken from
    /// the map when it is built, else read from the rendering without
    /// building it.
    pub fn lookup(&self, tokens: &[String]) -> Option<Cow<'_, Value>> {
        match self.map.get() {
            Some(map) => lookup::in_map(map, tokens).map(Cow::Borrowed),
            None => lookup::in_rendering(&self.json, tokens).map(Cow::Owned),
        }
    }
}

/// Bytes a [`SmallJson`] holds.
const SMALL: usize = 47;

/// A short session's JSON, handed out as `Bytes` in one block: a copy into
/// a `Vec` takes a second block as soon as the bytes are shared (into the
/// `X-Session` header, on every session request), to count the sharers.
struct SmallJson {
    length: u8,
    bytes: [u8; SMALL],
}

impl SmallJson {
    fn new(json: &[u8]) -> Option<Self> {
        let length = u8::try_from(json.len())
            .ok()
            .filter(|_| json.len() <= SMALL)?;
        let mut bytes = [0u8; SMALL];
        bytes[..json.len()].copy_from_slice(json);
        Some(Self { length, bytes })
    }
}

impl AsRef<[u8]> for SmallJson {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.length)]
    }
}

/// Redacted: session data must never reach a log.
impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionData(<{} bytes>)", self.json.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_43_url_safe_characters_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_eq!(a.as_str().len(), 43);
        assert!(SessionId::parse(a.as_str()).is_some());
        assert_ne!(a, b);
    }

    #[test]
    fn ids_with_foreign_characters_are_refused() {
        for bad in ["", "a:b", "a b", "a/b", "ä", "a\r\nb", &"a".repeat(129)] {
            assert!(SessionId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(SessionId::parse("tXGk0a3TLJ5B8Hqz-1yjG8ZKhaD6YUHj").is_some());
        // Every ASCII character, one by one, and in the middle of an id.
        for b in 0..=127u8 {
            let allowed = b.is_ascii_alphanumeric() || b"-_.".contains(&b);
            let alone = char::from(b).to_string();
            let inside = format!("ab{alone}cd");
            assert_eq!(SessionId::parse(&alone).is_some(), allowed, "{b:#04x}");
            assert_eq!(SessionId::parse(&inside).is_some(), allowed, "{b:#04x}");
        }
    }

    #[test]
    fn the_same_value_is_told_from_the_text_or_else_from_the_values() {
        let text =
            |json: &'static str| SessionData::from_ascii_json(Bytes::from_static(json.as_bytes()));
        let user = ["user".to_owned()];
        let before = text(r#"{"user":{"id":1,"name":"ada"},"n":1}"#);
        // Same text: the same, whatever else changed.
        assert!(before.same_at(&text(r#"{"n":2,"user":{"id":1,"name":"ada"}}"#), &user));
        // Another text of the same value (members in another order).
        assert!(before.same_at(&text(r#"{"user":{"name":"ada","id":1}}"#), &user));
        assert!(!before.same_at(&text(r#"{"user":{"id":2,"name":"ada"}}"#), &user));
        assert!(!before.same_at(&text(r#"{"n":1}"#), &user));
        assert!(text(r#"{"n":1}"#).same_at(&text("{}"), &user));
        // A key the scan leaves to serde.
        let escaped = text(r#"{"\u00e9":1,"user":{"id":1,"name":"ada"}}"#);
        assert!(escaped.same_at(&before, &user));
        assert!(!escaped.same_at(&text(r#"{"user":null}"#), &user));
    }

    #[test]
    fn rendered_data_keeps_the_text_and_parses_back_to_the_map() {
        let map = match serde_json::json!({"user": {"name": "ada"}, "n": 1, "é": "ü"}) {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let rendered = SessionData::rendered(&map);
        assert!(rendered.map.get().is_none(), "the map is not kept");
        assert_eq!(
            rendered.ascii_json(),
            SessionData::new(map.clone()).ascii_json()
        );
        assert!(rendered.is_logged_in("user"));
        assert_eq!(rendered.map(), &map);
    }

    #[test]
    fn debug_output_never_shows_the_id() {
        let id = SessionId::parse("secretid123").unwrap();
        assert!(!format!("{id:?}").contains("secretid123"));
    }
}
