//! The Redis commands the store sends, each under the command timeout: the
//! compare-and-set scripts, and the server's own compare-and-set where it
//! has one (`SET ... IFEQ`). Both only compare bytes and write what they
//! are given: what a write means is decided in Rust by
//! [`crate::domain::session::ops::plan`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{ErrorKind, Script, ServerErrorKind, Value};

use super::conn::{describe, Connection};
use super::record::Decoded;
use super::RedisStore;
use crate::domain::session::SessionId;
use crate::store::StoreError;

/// Writes `ARGV[2]` with a TTL of `ARGV[3]` ms if `KEYS[1]` still holds
/// `ARGV[1]`; returns 1, or else what the key holds (nil if nothing).
/// Sent on a tracked connection, it reads the key again once written:
/// Redis ends a key's tracking when the key changes, and the read starts
/// it again for the connection, whose cache now holds what it wrote (see
/// `cache`). Elsewhere the read is harmless.
const SET_IF_UNCHANGED: &str = r"
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('EXISTS', KEYS[1])
return 1
";

/// The server's own compare-and-set, where it has one (Valkey 8.1, Redis
/// 8.4): `SET key value IFEQ expected GET PX ms` writes only if the key
/// holds `expected`, and answers what the key held (nil if nothing). So
/// the write succeeded exactly when the answer is `expected`, and
/// otherwise the answer is the record to plan again on. No script runs,
/// which costs the server a fraction of `SET_IF_UNCHANGED`.
const NATIVE_CAS_OPTIONS: [&str; 2] = ["IFEQ", "GET"];

/// One server only (two keys, two slots in a cluster): moves a session
/// from `KEYS[1]` to `KEYS[2]`, with the new value `ARGV[2]` and a TTL of
/// `ARGV[3]` ms, if `KEYS[1]` still holds `ARGV[1]`; returns 1, or else
/// what `KEYS[1]` holds. Sent on a tracked connection, it reads the new
/// key once written, so that Redis tracks it for the connection, whose
/// cache now holds it (as `SET_IF_UNCHANGED` does).
const MOVE_IF_UNCHANGED: &str = r"
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('EXISTS', KEYS[2])
return 1
";

/// Deletes `KEYS[1]` if it still holds `ARGV[1]`; returns 1, or else what
/// the key holds.
const DELETE_IF_UNCHANGED: &str = r"
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return current end
redis.call('DEL', KEYS[1])
return 1
";

/// The scripts, hashed once. Sent as `EVALSHA`; after `NOSCRIPT` (a
/// restarted Redis, a new cluster node) [`invoke`] loads them and sends
/// the call again.
pub(super) struct Scripts {
    set_if_unchanged: Script,
    move_if_unchanged: Script,
    delete_if_unchanged: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            set_if_unchanged: Script::new(SET_IF_UNCHANGED),
            move_if_unchanged: Script::new(MOVE_IF_UNCHANGED),
            delete_if_unchanged: Script::new(DELETE_IF_UNCHANGED),
        }
    }
}

/// What a compare-and-set script answered.
pub(super) enum Cas {
    Done,
    /// The key held something else, or nothing (`None`): plan again on it.
    Changed(Option<Vec<u8>>),
}

// Every command that writes a session key drops it from the client-side
// cache once Redis has answered, or failed to (a write that timed out may
// still have happened): see `RedisStore::forget`.

impl RedisStore {
    /// The connection of the calling worker thread.
    pub(super) fn connection(&self) -> Connection {
        self.connections[crate::util::worker::current() % self.connections.len()].clone()
    }

    /// Runs one Redis request under the command timeout. Every failure is
    /// `Unavailable`: the proxy answers 503 and leaves the cookie alone.
    pub(super) async fn run<T>(
        &self,
        what: &'static str,
        request: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let limit = self.shared.command_timeout;
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!(
                "redis {what}: {}",
                describe(&error)
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis {what}: no answer within {limit:?}"
            ))),
        }
    }

    /// [`Self::run`] for a request on a tracked connection: `None` when
    /// the connection turns out to be dropped (it broke before its
    /// tracking task noticed, which turns the cache off within
    /// `tracking::PING_EVERY`), so that the caller sends the request again
    /// on the plain connection, which reconnects by itself. Only for
    /// requests whose first attempt, if it landed all the same, the second
    /// one recognises as its own.
    async fn run_tracked<T>(
        &self,
        what: &'static str,
        request: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<Result<T, StoreError>> {
        let limit = self.shared.command_timeout;
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(value)) => Some(Ok(value)),
            Ok(Err(error)) if error.is_connection_dropped() || error.is_unrecoverable_error() => {
                None
            }
            Ok(Err(error)) => Some(Err(StoreError::Unavailable(format!(
                "redis {what}: {}",
                describe(&error)
            )))),
            Err(_) => Some(Err(StoreError::Unavailable(format!(
                "redis {what}: no answer within {limit:?}"
            )))),
        }
    }

    /// `PING`: whether Redis answers (a readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let command = redis::cmd("PING");
        self.run("PING", command.query_async::<String>(&mut connection))
            .await
            .map(drop)
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection();
        let mut command = redis::cmd("GET");
        command.arg(key);
        self.run("GET", command.query_async(&mut connection)).await
    }

    /// `GET` and `PTTL` in one round trip: the value, and its time to live
    /// in ms (`None` when it has none or is gone).
    pub(super) async fn get_with_ttl(
        &self,
        mut connection: Connection,
        key: &str,
    ) -> Result<(Option<Vec<u8>>, Option<u64>), StoreError> {
        let mut pipeline = redis::pipe();
        pipeline.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let (value, ttl): (Option<Vec<u8>>, i64) = self
            .run("GET+PTTL", pipeline.query_async(&mut connection))
            .await?;
        Ok((value, u64::try_from(ttl).ok()))
    }

    /// `SET key value PX ttl NX`: never overwrites. An existing key (a
    /// fresh 256-bit id already taken) is an error, unless it holds
    /// exactly `value`: then it is this write's own, made by an attempt
    /// on a connection that broke before it could answer (nobody else
    /// writes under a fresh random id).
    pub(super) async fn set_new(
        &self,
        key: &str,
        value: &[u8],
        millis: u64,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let mut command = redis::cmd("SET");
        command.arg(key).arg(value).arg("PX").arg(millis).arg("NX");
        let created = self
            .run(
                "SET",
                command.query_async::<Option<String>>(&mut connection),
            )
            .await;
        self.forget(key);
        if created?.is_some() || self.get(key).await?.as_deref() == Some(value) {
            return Ok(());
        }
        Err(StoreError::Unavailable(
            "a fresh session id was already taken in Redis".into(),
        ))
    }

    /// A new session's record, `SET NX` as [`Self::set_new`] does: on the
    /// worker's tracked connection while it tracks, with a `GET` of the key
    /// in the same round trip, so that Redis tracks the new key from that
    /// read on and what was written (`written`) is cached: the session's
    /// next requests (its first write included) need no read of Redis. It
    /// is cached only if the `GET` found the value written, since a change
    /// by another client between the two would go unreported (as for the
    /// native compare-and-set). If the tracked connection broke before its
    /// task noticed, the record is written on the plain connection instead.
    /// (A compare-and-set gets no such second attempt: a first one that
    /// landed could not be told from another client's identical write.)
    pub(super) async fn create(
        &self,
        id: &SessionId,
        value: &[u8],
        millis: u64,
        written: &Decoded,
    ) -> Result<(), StoreError> {
        let key = self.key(id);
        let Some((cache, guard, mut connection)) = self.tracked() else {
            return self.set_new(&key, value, millis).await;
        };
        let id = id.as_str();
        // Claimed before the write leaves, as a read does.
        let ticket = cache.reserve(id, guard);
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(millis);
        pipeline.arg("NX").cmd("GET").arg(&key);
        let request = pipeline.query_async::<(Option<String>, Option<Vec<u8>>)>(&mut connection);
        let Some(reply) = self.run_tracked("SET", request).await else {
            // A first attempt that landed all the same is recognised by
            // `set_new` as this one's.
            cache.forget(id);
            return self.set_new(&key, value, millis).await;
        };
        match (&reply, ticket) {
            (Ok((Some(_), Some(now))), Some(ticket)) if now[..] == *value => {
                let ttl = Some(Duration::from_millis(millis));
                cache.fill(id, ticket, value, written, ttl);
            }
            _ => cache.forget(id),
        }
        reply?.0.map(drop).ok_or_else(|| {
            StoreError::Unavailable("a fresh session id was already taken in Redis".into())
        })
    }

    /// `DEL`; whether the key existed.
    pub(super) async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let mut command = redis::cmd("DEL");
        command.arg(key);
        let deleted = self
            .run("DEL", command.query_async::<i64>(&mut connection))
            .await;
        self.forget(key);
        Ok(deleted? > 0)
    }

    /// `PEXPIRE`; whether the key exists.
    pub(super) async fn expire(&self, key: &str, millis: u64) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let mut command = redis::cmd("PEXPIRE");
        command.arg(key).arg(millis);
        let touched = self
            .run("PEXPIRE", command.query_async::<i64>(&mut connection))
            .await;
        self.forget(key);
        Ok(touched? == 1)
    }

    /// Writes `value` at `key` if it still holds `expected`: with the
    /// server's own compare-and-set when it has one, else the script. Sent
    /// on the worker's tracked connection while it tracks, and then what
    /// it wrote (`written`) is cached once Redis has answered, unless
    /// something dropped or claimed the key meanwhile (see `cache`).
    pub(super) async fn set_if_unchanged(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        millis: u64,
        id: &SessionId,
        written: &Decoded,
    ) -> Result<Cas, StoreError> {
        let script = &self.shared.scripts.set_if_unchanged;
        let args = (expected, value, millis);
        let Some((cache, guard, mut connection)) = self.tracked() else {
            let mut connection = self.connection();
            if let Some(outcome) = self.native_cas(&mut connection, key, args, false).await {
                self.forget(key);
                return outcome.map(|(outcome, _)| outcome);
            }
            return self.cas("write", script, &[key], args).await;
        };
        let id = id.as_str();
        // Claimed before the write leaves, as a read does.
        let ticket = cache.reserve(id, guard);
        let (outcome, cacheable) = match self.native_cas(&mut connection, key, args, true).await {
            Some(Ok((outcome, cacheable))) => (Ok(outcome), cacheable),
            Some(Err(error)) => (Err(error), false),
            None => {
                let reply = self
                    .run("write", invoke(script, &[key], args, &mut connection))
                    .await;
                // The script wrote and read the key again in one step.
                (cas_outcome("write", reply), true)
            }
        };
        match (&outcome, ticket) {
            (Ok(Cas::Done), Some(ticket)) if cacheable => {
                let ttl = Some(Duration::from_millis(millis));
                cache.fill(id, ticket, value, written, ttl);
            }
            _ => cache.forget(id),
        }
        outcome
    }

    /// Moves the session at `old` (holding `expected`) to `fresh` with
    /// `value`: one script on one server; on a cluster, `SET NX` of the new
    /// key, then delete-if-unchanged of the old one, undoing the new key if
    /// the old one changed (see the module documentation).
    ///
    /// On one server, the script is sent on the worker's tracked connection
    /// while it tracks, and the record written under `fresh` (`written`)
    /// is cached once Redis has answered, as a compare-and-set's is: a
    /// login's next requests need no read of Redis. If that connection
    /// broke before its task noticed, the move is sent again on the plain
    /// connection (as a new session's record is, see [`Self::create`]).
    pub(super) async fn move_if_unchanged(
        &self,
        (old, fresh): (&str, &SessionId),
        expected: &[u8],
        value: &[u8],
        millis: u64,
        written: &Decoded,
    ) -> Result<Cas, StoreError> {
        let scripts = &self.shared.scripts;
        let fresh_id = fresh.as_str();
        let fresh = &self.key(fresh);
        if let Connection::Single(_) = self.connections[0] {
            let args = (expected, value, millis);
            let keys = [old, fresh.as_str()];
            let Some((cache, guard, mut connection)) = self.tracked() else {
                return self
                    .cas("regenerate", &scripts.move_if_unchanged, &keys, args)
                    .await;
            };
            // Claimed before the move leaves, as a read does.
            let ticket = cache.reserve(fresh_id, guard);
            let call = invoke(&scripts.move_if_unchanged, &keys, args, &mut connection);
            let Some(reply) = self.run_tracked("regenerate", call).await else {
                cache.forget(fresh_id);
                return self.move_again(&keys, args).await;
            };
            self.forget(old);
            let outcome = cas_outcome("regenerate", reply);
            match (&outcome, ticket) {
                (Ok(Cas::Done), Some(ticket)) => {
                    let ttl = Some(Duration::from_millis(millis));
                    cache.fill(fresh_id, ticket, value, written, ttl);
                }
                _ => cache.forget(fresh_id),
            }
            return outcome;
        }
        self.set_new(fresh, value, millis).await?;
        let args = (expected, &b""[..], 0);
        let outcome = self
            .cas("regenerate", &scripts.delete_if_unchanged, &[old], args)
            .await?;
        if let Cas::Changed(_) = outcome {
            self.delete(fresh).await?;
        }
        Ok(outcome)
    }

    /// The move script on `keys` (old, fresh) with (expected, value, ttl),
    /// on the plain connection, after an attempt on a tracked connection
    /// that broke before it answered: if the old record is gone and the
    /// new key holds exactly what this move writes, that attempt landed
    /// (nobody else writes under a fresh random id) and the move is done.
    pub(super) async fn move_again(
        &self,
        keys: &[&str; 2],
        args: (&[u8], &[u8], u64),
    ) -> Result<Cas, StoreError> {
        let script = &self.shared.scripts.move_if_unchanged;
        let outcome = self.cas("regenerate", script, keys, args).await?;
        if let Cas::Changed(None) = outcome {
            if self.get(keys[1]).await?.as_deref() == Some(args.1) {
                return Ok(Cas::Done);
            }
        }
        Ok(outcome)
    }

    /// The server's own compare-and-set ([`NATIVE_CAS_OPTIONS`]) with
    /// (expected, value, ttl), when the server has it, and whether what it
    /// wrote may be cached. On a tracked connection a `GET` of the key
    /// follows in the same round trip: it starts the key's tracking again
    /// (a change ends it), and tells whether the key still held the value
    /// written once tracked (see [`native_outcome`]). `None` when it is
    /// off, or when the server refuses it (replaced by one without
    /// `IFEQ`): then it is off from here on, and the caller runs the
    /// script.
    async fn native_cas(
        &self,
        connection: &mut Connection,
        key: &str,
        (expected, value, millis): (&[u8], &[u8], u64),
        tracked: bool,
    ) -> Option<Result<(Cas, bool), StoreError>> {
        if !self.shared.native_cas.load(Ordering::Relaxed) {
            return None;
        }
        let mut set = redis::cmd("SET");
        set.arg(key)
            .arg(value)
            .arg(NATIVE_CAS_OPTIONS[0])
            .arg(expected);
        set.arg(NATIVE_CAS_OPTIONS[1]).arg("PX").arg(millis);
        let request = async {
            if !tracked {
                let held = set.query_async::<Option<Vec<u8>>>(connection).await?;
                return Ok((held, None));
            }
            let mut pipeline = redis::pipe();
            pipeline.add_command(set).cmd("GET").arg(key);
            let (held, now) = pipeline.query_async(connection).await?;
            Ok((held, Some(now)))
        };
        let limit = self.shared.command_timeout;
        let (held, now) = match tokio::time::timeout(limit, request).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(error)) if refused(&error) => {
                self.shared.native_cas.store(false, Ordering::Relaxed);
                tracing::warn!(
                    error = %describe(&error),
                    "Redis refused SET IFEQ; session writes use the compare-and-set script from now on"
                );
                return None;
            }
            Ok(Err(error)) => {
                return Some(Err(StoreError::Unavailable(format!(
                    "redis write: {}",
                    describe(&error)
                ))))
            }
            Err(_) => {
                return Some(Err(StoreError::Unavailable(format!(
                    "redis write: no answer within {limit:?}"
                ))))
            }
        };
        Some(Ok(native_outcome(expected, value, held, now)))
    }

    async fn cas(
        &self,
        what: &'static str,
        script: &Script,
        keys: &[&str],
        args: (&[u8], &[u8], u64),
    ) -> Result<Cas, StoreError> {
        let mut connection = self.connection();
        let reply = self
            .run(what, invoke(script, keys, args, &mut connection))
            .await;
        for key in keys {
            self.forget(key);
        }
        cas_outcome(what, reply)
    }
}

/// Runs a compare-and-set script on `keys` with (expected, value, ttl):
/// `EVALSHA`, built in one buffer, and after `NOSCRIPT` (a restarted
/// Redis, a flushed script cache) `SCRIPT LOAD` and `EVALSHA` again.
async fn invoke(
    script: &Script,
    keys: &[&str],
    (expected, value, millis): (&[u8], &[u8], u64),
    connection: &mut Connection,
) -> redis::RedisResult<Value> {
    let hash = script.get_hash();
    let bytes = keys.iter().map(|key| key.len()).sum::<usize>()
        + expected.len()
        + value.len()
        + hash.len()
        + 32;
    let mut call = redis::Cmd::with_capacity(3 + keys.len() + 3, bytes);
    call.arg("EVALSHA").arg(hash).arg(keys.len());
    for key in keys {
        call.arg(*key);
    }
    call.arg(expected).arg(value).arg(millis);
    match call.query_async(connection).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(connection).await?;
            call.query_async(connection).await
        }
        answer => answer,
    }
}

/// What the native compare-and-set's replies mean: `held`, what the key
/// held when the `SET` ran (the write happened exactly when that is
/// `expected`), and on a tracked connection `now`, what the `GET` after it
/// found. The written value may be cached only if the `GET` found it: the
/// key is tracked again from that read on, but a write by another client
/// between the two went unreported, and its value must not be hidden.
/// (The script writes and reads again in one step, so its writes are
/// always cacheable.)
fn native_outcome(
    expected: &[u8],
    value: &[u8],
    held: Option<Vec<u8>>,
    now: Option<Option<Vec<u8>>>,
) -> (Cas, bool) {
    if held.as_deref() != Some(expected) {
        return (Cas::Changed(held), false);
    }
    let cacheable = now.is_some_and(|now| now.as_deref() == Some(value));
    (Cas::Done, cacheable)
}

/// Whether the server answered `SET ... IFEQ` with an error of its own
/// (a syntax error, or a transaction it aborted for one): it has no such
/// option, and wrote nothing.
fn refused(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(ServerErrorKind::ResponseError | ServerErrorKind::ExecAbort)
    ) && matches!(error.code(), Some("ERR" | "EXECABORT"))
}

/// Whether `connection`'s server has the native compare-and-set: asked
/// with `SET` of a random key under the prefix, `IFEQ` a random value,
/// which writes nothing (the key does not exist). A server without it
/// answers a syntax error.
pub(super) async fn probe_native_cas(
    mut connection: Connection,
    prefix: &str,
    limit: Duration,
) -> bool {
    let key = format!("{prefix}cloakroom-probe:{}", SessionId::generate().as_str());
    let unlikely = SessionId::generate();
    let mut set = redis::cmd("SET");
    set.arg(&key).arg("probe").arg(NATIVE_CAS_OPTIONS[0]);
    set.arg(unlikely.as_str()).arg(NATIVE_CAS_OPTIONS[1]);
    let answer = tokio::time::timeout(limit, set.query_async::<Value>(&mut connection)).await;
    matches!(answer, Ok(Ok(Value::Nil)))
}

/// What a compare-and-set script's reply means.
fn cas_outcome(what: &'static str, reply: Result<Value, StoreError>) -> Result<Cas, StoreError> {
    match reply? {
        Value::Int(1) => Ok(Cas::Done),
        Value::Nil => Ok(Cas::Changed(None)),
        Value::BulkString(current) => Ok(Cas::Changed(Some(current))),
        _ => Err(StoreError::Unavailable(format!(
            "redis {what}: unexpected reply from the script"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_write_is_cached_only_if_the_read_after_it_found_it() {
        let (old, new, other) = (&b"old"[..], &b"new"[..], &b"other"[..]);
        let done = |held: &[u8], now: Option<Option<&[u8]>>| {
            let now = now.map(|now| now.map(<[u8]>::to_vec));
            native_outcome(old, new, Some(held.to_vec()), now)
        };
        assert!(matches!(done(old, Some(Some(new))), (Cas::Done, true)));
        // Another client wrote, or deleted, between the SET and the GET.
        assert!(matches!(done(old, Some(Some(other))), (Cas::Done, false)));
        assert!(matches!(done(old, Some(None)), (Cas::Done, false)));
        // Untracked: nothing is cached from it anyway.
        assert!(matches!(done(old, None), (Cas::Done, false)));
        // The key held something else: plan again on it; or nothing.
        match native_outcome(old, new, Some(other.to_vec()), Some(Some(other.to_vec()))) {
            (Cas::Changed(Some(held)), false) => assert_eq!(held, other),
            _ => panic!("a changed record is a conflict"),
        }
        assert!(matches!(
            native_outcome(old, new, None, Some(None)),
            (Cas::Changed(None), false)
        ));
    }
}
