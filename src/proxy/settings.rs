//! [`Settings`]: what the proxy is built from, as domain values (the edge
//! makes them from the configuration; the proxy never reads it).

use std::time::Duration;

use http::HeaderValue;

use crate::domain::cookie::settings::CookieSettings;
use crate::domain::cookie::signing::Signer;
use crate::domain::cross_origin::CrossOrigin;
use crate::domain::routes::Routes;
use crate::domain::session::identity::LimitPolicy;
use crate::domain::session::lifetime::Lifetimes;
use crate::domain::session::lookup::pointer_tokens;
use crate::domain::session_headers::SessionHeaders;
use crate::store::Times;
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
    /// Where forward-auth requests are answered (`None`: nowhere).
    pub forward_auth_path: Option<String>,
    pub access_log: AccessLog,
    pub users: UserPolicy,
}

/// Sessions per user: where the identity is, and the limit.
#[derive(Debug, Clone)]
pub struct UserPolicy {
    /// The JSON pointer of the identity in the session data.
    pub identity_pointer: String,
    /// The pointer's unescaped tokens, split once here rather than per
    /// write (`None`: not a pointer).
    pub identity_tokens: Option<Vec<String>>,
    /// Most live sessions per user; `None`: no limit.
    pub max_sessions: Option<usize>,
    pub on_limit: LimitPolicy,
}

impl UserPolicy {
    pub fn new(
        identity_pointer: String,
        max_sessions: Option<usize>,
        on_limit: LimitPolicy,
    ) -> Self {
        Self {
            identity_tokens: pointer_tokens(&identity_pointer),
            identity_pointer,
            max_sessions,
            on_limit,
        }
    }
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
    /// The identity key, when `auth.rotate_on_login` moves a session to a
    /// fresh id at login by itself.
    pub rotate_on: Option<String>,
    /// The idle and absolute timeouts new sessions get.
    pub lifetimes: Lifetimes,
    /// At most one store write per session this often to refresh its
    /// idle deadline.
    pub touch_interval: Duration,
    /// The longest "remember me" lifetime granted.
    pub remember_max: Duration,
}

impl CommitPolicy {
    /// The store expiry a session gets when it is written or touched now:
    /// the nearest of its lifetime (its remembered one, or `ttl`), its idle
    /// timeout and its absolute deadline.
    pub(super) fn extended_ttl(&self, times: Times) -> Duration {
        let mut ttl = times.remember.unwrap_or(self.ttl);
        for bound in [times.idle, times.absolute_in].into_iter().flatten() {
            ttl = ttl.min(bound);
        }
        ttl.max(Duration::from_millis(1))
    }

    /// Whether the session's idle deadline is due a refresh: it has an
    /// idle timeout, and the refresh would move its expiry by at least
    /// `touch_interval` (so at most one store write per session per
    /// interval, whatever the request rate).
    pub(super) fn touch_due(&self, times: Times) -> bool {
        let (Some(_), Some(left)) = (times.idle, times.expires_in) else {
            return false;
        };
        self.extended_ttl(times).saturating_sub(left) >= self.touch_interval
    }
}
