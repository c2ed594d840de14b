//! What the upstream learns about the session: `X-Session-Id`, `X-Session`
//! (the data as ASCII JSON) and the configured per-field headers.
//!
//! Per-field values: a string of visible ASCII (inner spaces allowed) that
//! does not start with `json:` is sent as it is; every other value is sent as
//! `json:` followed by its ASCII JSON. Decoding: if the header starts with
//! `json:`, JSON-parse the rest; otherwise it is the string itself. No value
//! can put a CR, LF, control or non-ASCII byte into a header.
//!
//! Budget: `X-Session` (and each field header) larger than the configured
//! byte budget is not sent; `X-Session-Omitted: too-large` says so instead.
//! A truncated or invalid header is never sent.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::domain::headers::{X_SESSION, X_SESSION_ID, X_SESSION_OMITTED};
use crate::domain::session::ascii_json;
use crate::domain::session::scan::{self, Scan};
use crate::domain::session::{SessionData, SessionId};
use crate::util::additions::AppendHeader;

/// Marks an encoded (non-plain) per-field value.
pub const ENCODED_PREFIX: &str = "json:";

const TOO_LARGE: HeaderValue = HeaderValue::from_static("too-large");

/// Builds the session headers for the upstream, from configuration fixed at
/// start-up.
#[derive(Debug, Clone)]
pub struct SessionHeaders {
    budget: usize,
    keys: Vec<String>,
    fields: Vec<(HeaderName, Pointer)>,
}

/// A JSON pointer (RFC 6901) split into its unescaped tokens once, at
/// start-up, so a request resolves it without allocating.
#[derive(Debug, Clone)]
struct Pointer(Vec<String>);

impl Pointer {
    /// `None` for the empty pointer (the whole document, never a field) and
    /// for pointers that do not start with `/`.
    fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix('/')?;
        let tokens = rest
            .split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect();
        Some(Self(tokens))
    }

    /// The value the pointer designates inside the session data (read
    /// from its JSON text when its map is not built).
    fn value_in<'d>(&self, data: &'d SessionData) -> Option<Cow<'d, Value>> {
        data.lookup(&self.0)
    }

    /// The value the pointer designates inside a map.
    #[cfg(test)]
    fn resolve<'a>(&self, map: &'a Map<String, Value>) -> Option<&'a Value> {
        crate::domain::session::lookup::in_map(map, &self.0)
    }
}

/// Which headers had to be left out for the budget, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Omissions {
    pub session: bool,
    pub fields: Vec<HeaderName>,
}

impl Omissions {
    pub fn any(&self) -> bool {
        self.session || !self.fields.is_empty()
    }
}

impl SessionHeaders {
    /// `budget`: `session.headers.max_bytes`; `keys`: the session keys
    /// `X-Session` carries (all when empty); `fields`: the per-field
    /// headers, each a name and a JSON pointer.
    pub fn new(budget: usize, keys: Vec<String>, fields: &[(HeaderName, String)]) -> Self {
        Self {
            budget,
            keys,
            fields: fields
                .iter()
                .filter_map(|(name, pointer)| Some((name.clone(), Pointer::parse(pointer)?)))
                .collect(),
        }
    }

    /// The most headers [`Self::inject`] adds.
    pub fn count(&self) -> usize {
        2 + self.fields.len()
    }

    /// Names of the per-field headers, for scrubbing.
    pub fn field_names(&self) -> impl Iterator<Item = HeaderName> + '_ {
        self.fields.iter().map(|(name, _)| name.clone())
    }

    /// Appends the session headers to `headers`, which holds none of
    /// them (a request was scrubbed before).
    pub fn inject(
        &self,
        headers: &mut impl AppendHeader,
        id: &SessionId,
        data: &SessionData,
    ) -> Omissions {
        let mut omissions = Omissions::default();
        // Ids are URL-safe base64 by construction: always a valid value.
        if let Ok(value) = HeaderValue::from_str(id.as_str()) {
            headers.append_header(X_SESSION_ID, value);
        }
        match self.session_value(data) {
            Some(value) => {
                headers.append_header(X_SESSION, value);
            }
            None => {
                headers.append_header(X_SESSION_OMITTED, TOO_LARGE);
                omissions.session = true;
            }
        }
        for (name, pointer) in &self.fields {
            let encoded = match plain_text_at(data, &pointer.0) {
                Some(plain) => Some(plain),
                None => match pointer.value_in(data) {
                    Some(value) => encode_field(&value),
                    None => continue,
                },
            };
            match encoded.filter(|v| v.len() <= self.budget) {
                Some(value) => {
                    headers.append_header(name.clone(), value);
                }
                None => omissions.fields.push(name.clone()),
            }
        }
        omissions
    }

    fn session_value(&self, data: &SessionData) -> Option<HeaderValue> {
        let json: Bytes = if self.keys.is_empty() {
            data.ascii_json().clone()
        } else {
            let allowed: Map<String, Value> = data
                .map()
                .iter()
                .filter(|(key, _)| self.keys.iter().any(|k| k == *key))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            Bytes::from(ascii_json::object_to_ascii(&allowed))
        };
        if json.len() > self.budget {
            return None;
        }
        HeaderValue::from_maybe_shared(json).ok()
    }
}

/// The header of the value at `tokens` when it is a plain string written
/// without escapes: its bytes in the session's rendering, shared rather
/// than parsed and copied (what [`encode_field`] gives for it). `None`
/// for every other value, and when the scan is unsure.
fn plain_text_at(data: &SessionData, tokens: &[String]) -> Option<HeaderValue> {
    let json = data.ascii_json();
    let Scan::Found(text) = scan::value_at_rendered(json, tokens) else {
        return None;
    };
    let inner = text.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'\\') || !is_plain(inner) {
        return None;
    }
    HeaderValue::from_maybe_shared(json.slice_ref(inner)).ok()
}

/// Encodes one value for a per-field header.
pub fn encode_field(value: &Value) -> Option<HeaderValue> {
    if let Value::String(text) = value {
        if is_plain(text.as_bytes()) {
            return HeaderValue::from_str(text).ok();
        }
    }
    let mut encoded = ENCODED_PREFIX.as_bytes().to_vec();
    encoded.extend_from_slice(&ascii_json::to_ascii(value));
    HeaderValue::from_maybe_shared(Bytes::from(encoded)).ok()
}

/// Visible ASCII with inner spaces only, and not mistakable for an encoded
/// value (header parsers trim outer spaces, so those would not round-trip).
/// Bytes, so that text from the session's rendering needs no UTF-8 check:
/// only ASCII passes.
fn is_plain(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.iter().all(|b| (0x20..0x7f).contains(b))
        && bytes[0] != b' '
        && bytes[bytes.len() - 1] != b' '
        && !bytes.starts_with(ENCODED_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(header: &HeaderValue) -> Value {
        let text = header.to_str().unwrap();
        match text.strip_prefix(ENCODED_PREFIX) {
            Some(json) => serde_json::from_str(json).unwrap(),
            None => Value::String(text.to_owned()),
        }
    }

    #[test]
    fn field_values_round_trip_and_stay_on_one_line() {
        let values = [
            json!("ada"),
            json!("Ada Lovelace"),
            json!(" padded "),
            json!(""),
            json!("json:looks encoded"),
            json!("line\r\nX-Injected: 1"),
            json!("Zoë ✓"),
            json!(42),
            json!(null),
            json!({"roles": ["admin"]}),
        ];
        for value in values {
            let header = encode_field(&value).unwrap();
            assert!(
                header.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)),
                "{header:?}"
            );
            assert_eq!(decode(&header), value);
        }
        assert_eq!(encode_field(&json!("ada")).unwrap(), "ada");
    }

    #[test]
    fn pointers_reach_nested_fields() {
        let data = json!({"user": {"name": "ada", "a/b": 1, "~x": 2}, "list": [10, 20]});
        let map = data.as_object().unwrap();
        let lookup = |pointer: &str| Pointer::parse(pointer)?.resolve(map);
        assert_eq!(lookup("/user/name"), Some(&json!("ada")));
        assert_eq!(lookup("/user/a~1b"), Some(&json!(1)));
        assert_eq!(lookup("/user/~0x"), Some(&json!(2)));
        assert_eq!(lookup("/list/1"), Some(&json!(20)));
        assert_eq!(lookup("/list/01"), None);
        assert_eq!(lookup("/list/-"), None);
        assert_eq!(lookup("/list/2"), None);
        assert_eq!(lookup("/missing"), None);
        assert_eq!(lookup(""), None);
    }

    #[test]
    fn a_plain_string_shared_from_the_text_is_the_header_encoding_gives() {
        use crate::domain::session::test_json::random_object;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let pointers = [
            "/user",
            "/name",
            "/user/name",
            "/0/0",
            "/a~1b",
            "/user/user",
        ];
        let mut shared = 0;
        for _ in 0..3000 {
            let data = SessionData::from_ascii_json(
                SessionData::new(random_object(&mut rng, 2))
                    .ascii_json()
                    .clone(),
            );
            for pointer in pointers {
                let pointer = Pointer::parse(pointer).unwrap();
                let encoded = pointer.value_in(&data).and_then(|v| encode_field(&v));
                if let Some(plain) = plain_text_at(&data, &pointer.0) {
                    assert_eq!(Some(plain), encoded, "{:?}", data.ascii_json());
                    shared += 1;
                }
            }
        }
        // `bench`, `]}` and `a b` (but not ` a`, which is encoded).
        assert!(shared > 150, "{shared} values shared");
        let data = SessionData::from_ascii_json(Bytes::from_static(br#"{"user":{"name":"a\"b"}}"#));
        assert_eq!(plain_text_at(&data, &["user".into(), "name".into()]), None);
    }
}
