//! A byte scanner over session data as Cloakroom renders it (compact,
//! printable-ASCII JSON, see [`ascii_json`](super::ascii_json)): where a
//! value sits, found by skipping bytes rather than deserialising.
//!
//! Why: a session read needs one value of the session (a per-field header
//! such as `X-User`), and a session write compares the identity before and
//! after and patches a few top-level keys. Walking the text with serde costs
//! about five times what skipping the bytes does.
//!
//! The scanner answers only what it is sure of. A key written with an
//! escape, nesting deeper than serde_json's limit, or text that is not one
//! JSON value gives [`Scan::Unsure`], and the caller asks serde instead;
//! so for any text the answer is serde's (tested in `lookup` and `ops`).
//! A lookup in a session's rendering, which is valid JSON by construction,
//! stops at the value it found ([`value_at_rendered`]); [`members`], which
//! reads records other programs wrote, always walks the whole text.

use smallvec::SmallVec;

/// serde_json's recursion limit: deeper text is left to serde, which
/// refuses it.
const MAX_DEPTH: usize = 128;

/// An array index token: digits without a leading zero (RFC 6901 §4).
pub fn array_index(token: &str) -> Option<usize> {
    let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
    if !canonical || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// What the scanner found.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<T> {
    Found(T),
    Absent,
    /// Not decided here: ask serde.
    Unsure,
}

/// The text of the value at `tokens` (a JSON pointer's tokens) in `json`,
/// any text: the scan walks all of it, so that text that is not one JSON
/// value is `Unsure`. The tests' reference for [`value_at_rendered`], which
/// sessions use.
#[cfg(test)]
pub fn value_at<'a>(json: &'a [u8], tokens: &[String]) -> Scan<&'a [u8]> {
    let mut cursor = Cursor::new(json);
    let Some(found) = cursor.find(tokens, 0) else {
        return Scan::Unsure;
    };
    cursor.skip_space();
    match found {
        _ if cursor.at != json.len() => Scan::Unsure,
        Some((start, end)) => Scan::Found(&json[start..end]),
        None => Scan::Absent,
    }
}

/// [`value_at`] in a session's rendering (what
/// [`SessionData::ascii_json`](super::SessionData::ascii_json) gives: one
/// valid JSON object, no key in it twice), where the same answer needs
/// less of the text: the scan stops at the value found, instead of
/// walking the rest of the text to prove it valid. A session read looks up
/// a header field's value this way, and a write its identity.
pub fn value_at_rendered<'a>(json: &'a [u8], tokens: &[String]) -> Scan<&'a [u8]> {
    let mut cursor = Cursor {
        stop_at_found: true,
        ..Cursor::new(json)
    };
    match cursor.find(tokens, 0) {
        Some(Some((start, end))) => Scan::Found(&json[start..end]),
        Some(None) => Scan::Absent,
        None => Scan::Unsure,
    }
}

/// One member of an object: its key as written (no escapes in it) and the
/// text of its value.
pub type Member<'a> = (&'a [u8], &'a [u8]);

/// An object's members: a session's few held inline, without an
/// allocation.
pub type Members<'a> = SmallVec<[Member<'a>; 8]>;

/// The members of the JSON object `json`, in order; `None` when it is not
/// one object, or a key holds an escape.
pub fn members(json: &[u8]) -> Option<Members<'_>> {
    let mut cursor = Cursor::new(json);
    cursor.skip_space();
    if cursor.peek() != Some(b'{') {
        return None;
    }
    let mut members = Members::new();
    cursor.object(|cursor, key| {
        let key = plain(key)?;
        cursor.skip_space();
        let start = cursor.at;
        cursor.skip_value(1)?;
        members.push((key, &json[start..cursor.at]));
        Some(())
    })?;
    cursor.skip_space();
    (cursor.at == json.len()).then_some(members)
}

/// A key as written, if it holds no escape (else the scan is unsure).
fn plain(key: &[u8]) -> Option<&[u8]> {
    (!key.contains(&b'\\')).then_some(key)
}

struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
    /// [`Self::find`] stops the walk once it has found the value, leaving
    /// the cursor there (for text known to be valid).
    stop_at_found: bool,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            at: 0,
            stop_at_found: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string; returns what is between the quotes, as written.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
        let inside = self.text.get(start..self.at)?;
        self.at += 1;
        Some(inside)
    }

    /// The object here: `member` is called on each key (as written) with
    /// the cursor before its value, and must move past the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.skip_space();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.skip_space();
            let key = self.string()?;
            self.skip_space();
            self.expect(b':')?;
            member(self, key)?;
            self.skip_space();
            if self.eat(b'}') {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    /// The array here: `element` is called with each element's index and
    /// the cursor before it, and must move past it.
    fn array(&mut self, mut element: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        self.expect(b'[')?;
        self.skip_space();
        if self.eat(b']') {
            return Some(());
        }
        let mut index = 0;
        loop {
            element(self, index)?;
            self.skip_space();
            if self.eat(b']') {
                return Some(());
            }
            self.expect(b',')?;
            index += 1;
        }
    }

    /// Skips one value; `None` if the text is not one.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|cursor, _| cursor.skip_value(depth + 1)),
            b'[' => self.array(|cursor, _| cursor.skip_value(depth + 1)),
            _ => {
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'+' | b'-' | b'.')
                ) {
                    self.at += 1;
                }
                (self.at > start).then_some(())
            }
        }
    }

    /// The span of the value at `tokens` in the value here (`Some(None)`:
    /// not there); `None` when unsure.
    fn find(&mut self, tokens: &[String], depth: usize) -> Option<Option<(usize, usize)>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        let Some((first, rest)) = tokens.split_first() else {
            let start = self.at;
            self.skip_value(depth)?;
            return Some(Some((start, self.at)));
        };
        let mut found = None;
        let stop = self.stop_at_found;
        // With `stop`, a walk is cut short (answers `None`) right after
        // the value was found: that is the answer, not a doubt.
        let walked = match self.peek()? {
            b'{' => self.object(|cursor, key| {
                // The first member under the key that holds the rest of
                // the pointer, as serde's walk decides.
                if found.is_none() && plain(key)? == first.as_bytes() {
                    found = cursor.find(rest, depth + 1)?;
                    (!stop || found.is_none()).then_some(())
                } else {
                    cursor.skip_value(depth + 1)
                }
            }),
            b'[' => {
                let wanted = array_index(first);
                self.array(|cursor, index| {
                    if Some(index) == wanted {
                        found = cursor.find(rest, depth + 1)?;
                        (!stop || found.is_none()).then_some(())
                    } else {
                        cursor.skip_value(depth + 1)
                    }
                })
            }
            // A scalar has nothing inside.
            _ => self.skip_value(depth),
        };
        match walked {
            Some(()) => Some(found),
            None if stop && found.is_some() => Some(found),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(pointer: &str) -> Vec<String> {
        pointer.split('/').skip(1).map(str::to_owned).collect()
    }

    #[test]
    fn finds_the_text_of_a_value() {
        let json = br#"{"user":{"name":"bench","roles":["a",{"b":[null,2.5]}]},"n":7}"#;
        assert_eq!(
            value_at(json, &tokens("/user/name")),
            Scan::Found(&b"\"bench\""[..])
        );
        assert_eq!(
            value_at(json, &tokens("/user/roles/1/b/1")),
            Scan::Found(&b"2.5"[..])
        );
        assert_eq!(value_at(json, &tokens("/n")), Scan::Found(&b"7"[..]));
        assert_eq!(value_at(json, &tokens("/user/missing")), Scan::Absent);
        assert_eq!(value_at(json, &tokens("/n/x")), Scan::Absent);
        assert_eq!(value_at(json, &tokens("/user/roles/9")), Scan::Absent);
    }

    #[test]
    fn leaves_to_serde_what_it_cannot_be_sure_of() {
        let escaped_key = br#"{"\u00e9":1,"user":2}"#;
        assert_eq!(value_at(escaped_key, &tokens("/user")), Scan::Unsure);
        let trailing = br#"{"user":1} trailing"#;
        assert_eq!(value_at(trailing, &tokens("/user")), Scan::Unsure);
        assert_eq!(
            value_at(br#"{"user":"unterminated"#, &tokens("/user")),
            Scan::Unsure
        );
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(value_at(deep.as_bytes(), &tokens("/a")), Scan::Unsure);
        assert_eq!(members(escaped_key), None);
        assert_eq!(members(b"[1]"), None);
        assert_eq!(members(br#"{"a":1}x"#), None);
    }

    #[test]
    fn lists_the_members_of_an_object_in_order() {
        let json = br#"{"b":{"x":[1,"]"]},"a":"q\"}","c":null}"#;
        let members = members(json).unwrap();
        let expected: [Member<'_>; 3] = [
            (b"b", br#"{"x":[1,"]"]}"#),
            (b"a", br#""q\"}""#),
            (b"c", b"null"),
        ];
        assert_eq!(members.as_slice(), expected);
        assert_eq!(super::members(b"{}"), Some(Members::new()));
    }
}
