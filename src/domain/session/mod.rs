//! The session model: ids, session data, and what the upstream may do to them.
//!
//! Everything here is pure: no I/O, no HTTP types. `ops` parses `Set-Session`
//! values and plans their effect; `ascii_json` renders data as header-safe JSON.

pub mod ascii_json;
pub mod lifetime;
pub mod ops;

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

/// Longest session id accepted from a cookie. Ours are 43 characters;
/// express-session's default ids are 32.
const MAX_ID_LEN: usize = 128;

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
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes).into_boxed_str())
    }

    /// Accepts an id in the shape the proxy (or express-session) issues.
    /// Callers must only pass ids whose signature has been verified.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= MAX_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
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

/// The data of one session, with its header-safe JSON rendering computed once
/// when the data is built, so reading a session never re-serialises it.
pub struct SessionData {
    map: Map<String, Value>,
    json: Bytes,
}

impl SessionData {
    pub fn new(map: Map<String, Value>) -> Self {
        let json = Bytes::from(ascii_json::object_to_ascii(&map));
        Self { map, json }
    }

    pub fn empty() -> Arc<Self> {
        Arc::new(Self::new(Map::new()))
    }

    pub fn map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// Compact JSON of the whole session, printable ASCII only.
    pub fn ascii_json(&self) -> &Bytes {
        &self.json
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Logged in means the identity key is present and not null.
    pub fn is_logged_in(&self, identity_key: &str) -> bool {
        self.map.get(identity_key).is_some_and(|v| !v.is_null())
    }
}

/// Redacted: session data must never reach a log.
impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionData(<{} keys>)", self.map.len())
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
    }

    #[test]
    fn debug_output_never_shows_the_id() {
        let id = SessionId::parse("secretid123").unwrap();
        assert!(!format!("{id:?}").contains("secretid123"));
    }
}
