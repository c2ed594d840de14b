//! Which WebSocket tunnels belong to which session, so that a session's
//! end ends them: a logout (`destroy`) closes its tunnels at once, and a
//! tunnel whose session expired or was ended elsewhere notices within a
//! second (each tunnel looks its session up once a second).
//!
//! Only this instance's tunnels are closed at once: another instance on
//! the same store notices at its next lookup, within a second too, since
//! the session is gone from the shared store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::session::SessionId;
use crate::store::{AnyStore, Loaded, SessionStore};

/// How often a tunnel looks up its session.
const LOOKUP_EVERY: Duration = Duration::from_secs(1);

/// Each session's tunnels: a key per tunnel, and how to close it.
type BySession = HashMap<String, Vec<(u64, Arc<Notify>)>>;

/// The open tunnels by session. Why a mutex: it is taken when a tunnel
/// opens or closes and when a session is destroyed, never per request, and
/// never held across an `.await`.
#[derive(Default)]
pub(super) struct Tunnels {
    by_session: Mutex<BySession>,
    next: AtomicU64,
    /// Open tunnels, with a session or without.
    open: AtomicUsize,
}

/// Counts one tunnel as open until dropped.
pub(super) struct OpenTunnel(Arc<Tunnels>);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A tunnel's tie to its session; it unregisters itself when dropped.
pub(super) struct SessionLink {
    id: SessionId,
    key: u64,
    ended: Arc<Notify>,
    store: AnyStore,
    tunnels: Weak<Tunnels>,
}

impl Tunnels {
    /// Ties a tunnel opening now to the session `id`.
    pub fn link(self: &Arc<Self>, id: SessionId, store: AnyStore) -> SessionLink {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let ended = Arc::new(Notify::new());
        self.lock()
            .entry(id.as_str().to_owned())
            .or_default()
            .push((key, ended.clone()));
        SessionLink {
            id,
            key,
            ended,
            store,
            tunnels: Arc::downgrade(self),
        }
    }

    /// A tunnel opening now, counted until the guard is dropped.
    pub fn opened(self: &Arc<Self>) -> OpenTunnel {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenTunnel(self.clone())
    }

    /// Tunnels open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The session `id` ended here: its tunnels close now.
    pub fn end(&self, id: &SessionId) {
        let ended = self.lock().remove(id.as_str()).unwrap_or_default();
        for (_, notify) in ended {
            // A permit if the tunnel is not waiting right now.
            notify.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BySession> {
        self.by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionLink {
    /// Resolves once the session has ended: destroyed here, or no longer
    /// found in the store. A store that cannot answer ends nothing.
    pub async fn ended(&self) {
        let mut lookups = tokio::time::interval(LOOKUP_EVERY);
        lookups.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        lookups.tick().await;
        loop {
            tokio::select! {
                () = self.ended.notified() => return,
                _ = lookups.tick() => {
                    if let Ok(Loaded::Missing | Loaded::Expired) = self.store.load(&self.id, false).await {
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for SessionLink {
    fn drop(&mut self) {
        let Some(tunnels) = self.tunnels.upgrade() else {
            return;
        };
        let mut by_session = tunnels.lock();
        if let Some(links) = by_session.get_mut(self.id.as_str()) {
            links.retain(|(key, _)| *key != self.key);
            if links.is_empty() {
                by_session.remove(self.id.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{memory::Clock, MemoryStore};

    #[tokio::test(start_paused = true)]
    async fn ending_a_session_ends_its_tunnels_and_links_unregister() {
        let store = AnyStore::Memory(MemoryStore::with_clock(
            10,
            Duration::from_secs(3600),
            Clock::Tokio,
        ));
        let tunnels = Arc::new(Tunnels::default());
        let id = SessionId::generate();
        let link = tunnels.link(id.clone(), store.clone());
        // The session is not in the store either: the first lookup ends it.
        tokio::time::timeout(Duration::from_millis(1500), link.ended())
            .await
            .expect("a session missing from the store ends the tunnel");
        let other = tunnels.link(id.clone(), store);
        assert_eq!(tunnels.lock()[id.as_str()].len(), 2);
        tunnels.end(&id);
        tokio::time::timeout(Duration::from_millis(10), other.ended())
            .await
            .expect("ended at once");
        drop((link, other));
        assert!(tunnels.lock().is_empty());
    }
}
