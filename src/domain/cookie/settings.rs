//! The session cookie's attributes, as configured in `[cookie]`.

use std::time::Duration;

pub use cookie::SameSite;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secure {
    Always,
    Never,
    /// Secure when the client connection is TLS or a trusted proxy says https.
    Auto,
}

/// The `[cookie]` settings: how the session cookie is named, scoped and
/// refreshed.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub path: String,
    pub domain: Option<String>,
    pub http_only: bool,
    pub same_site: SameSite,
    pub secure: Secure,
    pub max_age: Option<Duration>,
    pub rolling: bool,
    pub forward_to_upstream: bool,
    /// A logout (the cookie cleared) also sends `Clear-Site-Data:
    /// "cookies"`, which makes the browser drop every cookie of the site.
    pub clear_site_data: bool,
}
