//! [`Settings`]: what the proxy is built from, as domain values (the edge
//! makes them from the configuration; the proxy never reads it).

use std::time::Duration;

use http::HeaderValue;

use crate::domain::cookie::settings::CookieSettings;
use crate::domain::cookie::signing::Signer;
use crate::domain::cross_origin::CrossOrigin;
use crate::domain::routes::Routes;
use crate::domain::session_headers::SessionHeaders;
use crate::upstream::Upstream;

pub struct Settings {
    pub cookie: CookieSettings,
    pub signer: Signer,
    pub routes: Routes,
    pub session_headers: SessionHeaders,
    pub upstream: Upstream,
    /// The session key whose presence means "logged in".
    pub identity_key: String,
    pub login_url: String,
    /// `TRACE` is forwarded (off: answered 405 by the proxy).
    pub allow_trace: bool,
    /// `Via` on forwarded requests and responses.
    pub via: bool,
    /// `Strict-Transport-Security` for responses over TLS.
    pub hsts: Option<HeaderValue>,
    pub body_idle_timeout: Duration,
    pub policy: CommitPolicy,
    /// Origins allowed to open WebSockets on protected paths (lower case);
    /// empty: no check.
    pub websocket_origins: Vec<String>,
    /// Cross-origin writes with a session refused.
    pub cross_origin: CrossOrigin,
    pub access_log: AccessLog,
}

/// The access log: one line per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLog {
    pub enabled: bool,
    /// The line shows the query string (off: the path only).
    pub query: bool,
}

impl CommitPolicy {
    /// Whether a response without `Set-Session` still writes to the store:
    /// `rolling` refreshes a session, `save_uninitialized` makes one.
    #[inline]
    pub fn acts_unasked(&self, has_session: bool) -> bool {
        if has_session {
            self.rolling
        } else {
            self.save_uninitialized
        }
    }
}

/// The session settings the commit phase follows.
#[derive(Debug, Clone)]
pub struct CommitPolicy {
    /// `cookie.rolling`: every response refreshes the cookie and the store.
    pub rolling: bool,
    /// `session.save_uninitialized`: a visitor gets an empty session.
    pub save_uninitialized: bool,
    /// The cookie has a max age: a written session re-sends it.
    pub refresh_on_write: bool,
    /// The store lifetime of a session.
    pub ttl: Duration,
    pub max_bytes: usize,
    pub max_set_session_bytes: usize,
    /// `cookie.clear_site_data`: a logout also says
    /// `Clear-Site-Data: "cookies"`.
    pub clear_site_data: bool,
}
