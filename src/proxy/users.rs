//! Sessions per user, around the commit phase and for the admin API.
//!
//! - Before the store commit: `destroy-all` ends the user's other sessions
//!   (first, so that a store failure leaves the current session, and its
//!   cookie, in place for a retry), and under `auth.session_limit_policy =
//!   "refuse"` a login that would give its user more than
//!   `auth.max_sessions_per_user` sessions is refused (409) with the store
//!   left unchanged: the operations are planned on a copy, as the store
//!   will, to learn which identity they give the session.
//! - After it: the user index follows what the commit did
//!   ([`index_changes`]); a session that joins a user's index makes the
//!   index be read (dropping stale members; on the memory store only when
//!   there is a limit to enforce, its sweep drops them otherwise) and,
//!   under `"evict-oldest"`, the user's oldest sessions past the limit
//!   destroyed. The index is not
//!   written atomically with the session: a failure is logged and healed
//!   by the next read.
//! - The admin operations: list a user's sessions by revoke handle, revoke
//!   one or all, count the live sessions.
//!
//! Every session ended here also ends its WebSocket tunnels on this
//! instance; other instances' tunnels notice within a second.

use std::net::IpAddr;

use http::HeaderValue;
use serde::Serialize;

use super::client::Client;
use super::context::Current;
use super::error::ProxyError;
use super::Proxy;
use crate::domain::session::identity::{
    identity_of, index_changes, Identity, IndexChange, LimitPolicy,
};
use crate::domain::session::ops::{self, Plan, SessionOp};
use crate::domain::session::{SessionData, SessionId};
use crate::metrics::SessionEvent;
use crate::store::users::{unix_millis, Member};
use crate::store::{AnyStore, Commit, Committed, Loaded, SessionStore, StoreError};

/// Who made the request, as the user index records it.
pub(super) struct Visitor<'a> {
    pub client: &'a Client,
    pub user_agent: Option<&'a HeaderValue>,
    /// A trusted proxy's `X-Forwarded-For`.
    pub forwarded_for: Option<&'a HeaderValue>,
}

impl Visitor<'_> {
    /// The client's address: the last `X-Forwarded-For` entry of a trusted
    /// proxy (the address that proxy saw), else the peer's.
    fn address(&self) -> IpAddr {
        let forwarded = self
            .forwarded_for
            .filter(|_| self.client.trusted)
            .and_then(|value| value.to_str().ok())
            .and_then(|list| list.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        forwarded.unwrap_or(self.client.addr)
    }

    /// The index entry of a session this visitor signs in now.
    fn member(&self) -> Member {
        let user_agent = self.user_agent.and_then(|v| v.to_str().ok());
        Member::now(self.address(), user_agent.unwrap_or(""))
    }
}

/// A session as the admin API shows it: never its id.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// The revoke handle: a keyed hash of the id.
    pub handle: String,
    /// When the identity appeared on the session, Unix ms.
    pub created: u64,
    /// Unknown without an idle timeout: always `null` for now.
    pub last_seen: Option<u64>,
    /// When the store drops the session, Unix ms.
    pub expires: Option<u64>,
    pub ip: String,
    pub user_agent: String,
}

/// The smallest user index (in members) that a login without a limit to
/// enforce cleans of stale members; see `evict_over_limit`.
const CLEAN_FROM: u64 = 64;

/// Whether a patch of `ops` names the top-level key of the identity at
/// `tokens` (every patch does, when the identity is the whole session).
fn names_top_key(ops: &[SessionOp], tokens: &[String]) -> bool {
    match tokens.first() {
        Some(top) => ops::names(ops, top),
        None => ops.iter().any(|op| matches!(op, SessionOp::Patch(_))),
    }
}

/// Whether a login that took a user's index to `size` members cleans it.
fn is_cleaning_size(size: u64) -> bool {
    size >= CLEAN_FROM && size.is_power_of_two()
}

impl Proxy {
    fn identity(&self, data: &SessionData) -> Option<Identity> {
        identity_of(data.map(), &self.users.identity_pointer)
    }

    /// Before the store commit: `destroy-all`'s other sessions, and the
    /// `refuse` limit. What needs the store is boxed: it is rare (a login,
    /// a log-out-everywhere), and inline its state would enlarge every
    /// request's future.
    pub(super) async fn before_commit(
        &self,
        current: Option<&Current>,
        ops: &[SessionOp],
    ) -> Result<(), ProxyError> {
        if let Some(current) = current {
            if ops.contains(&SessionOp::DestroyAll) {
                if let Some(identity) = self.identity(&current.data) {
                    let others = self.end_sessions_of(&identity, Some(&current.id));
                    let ended = Box::pin(others).await?;
                    tracing::info!(ended, "destroy-all: the user's other sessions ended");
                }
            }
        }
        if let Some((identity, limit)) = self.login_under_refuse(current, ops) {
            Box::pin(self.refuse_over_limit(current, &identity, limit)).await?;
        }
        Ok(())
    }

    /// Under `refuse`: the identity `ops` give the session when it did not
    /// have it, and the limit. Planned on a copy, as the store will plan.
    fn login_under_refuse(
        &self,
        current: Option<&Current>,
        ops: &[SessionOp],
    ) -> Option<(Identity, usize)> {
        let (Some(limit), LimitPolicy::Refuse) = (self.users.max_sessions, self.users.on_limit)
        else {
            return None;
        };
        let planned = ops::plan(
            current.map(|c| &*c.data),
            ops,
            self.policy.max_bytes,
            self.policy.rotate_on.as_deref(),
        );
        // A refused plan is the store's to report, as usual.
        let Ok(Plan::Write { data, .. }) = planned else {
            return None;
        };
        let after = self.identity(&data)?;
        let before = current.and_then(|c| self.identity(&c.data));
        (before.as_ref() != Some(&after)).then_some((after, limit))
    }

    /// `Err` when the user `after` has `limit` sessions besides `current`.
    async fn refuse_over_limit(
        &self,
        current: Option<&Current>,
        after: &Identity,
        limit: usize,
    ) -> Result<(), ProxyError> {
        let sessions = self.store.index_list(after).await?;
        let others = sessions
            .iter()
            .filter(|session| current.is_none_or(|c| c.id != session.id))
            .count();
        if others >= limit {
            return Err(ProxyError::SessionLimit(limit));
        }
        Ok(())
    }

    /// After the store commit: the index follows the session. Most
    /// commits change nothing of it; those that do are boxed (see
    /// [`Self::before_commit`]).
    pub(super) async fn after_commit(
        &self,
        committed: &Committed,
        current: Option<&Current>,
        ops: &[SessionOp],
        visitor: Visitor<'_>,
    ) {
        let changes = self.index_changes_of(committed, current, ops);
        if !changes.is_empty() {
            Box::pin(self.apply_index_changes(changes, visitor)).await;
        }
    }

    /// What `committed` (of `ops`) does to the index, the request having
    /// come with `current`.
    fn index_changes_of(
        &self,
        committed: &Committed,
        current: Option<&Current>,
        ops: &[SessionOp],
    ) -> Vec<IndexChange> {
        // A write that kept the id and the identity (most writes) changes
        // nothing. Told first from the operations: a merge patch changes
        // only the top-level keys it names, so one that does not name the
        // identity's cannot change it. (Should a concurrent request have
        // changed it meanwhile, that request updates the index itself.)
        // Else by comparing the values (their texts, most often), without
        // making identities and without building either map.
        if let (Committed::Saved { id, data, .. }, Some(current)) = (committed, current) {
            if *id == current.id {
                if let Some(tokens) = &self.users.identity_tokens {
                    if !names_top_key(ops, tokens) || data.same_at(&current.data, tokens) {
                        return Vec::new();
                    }
                }
            }
        }
        let after = match committed {
            Committed::Saved { id, data, .. } => Some((id, self.identity(data))),
            Committed::Destroyed => None,
            Committed::Unchanged | Committed::Vanished => return Vec::new(),
        };
        let before = current.map(|c| (&c.id, self.identity(&c.data)));
        index_changes(
            before
                .as_ref()
                .map(|(id, identity)| (*id, identity.as_ref())),
            after
                .as_ref()
                .map(|(id, identity)| (*id, identity.as_ref())),
        )
    }

    async fn apply_index_changes(&self, changes: Vec<IndexChange>, visitor: Visitor<'_>) {
        for change in changes {
            let updated = match change {
                IndexChange::Remove(identity, id) => self.store.index_remove(&identity, &id).await,
                IndexChange::Add(identity, id) => {
                    let member = visitor.member();
                    let ttl = self.policy.ttl;
                    match self.store.index_add(&identity, &id, &member, ttl).await {
                        Ok(size) => self.evict_over_limit(&identity, &id, size).await,
                        Err(error) => Err(error),
                    }
                }
                IndexChange::Move(identity, old, new) => {
                    let (member, ttl) = (visitor.member(), self.policy.ttl);
                    let moved = (&old, &new);
                    self.store.index_move(&identity, moved, &member, ttl).await
                }
            };
            if let Err(error) = updated {
                tracing::warn!(%error, "user index not updated; it heals when next read");
            }
        }
    }

    /// After a rolling session was extended: its user's index is made to
    /// live at least as long (Redis: one `PEXPIRE` when the index would
    /// end first; memory: nothing, its index has no expiry).
    pub(super) async fn after_touch(&self, current: &Current) {
        if let AnyStore::Memory(_) = self.store {
            return;
        }
        let Some(identity) = self.identity(&current.data) else {
            return;
        };
        if let Err(error) = self.store.index_outlive(&identity, self.policy.ttl).await {
            tracing::warn!(%error, "user index expiry not extended");
        }
    }

    /// Reads the user's index (dropping stale members, which bounds it)
    /// and, under `evict-oldest`, destroys the oldest sessions past the
    /// limit, never `keep` (the login that just happened).
    ///
    /// Without a limit to enforce, the index is read only to drop stale
    /// members, and a read costs O(the user's sessions): at every login,
    /// N logins of one user would cost O(N²). So the memory store's index
    /// is not read (its sweep drops stale members by itself), and Redis's
    /// (which has no sweep) only when a login has just taken it to a power
    /// of two from [`CLEAN_FROM`] on: O(1) per login on average, and a hash
    /// never more than twice the user's live sessions (or `CLEAN_FROM`).
    /// `size` is the index's size after the login's member was added
    /// (`None`: not known, the memory store).
    async fn evict_over_limit(
        &self,
        identity: &Identity,
        keep: &SessionId,
        size: Option<u64>,
    ) -> Result<(), StoreError> {
        let limit = match (self.users.max_sessions, self.users.on_limit) {
            (Some(limit), LimitPolicy::EvictOldest) => Some(limit),
            _ => None,
        };
        if limit.is_none() && !size.is_some_and(is_cleaning_size) {
            return Ok(());
        }
        let sessions = self.store.index_list(identity).await?;
        let Some(limit) = limit else {
            return Ok(());
        };
        let excess = sessions.len().saturating_sub(limit);
        let oldest = sessions.iter().filter(|s| s.id != *keep).take(excess);
        for session in oldest {
            self.end_session(identity, &session.id).await?;
        }
        if excess > 0 {
            tracing::info!(
                evicted = excess,
                "a login past auth.max_sessions_per_user ended the user's oldest sessions"
            );
        }
        Ok(())
    }

    /// Destroys `id`, takes it out of `identity`'s index and ends its
    /// tunnels here; whether it was live.
    async fn end_session(&self, identity: &Identity, id: &SessionId) -> Result<bool, StoreError> {
        let ops = [SessionOp::Destroy];
        let commit = Commit {
            current: Some(id),
            ops: &ops,
            fresh_id: None,
            ttl: self.policy.ttl,
            max_bytes: self.policy.max_bytes,
            rotate_on: None,
            lifetimes: self.policy.lifetimes,
        };
        let ended = matches!(self.store.commit(commit).await?, Committed::Destroyed);
        if let (true, Some(metrics)) = (ended, &self.observer.metrics) {
            metrics.session(SessionEvent::Destroyed);
        }
        self.tunnels.end(id);
        self.store.index_remove(identity, id).await?;
        Ok(ended)
    }

    /// Ends every session of `identity` but `except`; how many were live.
    async fn end_sessions_of(
        &self,
        identity: &Identity,
        except: Option<&SessionId>,
    ) -> Result<usize, StoreError> {
        let mut ended = 0;
        for session in self.store.index_list(identity).await? {
            if Some(&session.id) != except && self.end_session(identity, &session.id).await? {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// The admin API: `identity`'s live sessions, oldest first.
    pub async fn admin_sessions(
        &self,
        identity: &Identity,
    ) -> Result<Vec<SessionView>, StoreError> {
        let signer = self.cookie.signer();
        let sessions = self.store.index_list(identity).await?;
        let mut views = Vec::with_capacity(sessions.len());
        for session in sessions {
            let expires = session.expires.map(unix_millis);
            views.push(SessionView {
                handle: signer.handle(&session.id),
                created: session.member.created,
                last_seen: self.last_seen(&session.id, expires).await,
                expires,
                ip: session.member.ip.to_string(),
                user_agent: session.member.ua,
            });
        }
        Ok(views)
    }

    /// When a session was last used, to within `session.touch_interval`:
    /// with an idle timeout its expiry is its last use plus that timeout,
    /// unless the absolute deadline came first. `None` without one.
    async fn last_seen(&self, id: &SessionId, expires: Option<u64>) -> Option<u64> {
        let expires = expires?;
        let Ok(Loaded::Live(stored)) = self.store.load(id, false).await else {
            return None;
        };
        let idle = u64::try_from(stored.times.idle?.as_millis()).ok()?;
        let now = unix_millis(std::time::SystemTime::now());
        if let Some(absolute_in) = stored.times.absolute_in {
            let absolute = now.saturating_add(u64::try_from(absolute_in.as_millis()).ok()?);
            // The expiry is the absolute deadline: the last use is unknown.
            if absolute <= expires.saturating_add(1_000) {
                return None;
            }
        }
        Some(expires.saturating_sub(idle))
    }

    /// The admin API: ends the session of `identity` whose revoke handle
    /// is `handle`; `false` when there is none.
    pub async fn admin_revoke(
        &self,
        identity: &Identity,
        handle: &str,
    ) -> Result<bool, StoreError> {
        let signer = self.cookie.signer();
        let sessions = self.store.index_list(identity).await?;
        let Some(session) = sessions.iter().find(|s| signer.handle(&s.id) == handle) else {
            return Ok(false);
        };
        self.end_session(identity, &session.id).await?;
        Ok(true)
    }

    /// The admin API: ends every session of `identity`; how many.
    pub async fn admin_revoke_all(&self, identity: &Identity) -> Result<usize, StoreError> {
        self.end_sessions_of(identity, None).await
    }

    /// The admin API: live sessions in the store.
    pub async fn admin_count(&self) -> Result<u64, StoreError> {
        self.store.count_sessions().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_index_is_cleaned_when_a_login_doubles_it_from_64_members_on() {
        let cleaning: Vec<u64> = (0..=1100).filter(|&n| is_cleaning_size(n)).collect();
        assert_eq!(cleaning, [64, 128, 256, 512, 1024]);
    }

    fn address(trusted: bool, forwarded_for: Option<&'static str>) -> String {
        let client = Client::new("10.0.0.1".parse().unwrap(), trusted, false);
        let forwarded_for = forwarded_for.map(HeaderValue::from_static);
        Visitor {
            client: &client,
            user_agent: None,
            forwarded_for: forwarded_for.as_ref(),
        }
        .address()
        .to_string()
    }

    #[test]
    fn the_address_is_the_trusted_proxys_last_hop_or_the_peer() {
        assert_eq!(address(false, None), "10.0.0.1");
        assert_eq!(address(false, Some("203.0.113.7")), "10.0.0.1");
        assert_eq!(
            address(true, Some("198.51.100.1, 203.0.113.7")),
            "203.0.113.7"
        );
        assert_eq!(address(true, Some("2001:db8::1")), "2001:db8::1");
        assert_eq!(address(true, Some("1.1.1.1, not-an-address")), "10.0.0.1");
        assert_eq!(address(true, None), "10.0.0.1");
    }
}
