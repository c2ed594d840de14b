//! The canonical request path: the one form that is both matched against
//! login-only prefixes and forwarded upstream, so the route decision and the
//! upstream can never disagree about which resource was asked for.
//!
//! The rule:
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded; other escapes are kept, with upper-case hex;
//! - dot segments are resolved (`/a/./b/../c` is `/a/c`; `..` stops at the
//!   root) and repeated slashes collapse to one;
//! - a path that servers disagree about is refused with 400: an escaped `/`,
//!   `\`, `;` or `%` (`%2F`, `%5C`, `%3B`, `%25`: the last is how double
//!   encoding starts), a raw `\` or `;`, an escaped control byte, or a broken
//!   escape;
//! - so is a segment that ends with a dot or an (escaped) space, like
//!   `/admin.`, `/admin..` or `/admin%20`: IIS and ASP.NET, and some Java
//!   and file-serving stacks, read them as `/admin`, so a route rule could
//!   be passed by.
//!
//! The query string is not touched.

use std::borrow::Cow;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path does not start with `/`")]
    NotOriginForm,
    #[error("path contains an escaped separator, percent sign or control byte")]
    AmbiguousEscape,
    #[error("path contains a backslash")]
    Backslash,
    #[error("path contains `;`")]
    Semicolon,
    #[error("path contains a broken percent-escape")]
    BrokenEscape,
    #[error("a path segment ends with a dot or a space")]
    TrailingDotOrSpace,
}

/// The canonical form of `raw` (a path without query), borrowed when `raw`
/// is already canonical: the usual case costs one scan and no allocation.
pub fn canonicalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw == "*" {
        return Ok(Cow::Borrowed(raw));
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let canonical = if is_canonical(raw.as_bytes())? {
        Cow::Borrowed(raw)
    } else {
        let decoded = decode_unreserved(raw.as_bytes())?;
        Cow::Owned(resolve_segments(&decoded))
    };
    if has_trailing_dot_or_space(&canonical) {
        return Err(PathError::TrailingDotOrSpace);
    }
    Ok(canonical)
}

/// A segment of a canonical path (dot segments resolved) that ends with
/// `.` or an escaped space.
fn has_trailing_dot_or_space(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment.ends_with('.') || segment.ends_with("%20"))
}

/// True when nothing needs rewriting; errors on bytes refused anywhere.
fn is_canonical(bytes: &[u8]) -> Result<bool, PathError> {
    let mut canonical = true;
    let mut previous = 0u8;
    for &byte in bytes {
        match byte {
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            b'%' => canonical = false,
            b'/' if previous == b'/' => canonical = false,
            b'.' if previous == b'/' => canonical = false,
            0x80.. => canonical = false,
            _ => {}
        }
        previous = byte;
    }
    Ok(canonical)
}

fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte >= 0x80 {
            // Raw non-ASCII (tolerated by some parsers): canonically escaped.
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(byte & 0xf)]));
            i += 1;
            continue;
        }
        if byte != b'%' {
            out.push(char::from(byte));
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BrokenEscape)?;
        let value = (hex_value(hex[0])? << 4) | hex_value(hex[1])?;
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(value));
        } else if matches!(value, b'/' | b'\\' | b';' | b'%') || value < 0x20 || value == 0x7f {
            return Err(PathError::AmbiguousEscape);
        } else {
            out.push('%');
            out.push(char::from(hex[0].to_ascii_uppercase()));
            out.push(char::from(hex[1].to_ascii_uppercase()));
        }
        i += 3;
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Result<u8, PathError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(PathError::BrokenEscape),
    }
}

/// RFC 3986 dot-segment removal, plus collapsing empty segments.
fn resolve_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    out
}

/// `encodeURIComponent`: escapes everything but `A-Z a-z 0-9 - _ . ! ~ * '
/// ( )`. Used for `next` in login redirects and, as express-session does,
/// for the session cookie's value.
pub fn encode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 8);
    // Runs of unreserved bytes are copied whole (a session cookie value has
    // two or three bytes to escape).
    let mut run_start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !UNRESERVED[usize::from(byte)] {
            out.extend_from_slice(&bytes[run_start..at]);
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(byte >> 4)],
                HEX_UPPER[usize::from(byte & 0xf)],
            ]);
            run_start = at + 1;
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
    // Unreserved bytes and escapes are ASCII.
    String::from_utf8(out).unwrap_or_else(|_| unreachable!("percent-encoded text is ASCII"))
}

/// The bytes `encodeURIComponent` leaves as they are.
const UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut at = 0;
    while at < 256 {
        let byte = at as u8;
        table[at] = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        at += 1;
    }
    table
};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> Result<String, PathError> {
        canonicalize(raw).map(Cow::into_owned)
    }

    #[test]
    fn encode_component_matches_encode_uri_component() {
        // Outputs of JavaScript's encodeURIComponent for the same inputs.
        for (text, encoded) in [
            ("s:abc-_.XYZ09+/=", "s%3Aabc-_.XYZ09%2B%2F%3D"),
            ("!~*'()", "!~*'()"),
            ("/a b?c=d&e#f", "%2Fa%20b%3Fc%3Dd%26e%23f"),
            ("é✓", "%C3%A9%E2%9C%93"),
            ("%", "%25"),
            ("", ""),
        ] {
            assert_eq!(encode_component(text), encoded, "{text:?}");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for raw in ["/", "/account", "/a/b.c/", "/x-y_z~"] {
            assert!(matches!(canonicalize(raw), Ok(Cow::Borrowed(_))), "{raw}");
        }
    }

    #[test]
    fn segments_ending_with_a_dot_or_a_space_are_refused() {
        for raw in [
            "/admin.",
            "/admin./x",
            "/admin..",
            "/admin%20",
            "/admin%20/x",
            "/account.",
            "/admin%2e",
            "/a/b%2E%2E",
        ] {
            assert_eq!(canon(raw), Err(PathError::TrailingDotOrSpace), "{raw}");
        }
        for raw in ["/a.b", "/.well-known/x", "/x%20y", "/a/..", "/a/./b"] {
            assert!(canon(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn dot_segments_and_repeated_slashes_resolve() {
        assert_eq!(canon("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(canon("//admin//x").unwrap(), "/admin/x");
        assert_eq!(canon("/../../admin").unwrap(), "/admin");
        assert_eq!(canon("/public/..").unwrap(), "/");
        assert_eq!(canon("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(canon("/.well-known/x").unwrap(), "/.well-known/x");
    }

    #[test]
    fn unreserved_escapes_decode_and_others_normalise() {
        assert_eq!(canon("/%61dmin").unwrap(), "/admin");
        assert_eq!(canon("/%2e%2E/admin").unwrap(), "/admin");
        assert_eq!(canon("/x/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(canon("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(canon("/a%20b").unwrap(), "/a%20b");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for raw in [
            "/admin%2fx",
            "/admin%2Fx",
            "/%5cadmin",
            "/admin%3bx",
            "/%252e%252e/admin",
            "/a%00",
        ] {
            assert_eq!(canon(raw), Err(PathError::AmbiguousEscape), "{raw}");
        }
        assert_eq!(canon("/admin\\x"), Err(PathError::Backslash));
        assert_eq!(canon("/admin;jsessionid=1"), Err(PathError::Semicolon));
        assert_eq!(canon("/a%2"), Err(PathError::BrokenEscape));
        assert_eq!(canon("/a%zz"), Err(PathError::BrokenEscape));
        assert_eq!(canon("admin"), Err(PathError::NotOriginForm));
    }
}
