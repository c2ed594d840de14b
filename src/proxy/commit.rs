//! The commit phase: `Set-Session` values in, store write and cookie
//! decision out. The store write completes before the response head is
//! released, so a redirect that follows a login never races the save.
//!
//! When a `Set-Cookie` is sent (express-session's rules):
//! - the session is new or moved to a fresh id: the new cookie;
//! - the session was destroyed: an expired cookie;
//! - the session was written and the cookie has a max age, or `rolling` is
//!   on: a refreshed cookie (and with `rolling`, the store's expiry too).

use http::header::{self, HeaderName, HeaderValue};
use serde_json::Map;

use super::context::{Context, Current, SessionOutcome};
use super::error::ProxyError;
use super::users::Visitor;
use super::{upgrade, Proxy};
use crate::domain::session::ops::{self, SessionOp};
use crate::domain::{caching, headers};
use crate::metrics::StoreOp;
use crate::store::{Commit, Committed, SessionStore, StoreError};

const CLEAR_SITE_DATA: HeaderName = HeaderName::from_static("clear-site-data");
const CLEAR_COOKIES: HeaderValue = HeaderValue::from_static("\"cookies\"");

/// What the commit phase does to the session cookie.
enum CookieUpdate {
    /// A new or refreshed cookie.
    Issued(HeaderValue),
    /// The session ended: an expired cookie.
    Cleared(HeaderValue),
}

/// What the commit phase has left to do once the head is cleaned: apply
/// these `Set-Session` values (none: a touch or an unasked write).
pub(super) struct PendingCommit {
    set_session: Vec<HeaderValue>,
    touch: bool,
}

impl Proxy {
    /// The commit phase's first step, on the upstream response's head:
    /// `Set-Session` taken out, hop-by-hop headers removed (but an accepted
    /// WebSocket handshake's own), and what is left to apply, if anything.
    /// Synchronous: most responses end here, and the asynchronous step
    /// ([`Self::commit`]) is then never built, nor its future moved into
    /// the request's.
    #[inline]
    pub(super) fn commit_head(
        &self,
        parts: &mut http::response::Parts,
        tunnel: bool,
        context: &Context<'_>,
    ) -> Option<PendingCommit> {
        let set_session = headers::take_set_session(&mut parts.headers);
        // Only Cloakroom issues its cookie.
        if self.cookie.strip_set_by_upstream(&mut parts.headers) {
            tracing::warn!(path = %context.target.as_ref().map_or("", |t| t.path()), "the upstream set the session cookie itself; dropped");
        }
        headers::remove_hop_by_hop(&mut parts.headers);
        if tunnel {
            upgrade::restore(&mut parts.headers);
        }
        // The idle deadline of an active session, refreshed at most once
        // per `touch_interval`.
        let touch = context
            .session
            .as_ref()
            .is_some_and(|current| self.policy.touch_due(current.times));
        if set_session.is_empty() && !touch && !self.policy.acts_unasked(context.session.is_some())
        {
            // Nothing to apply: most requests end here.
            return None;
        }
        Some(PendingCommit { set_session, touch })
    }

    /// The commit phase's second step, when [`Self::commit_head`] left
    /// something to apply: the store written and the session cookie set or
    /// cleared.
    pub(super) async fn commit(
        &self,
        parts: &mut http::response::Parts,
        pending: &PendingCommit,
        context: &mut Context<'_>,
    ) -> Result<(), ProxyError> {
        let secure = self.cookie.secure_for(context.https);
        let set_cookie = self
            .apply(&pending.set_session, secure, pending.touch, context)
            .await
            .inspect_err(|error| {
                // A login over the per-user limit is policy, not a fault:
                // the log phase records it as a refused request.
                if let ProxyError::SessionLimit(_) = error {
                    return;
                }
                tracing::error!(path = %context.target.as_ref().map_or("", |t| t.path()), %error, "Set-Session refused; store left unchanged");
            })?;
        match set_cookie {
            Some(CookieUpdate::Issued(value)) => {
                parts.headers.append(header::SET_COOKIE, value);
                caching::make_private(&mut parts.headers);
            }
            Some(CookieUpdate::Cleared(value)) => {
                parts.headers.append(header::SET_COOKIE, value);
                caching::make_unstorable(&mut parts.headers);
                if self.policy.clear_site_data {
                    parts.headers.insert(CLEAR_SITE_DATA, CLEAR_COOKIES);
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Applies the upstream's `Set-Session` values and returns the
    /// `Set-Cookie` to send, if any. Every value is parsed before anything
    /// is written: one bad value leaves the store untouched.
    #[inline]
    async fn apply(
        &self,
        values: &[HeaderValue],
        secure: bool,
        touch: bool,
        context: &mut Context<'_>,
    ) -> Result<Option<CookieUpdate>, ProxyError> {
        let policy = &self.policy;
        let current = context.session.as_ref();
        let mut parsed = values
            .iter()
            .map(|v| ops::parse(v.as_bytes(), policy.max_set_session_bytes))
            .map(|op| op.map(|op| self.bounded(op)))
            .collect::<Result<Vec<SessionOp>, _>>()?;
        if parsed.is_empty() {
            match current {
                Some(current) if policy.rolling || touch => {
                    return self.roll(current, secure).await
                }
                Some(_) => return Ok(None),
                None if policy.save_uninitialized => {
                    parsed.push(SessionOp::Patch(Map::new().into()))
                }
                None => return Ok(None),
            }
        }
        // The user index's checks and destroy-all's other sessions, before
        // anything of this session is written (see `users`).
        if let Err(error) = self.before_commit(current, &parsed).await {
            if let ProxyError::Store(_) = error {
                context.outcome = SessionOutcome::StoreError;
            }
            return Err(error);
        }
        let commit = Commit {
            current: current.map(|c| &c.id),
            ops: &parsed,
            fresh_id: None,
            ttl: policy.ttl,
            max_bytes: policy.max_bytes,
            rotate_on: policy.rotate_on.as_deref(),
            lifetimes: policy.lifetimes,
        };
        let signer = self.cookie.signer();
        let started = self.observer.store_started();
        let committed = self.store.commit(commit).await;
        self.observer.store_done(
            StoreOp::Commit,
            started,
            !matches!(committed, Err(StoreError::Unavailable(_))),
        );
        let committed = match committed {
            Ok(committed) => committed,
            // Only `save_uninitialized`'s empty session for an anonymous
            // visitor: a public request is served without it while the
            // store is down, as it would be with the option off.
            Err(StoreError::Unavailable(reason)) if current.is_none() && values.is_empty() => {
                tracing::warn!(%reason, "session store unavailable: visitor served without a new session");
                return Ok(None);
            }
            Err(error) => {
                context.outcome = SessionOutcome::StoreError;
                return Err(error.into());
            }
        };
        let visitor = Visitor {
            client: context.client,
            user_agent: context.user_agent.as_ref(),
            forwarded_for: context.forwarded_for.as_ref(),
        };
        self.after_commit(&committed, current, &parsed, visitor)
            .await;
        Ok(match committed {
            Committed::Unchanged => match current {
                Some(current) if policy.rolling || touch => {
                    return self.roll(current, secure).await
                }
                _ => None,
            },
            Committed::Saved { id, remember, .. } => {
                let moved = current.is_none_or(|c| c.id != id);
                context.outcome = match current {
                    None => SessionOutcome::Created,
                    Some(_) if moved => SessionOutcome::Rotated,
                    Some(_) => SessionOutcome::Saved,
                };
                if moved {
                    tracing::debug!(session = %signer.log_tag(&id), "session saved under a new id");
                    if self.observer.access {
                        context.saved_as = Some(id.clone());
                    }
                }
                let remembered = remember.is_some()
                    && parsed.iter().any(|op| matches!(op, SessionOp::Remember(_)));
                // The request's cookie's signature, for the same id.
                let known = current
                    .filter(|_| !moved)
                    .and_then(|c| c.signature.as_ref());
                (moved || policy.rolling || policy.refresh_on_write || remembered).then(|| {
                    CookieUpdate::Issued(self.cookie.issue_for(&id, known, secure, remember))
                })
            }
            Committed::Destroyed => {
                context.outcome = SessionOutcome::Destroyed;
                if let Some(current) = current {
                    // Its WebSocket tunnels on this instance close now.
                    self.tunnels.end(&current.id);
                }
                Some(CookieUpdate::Cleared(self.cookie.clear(secure)))
            }
            Committed::Vanished => {
                if let Some(current) = current {
                    tracing::info!(
                        session = %signer.log_tag(&current.id),
                        "session ended by a concurrent request; its Set-Session was dropped"
                    );
                }
                parsed
                    .iter()
                    .any(|op| matches!(op, SessionOp::Destroy | SessionOp::DestroyAll))
                    .then(|| CookieUpdate::Cleared(self.cookie.clear(secure)))
            }
        })
    }

    /// `rolling`, or an idle deadline due a refresh: extend the session's
    /// expiry in the store (its data untouched); with `rolling`, re-send
    /// the cookie too.
    #[inline]
    async fn roll(
        &self,
        current: &Current,
        secure: bool,
    ) -> Result<Option<CookieUpdate>, ProxyError> {
        let started = self.observer.store_started();
        let ttl = self.policy.extended_ttl(current.times);
        let touched = self.store.touch(&current.id, ttl).await;
        self.observer
            .store_done(StoreOp::Touch, started, touched.is_ok());
        let alive = touched?;
        if alive {
            self.after_touch(current).await;
        }
        Ok((alive && self.policy.rolling).then(|| {
            CookieUpdate::Issued(self.cookie.issue_for(
                &current.id,
                current.signature.as_ref(),
                secure,
                current.times.remember,
            ))
        }))
    }

    /// A `remember=` beyond `session.remember_max` is granted the maximum.
    fn bounded(&self, op: SessionOp) -> SessionOp {
        match op {
            SessionOp::Remember(lifetime) if lifetime > self.policy.remember_max => {
                tracing::warn!(
                    asked = ?lifetime,
                    granted = ?self.policy.remember_max,
                    "Set-Session remember= beyond session.remember_max; the maximum is granted"
                );
                SessionOp::Remember(self.policy.remember_max)
            }
            other => other,
        }
    }
}
