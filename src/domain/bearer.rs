//! [`BearerToken`]: the admin API's token, checked in constant time.
//!
//! Only the token's SHA-256 digest is kept. A presented token is hashed
//! and the two digests are compared with `subtle`'s constant-time
//! equality, so neither the token's content nor its length shows in how
//! long a refusal takes.

use std::fmt;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::secret::Secret;

/// The token a bearer must present. Redacted in `Debug`; never `Default`.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl BearerToken {
    pub fn new(secret: &Secret) -> Self {
        Self {
            digest: Sha256::digest(secret.expose()).into(),
        }
    }

    /// Whether `presented` is the token, in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(self.digest.ct_eq(&digest))
    }

    /// Whether an `Authorization` header value is `Bearer <the token>`
    /// (the scheme in any case, RFC 9110 §11.1).
    pub fn authorizes(&self, header: Option<&[u8]>) -> bool {
        let Some(value) = header else {
            return false;
        };
        match value.split_at_checked(7) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
                self.matches(token.trim_ascii())
            }
            _ => false,
        }
    }
}

/// Tokens are equal when their digests are (a reload compares them).
impl PartialEq for BearerToken {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.digest.ct_eq(&other.digest))
    }
}

impl Eq for BearerToken {}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> BearerToken {
        BearerToken::new(&Secret::new(text.into()))
    }

    #[test]
    fn only_the_exact_token_is_accepted() {
        let admin = token("s3cret-token-0123456789");
        assert!(admin.authorizes(Some(b"Bearer s3cret-token-0123456789")));
        assert!(admin.authorizes(Some(b"bearer s3cret-token-0123456789")));
        for bad in [
            &b"Bearer s3cret-token-012345678"[..],
            b"Bearer s3cret-token-01234567890",
            b"Basic s3cret-token-0123456789",
            b"Bearer",
            b"s3cret-token-0123456789",
            b"",
        ] {
            assert!(
                !admin.authorizes(Some(bad)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(!admin.authorizes(None));
    }

    #[test]
    fn debug_never_shows_the_token() {
        assert!(!format!("{:?}", token("hunter2")).contains("hunter2"));
        assert_eq!(token("a"), token("a"));
        assert_ne!(token("a"), token("b"));
    }
}
