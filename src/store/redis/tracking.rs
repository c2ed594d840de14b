//! The tracked connections that keep the client-side cache
//! ([`super::cache`]) correct: one RESP3 connection per worker thread, with
//! `CLIENT TRACKING ON NOLOOP`, on which the worker's cached reads and its
//! compare-and-sets are sent. Redis remembers the keys each one reads and
//! sends it an invalidation at the first change to one of them made on any
//! other connection, and at its expiry or eviction.
//!
//! A task on the worker's own runtime owns it (so its I/O stays on that
//! thread, as the worker's other Redis connection does). Its records are
//! served only while the task knows the connection is live: after `CLIENT
//! TRACKING` answered, and until the connection reports its end, a `PING`
//! (every [`PING_EVERY`]) goes unanswered, or the push channel closes. Then
//! its records are dropped and the worker reads through its plain
//! connection, and the task connects again, backing off from [`RETRY_MIN`]
//! to [`RETRY_MAX`]. A server that refuses tracking (older than Redis 6, or
//! a proxy in front of it) leaves the cache off, with one warning.
//!
//! Invalidations are applied by the task that reads the connection, as it
//! reads them ([`Invalidations`]): one that reached the worker before a
//! request did is applied before that request reads the cache, even when
//! a busy worker takes both in the same turn of its loop.
//!
//! The task ends when the store is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::cache::{Guard, SessionCache};
use super::conn::describe;

/// How often the tracking connection is checked with `PING`.
pub(super) const PING_EVERY: Duration = Duration::from_secs(1);
/// The tracked connections' name in `CLIENT LIST`.
pub const CONNECTION_NAME: &str = "cloakroom-tracking";
/// Back-off between connection attempts.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What a task needs to (re)connect.
#[derive(Clone)]
pub(super) struct Tracker {
    pub client: redis::Client,
    pub prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl Tracker {
    /// The task that keeps tracked connection `guard` of `cache`: to be run
    /// on the worker whose requests use it. It holds the cache weakly and
    /// ends once the store is gone.
    pub(super) fn task(
        self,
        cache: &Arc<SessionCache>,
        guard: Guard,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let cache = Arc::downgrade(cache);
        async move { self.run(cache, guard).await }
    }
}

/// Why a tracking connection ended.
enum Ended {
    /// The store is gone: stop.
    StoreDropped,
    /// The connection failed; try again.
    Lost(String),
}

impl Tracker {
    async fn run(self, cache: Weak<SessionCache>, guard: Guard) {
        let mut delay = RETRY_MIN;
        let mut warned = false;
        loop {
            match self.track(&cache, guard).await {
                Ended::StoreDropped => return,
                Ended::Lost(reason) => {
                    let Some(live) = cache.upgrade() else { return };
                    let was_on = live.connection(guard).is_some();
                    live.turn_off(guard);
                    drop(live);
                    if was_on {
                        delay = RETRY_MIN;
                        tracing::warn!(%reason, worker = guard, "Redis cache: tracking lost; this worker reads Redis until it is back");
                    } else if !warned {
                        tracing::warn!(%reason, worker = guard, "Redis cache: tracking unavailable; this worker reads Redis until it is");
                    }
                    warned = true;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// One tracked connection, from connecting to its end.
    async fn track(&self, cache: &Weak<SessionCache>, guard: Guard) -> Ended {
        let (rest, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let applier = Invalidations {
            cache: cache.clone(),
            guard,
            prefix: self.prefix.clone(),
            rest,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // Every command on it runs under the store's own command
            // timeout (`ask`, `RedisStore::run`): a second timer per
            // command would cost a timer wheel entry and nothing more.
            .set_response_timeout(None)
            .set_push_sender(applier);
        let deadline = self.connect_timeout + self.command_timeout;
        let connecting = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let mut connection = match tokio::time::timeout(deadline, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Ended::Lost(describe(&error)),
            Err(_) => return Ended::Lost(format!("no connection within {deadline:?}")),
        };
        // Named, so that an operator finds it in `CLIENT LIST`.
        let mut name = redis::cmd("CLIENT");
        name.arg("SETNAME").arg(CONNECTION_NAME);
        if let Err(reason) = self.ask(&mut connection, &name).await {
            return Ended::Lost(reason);
        }
        let mut tracking = redis::cmd("CLIENT");
        // Its own writes (the compare-and-sets that fill the cache) send it
        // no invalidation; everyone else's do.
        tracking.arg("TRACKING").arg("ON").arg("NOLOOP");
        if let Err(reason) = self.ask(&mut connection, &tracking).await {
            return Ended::Lost(reason);
        }
        match cache.upgrade() {
            Some(cache) => {
                cache.turn_on(guard, Some(connection.clone()));
                tracing::info!(
                    worker = guard,
                    "Redis cache: tracking on; session records are cached"
                );
            }
            None => return Ended::StoreDropped,
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else {
                        return Ended::Lost("the push channel closed".into());
                    };
                    if push.kind == PushKind::Disconnection {
                        return Ended::Lost("the connection closed".into());
                    }
                }
                _ = ping.tick() => {
                    if cache.strong_count() == 0 {
                        return Ended::StoreDropped;
                    }
                    if let Err(reason) = self.ask(&mut connection, &redis::cmd("PING")).await {
                        return Ended::Lost(reason);
                    }
                }
            }
        }
    }

    /// Sends `command` and waits for its answer, under the command timeout.
    async fn ask(
        &self,
        connection: &mut MultiplexedConnection,
        command: &redis::Cmd,
    ) -> Result<(), String> {
        let limit = self.command_timeout;
        match tokio::time::timeout(limit, command.query_async::<Value>(connection)).await {
            Ok(Ok(Value::ServerError(error))) => Err(error.to_string()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(describe(&error)),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }
}

/// Applies a tracked connection's invalidations as the connection reads
/// them, in the task that reads its socket: a record is dropped before any
/// answer read after the invalidation is delivered, and before a request
/// woken in the same turn of the worker's loop reads the cache. (Handed to
/// a task of its own, it would be dropped only after such a request had
/// been served the record.) Every other push goes to the tracking task.
struct Invalidations {
    cache: Weak<SessionCache>,
    guard: Guard,
    prefix: String,
    rest: mpsc::UnboundedSender<PushInfo>,
}

impl AsyncPushSender for Invalidations {
    fn send(&self, push: PushInfo) -> Result<(), SendError> {
        if push.kind != PushKind::Invalidate {
            return self.rest.send(push).map_err(|_| SendError);
        }
        let Some(cache) = self.cache.upgrade() else {
            return Err(SendError);
        };
        // The keys changed, or nil when the whole database was flushed.
        match push.data.into_iter().next() {
            Some(Value::Array(keys) | Value::Set(keys)) => {
                for key in keys {
                    let bytes = match &key {
                        Value::BulkString(bytes) => bytes.as_slice(),
                        Value::SimpleString(text) => text.as_bytes(),
                        _ => continue,
                    };
                    let id = bytes
                        .strip_prefix(self.prefix.as_bytes())
                        .and_then(|id| std::str::from_utf8(id).ok());
                    if let Some(id) = id {
                        cache.invalidate(id, self.guard);
                    }
                }
            }
            Some(_) => cache.clear(),
            None => {}
        }
        Ok(())
    }
}
