//! The session cookie on the wire: finding Cloakroom's cookie among the
//! request's cookies, removing it from what the upstream sees, and writing
//! `Set-Cookie` with express-session's options and encoding.
//!
//! Value encoding is express-session's: `encodeURIComponent("s:<id>.<sig>")`.
//! Reading accepts both the encoded and the raw form (as express-session does).
//!
//! Several cookies with our name in one request (e.g. one per path, or one
//! planted from a sibling domain): every one is verified; forged ones are
//! ignored; the distinct valid ids become candidates (at most
//! [`MAX_CANDIDATES`]) and the proxy uses the session only if exactly one of
//! them is live in the store. Two different live sessions mean no session:
//! never "the first one wins".

pub mod settings;
pub mod signing;

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use cookie::time::OffsetDateTime;
use cookie::Cookie;
use http::header::{self, HeaderMap, HeaderValue};
use smallvec::SmallVec;

use crate::domain::session::SessionId;
use crate::util::date;
use settings::{CookieSettings, Secure};
use signing::{Signature, Signer, Verdict};

/// Distinct valid ids looked up at most for one request.
pub const MAX_CANDIDATES: usize = 4;

/// One verified id of the request's cookies.
#[derive(Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: SessionId,
    /// Its signature, when the first secret made it (see
    /// [`Signer::check`]): the cookie issued again for it carries the same.
    pub signature: Option<Signature>,
}

/// A request's verified ids: held inline for the usual one cookie, so that
/// reading it allocates nothing but the id.
pub type Candidates = SmallVec<[Candidate; 1]>;

/// What the request's cookies claim.
#[derive(Debug, Default)]
pub struct Ticket {
    /// Distinct verified ids, in order of appearance.
    pub candidates: Candidates,
    /// A cookie with our name had a signature none of our secrets made.
    pub forged: bool,
    /// At least one cookie with our name was present.
    pub present: bool,
    /// The request's cookies were ours alone, in one `Cookie` header.
    pub alone: bool,
}

impl Ticket {
    /// The candidates' ids, in order.
    #[cfg(test)]
    pub fn ids(&self) -> Vec<SessionId> {
        self.candidates.iter().map(|c| c.id.clone()).collect()
    }
}

pub struct SessionCookie {
    signer: Signer,
    config: CookieSettings,
    rendered: Rendered,
}

/// The attributes of an issued `Set-Cookie` that are the same on every
/// response, rendered once: those before `Secure` (which depends on the
/// request) and those after it, but for `Expires`.
struct Rendered {
    before_secure: String,
    after_secure: String,
    /// `after_secure` without `Max-Age`: for cookies with a lifetime of
    /// their own ("remember me").
    path_and_domain: String,
}

impl Rendered {
    fn new(config: &CookieSettings) -> Self {
        let mut before_secure = String::new();
        if config.http_only {
            before_secure.push_str("; HttpOnly");
        }
        before_secure.push_str(&format!("; SameSite={}", config.same_site));
        let mut after_secure = format!("; Path={}", config.path);
        if let Some(domain) = &config.domain {
            after_secure.push_str(&format!("; Domain={domain}"));
        }
        let path_and_domain = after_secure.clone();
        if let Some(max_age) = config.max_age {
            let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            after_secure.push_str(&format!("; Max-Age={seconds}"));
        }
        Self {
            before_secure,
            after_secure,
            path_and_domain,
        }
    }
}

impl SessionCookie {
    pub fn new(config: CookieSettings, signer: Signer) -> Self {
        Self {
            rendered: Rendered::new(&config),
            signer,
            config,
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Whether a cookie issued on a request that came over HTTPS (`https`)
    /// carries `Secure`.
    pub fn secure_for(&self, https: bool) -> bool {
        match self.config.secure {
            Secure::Always => true,
            Secure::Never => false,
            Secure::Auto => https,
        }
    }

    /// Removes every `Set-Cookie` of `headers` that sets a cookie with our
    /// name (only Cloakroom issues it); true when there was one.
    pub fn strip_set_by_upstream(&self, headers: &mut HeaderMap) -> bool {
        let name = self.config.name.as_bytes();
        let ours = |value: &HeaderValue| {
            let bytes = value.as_bytes();
            let end = memchr::memchr(b'=', bytes).unwrap_or(bytes.len());
            bytes[..end].trim_ascii() == name
        };
        if !headers.get_all(header::SET_COOKIE).iter().any(ours) {
            return false;
        }
        let kept: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|value| !ours(value))
            .cloned()
            .collect();
        headers.remove(header::SET_COOKIE);
        for value in kept {
            headers.append(header::SET_COOKIE, value);
        }
        true
    }

    /// Reads and verifies every cookie with our name.
    pub fn read(&self, headers: &HeaderMap) -> Ticket {
        let mut ticket = Ticket::default();
        let mut others = false;
        for (name, value) in cookie_pairs(headers) {
            if name != self.config.name.as_bytes() {
                others = true;
                continue;
            }
            ticket.present = true;
            let mut buffer = [0u8; MAX_VALUE_BYTES];
            let Some(value) = decode_value(value, &mut buffer) else {
                continue;
            };
            match self.signer.check(value) {
                (Verdict::Valid(id), signature) => {
                    if !ticket.candidates.iter().any(|known| known.id == id)
                        && ticket.candidates.len() < MAX_CANDIDATES
                    {
                        ticket.candidates.push(Candidate { id, signature });
                    }
                }
                (Verdict::Forged, _) => ticket.forged = true,
                (Verdict::Malformed, _) => {}
            }
        }
        ticket.alone =
            ticket.present && !others && headers.get_all(header::COOKIE).iter().count() == 1;
        ticket
    }

    /// Rewrites the `Cookie` header for the upstream: our cookie removed
    /// (unless configured to forward it) and HTTP/2 cookie crumbs joined
    /// into one header. Left alone when there is nothing to change.
    /// `ticket` is what [`Self::read`] found in the same headers.
    pub fn strip(&self, headers: &mut HeaderMap, ticket: &Ticket) {
        let ours = !self.config.forward_to_upstream && ticket.present;
        if ours && ticket.alone {
            // Only our cookie: the usual case for an app that uses no other.
            headers.remove(header::COOKIE);
            return;
        }
        let crumbs = headers.get_all(header::COOKIE).iter().count();
        if crumbs <= 1 && !ours {
            return;
        }
        let kept: Vec<&str> = headers
            .get_all(header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                !ours || pair.split_once('=').map_or(*pair, |(n, _)| n.trim()) != self.config.name
            })
            .collect();
        let joined = kept.join("; ");
        match HeaderValue::from_str(&joined) {
            Ok(value) if !joined.is_empty() => {
                headers.insert(header::COOKIE, value);
            }
            _ => {
                headers.remove(header::COOKIE);
            }
        }
    }

    /// `Set-Cookie` for a session, signed with the first secret.
    #[cfg(test)]
    pub fn issue(&self, id: &SessionId, secure: bool) -> HeaderValue {
        self.issue_at(id, None, secure, SystemTime::now(), None)
    }

    /// [`Self::issue`], persistent for `lifetime` when given (a remembered
    /// session) instead of `cookie.max_age`. `known`: the id's signature,
    /// when the request's cookie carried it ([`Candidate::signature`]).
    pub fn issue_for(
        &self,
        id: &SessionId,
        known: Option<&Signature>,
        secure: bool,
        lifetime: Option<std::time::Duration>,
    ) -> HeaderValue {
        self.issue_at(id, known, secure, SystemTime::now(), lifetime)
    }

    /// [`Self::issue`] at a given time (for `Expires`). Written directly,
    /// in the cookie crate's attribute order, from parts rendered once at
    /// start-up: a session write issues a cookie on every response, and the
    /// crate's general formatter costs several times the HMAC.
    fn issue_at(
        &self,
        id: &SessionId,
        known: Option<&Signature>,
        secure: bool,
        now: SystemTime,
        lifetime: Option<std::time::Duration>,
    ) -> HeaderValue {
        let rendered = &self.rendered;
        // Bytes, not a `String`: every part is ASCII, and the header value
        // checks them once at the end.
        let mut out = Vec::with_capacity(
            self.config.name.len()
                + id.as_str().len()
                + signing::ENCODED_EXTRA
                + rendered.before_secure.len()
                + 96,
        );
        out.extend_from_slice(self.config.name.as_bytes());
        out.push(b'=');
        self.signer.sign_encoded_into(id, known, &mut out);
        out.extend_from_slice(rendered.before_secure.as_bytes());
        if secure {
            out.extend_from_slice(b"; Secure");
        }
        let max_age = match lifetime {
            Some(lifetime) => {
                out.extend_from_slice(rendered.path_and_domain.as_bytes());
                // Writing into a `Vec` cannot fail.
                let _ = write!(out, "; Max-Age={}", lifetime.as_secs());
                Some(lifetime)
            }
            None => {
                out.extend_from_slice(rendered.after_secure.as_bytes());
                self.config.max_age
            }
        };
        if let Some(max_age) = max_age {
            let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
            // Past the year 9999 there is none: a session cookie, as the
            // cookie crate writes an expiry it cannot represent.
            if let Some(date) = date::imf_fixdate(since_epoch.saturating_add(max_age)) {
                out.extend_from_slice(b"; Expires=");
                out.extend_from_slice(&date);
            }
        }
        // Name, path and domain were validated at start-up and the value is
        // percent-encoded ASCII, so the header is always valid. The bytes
        // become the header's as they are, without a copy; trimmed to
        // their length first (in place: the allocator keeps a block that
        // shrinks by less than half), since `Bytes` takes a buffer with
        // spare room only with a second allocation to track it.
        out.shrink_to_fit();
        HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that makes the browser forget the session cookie.
    pub fn clear(&self, secure: bool) -> HeaderValue {
        let mut cookie = self.base(String::new(), secure);
        cookie.set_max_age(cookie::time::Duration::ZERO);
        cookie.set_expires(OffsetDateTime::UNIX_EPOCH);
        to_header(&cookie)
    }

    fn base(&self, value: String, secure: bool) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.config.name.clone(), value);
        cookie.set_path(self.config.path.clone());
        if let Some(domain) = &self.config.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.set_http_only(self.config.http_only);
        cookie.set_same_site(self.config.same_site);
        cookie.set_secure(secure);
        cookie
    }
}

fn to_header(cookie: &Cookie<'_>) -> HeaderValue {
    // Names, paths and domains were validated at start-up and the value is
    // percent-encoded ASCII, so the header is always valid.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Every `name=value` pair in every `Cookie` header (HTTP/2 may split them),
/// as bytes: names are compared and values decoded without a UTF-8 check
/// of their own (the decoded value is checked by its verification).
fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| split_pairs(v.as_bytes()))
        .filter_map(|pair| {
            let at = memchr::memchr(b'=', pair)?;
            Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
        })
}

/// The `;`-separated pieces of one `Cookie` header value.
fn split_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b';', current) {
            Some(at) => {
                rest = Some(&current[at + 1..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Longest decoded cookie value that can be ours: `s:` + a 128-byte id +
/// `.` + a 43-byte signature fits well within it.
const MAX_VALUE_BYTES: usize = 256;

/// express-session's reading: strip surrounding quotes, percent-decode when
/// the value holds a `%`. Decodes into `buffer` (no allocation); `None` for
/// broken escapes or values too long to be ours. One pass: runs between
/// escapes are copied whole (a signed value usually holds a single escape,
/// `s%3A`), and a value without any is returned as it is.
fn decode_value<'a>(value: &'a [u8], buffer: &'a mut [u8; MAX_VALUE_BYTES]) -> Option<&'a [u8]> {
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value);
    let mut rest = value;
    let mut len = 0;
    while let Some(run) = memchr::memchr(b'%', rest) {
        buffer
            .get_mut(len..len + run)?
            .copy_from_slice(&rest[..run]);
        len += run;
        // A `%` must be followed by two hexadecimal digits.
        let escape = rest.get(run..run + 3)?;
        *buffer.get_mut(len)? = hex_digit(escape[1])? << 4 | hex_digit(escape[2])?;
        len += 1;
        rest = &rest[run + 3..];
    }
    if len == 0 {
        return Some(value);
    }
    buffer.get_mut(len..len + rest.len())?.copy_from_slice(rest);
    Some(&buffer[..len + rest.len()])
}

/// The value of one hexadecimal digit; `None` for anything else (a sign
/// included, which `u8::from_str_radix` would take).
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
