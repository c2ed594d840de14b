//! The Redis store's user index: a hash `<prefix>user:<identity>` per
//! user, whose fields are session ids and whose values are a [`Member`]
//! as JSON (see [`crate::store::users`]).
//!
//! One key per user, so every command touches one slot, on a cluster too.
//! Adding a member sets the hash's TTL to at least the new session's, so
//! the hash outlives every session it lists and an abandoned one expires
//! by itself. Reading the hash (in `HSCAN` rounds) checks each member's
//! session (`PTTL`) and drops those that are gone, so a user's hash holds at most their live
//! sessions plus those that ended since it was last read. Adding a member
//! tells the hash's size, by which the proxy decides when to read it.

use std::time::{Duration, SystemTime};

use redis::Script;

use super::RedisStore;
use crate::domain::session::identity::Identity;
use crate::domain::session::SessionId;
use crate::store::users::{IndexedSession, Member};
use crate::store::StoreError;

/// Sets field `ARGV[1]` of `KEYS[1]` to `ARGV[2]` and makes the key live at
/// least `ARGV[3]` ms; returns how many fields the key has then.
const ADD_MEMBER: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('HLEN', KEYS[1])
";

/// Moves field `ARGV[1]` of `KEYS[1]` to `ARGV[2]`, keeping its value (or
/// `ARGV[3]` when there is none), and makes the key live at least
/// `ARGV[4]` ms.
const MOVE_MEMBER: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then value = ARGV[3] end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], value)
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
";

/// Makes `KEYS[1]`, if it exists, live at least `ARGV[1]` ms.
const OUTLIVE: &str = r"
local ttl = redis.call('PTTL', KEYS[1])
if ttl ~= -2 and ttl < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
";

/// A hash field and its value, as `HSCAN` gives them.
type Field = (Vec<u8>, Vec<u8>);

/// The infix of the index keys: `<prefix>user:<identity>`. No session key
/// can look like one: session ids never hold a `:`.
const USER_INFIX: &str = "user:";

/// Keys asked for per `SCAN` round when counting, and fields per `HSCAN`
/// round when reading an index.
const SCAN_COUNT: u32 = 1000;

impl RedisStore {
    /// The index key of `identity`.
    pub fn user_key(&self, identity: &Identity) -> String {
        format!("{}{USER_INFIX}{}", self.shared.prefix, identity.as_str())
    }

    pub(crate) async fn index_add(
        &self,
        identity: &Identity,
        id: &SessionId,
        member: &Member,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let script = Script::new(ADD_MEMBER);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.user_key(identity))
            .arg(id.as_str())
            .arg(member.encode())
            .arg(millis);
        let mut connection = self.connection();
        let size: i64 = self
            .run("index add", invocation.invoke_async(&mut connection))
            .await?;
        Ok(u64::try_from(size).unwrap_or(0))
    }

    pub(crate) async fn index_move(
        &self,
        identity: &Identity,
        (old, new): (&SessionId, &SessionId),
        member: &Member,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let script = Script::new(MOVE_MEMBER);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.user_key(identity))
            .arg(old.as_str())
            .arg(new.as_str())
            .arg(member.encode())
            .arg(millis);
        let mut connection = self.connection();
        let _: i64 = self
            .run("index move", invocation.invoke_async(&mut connection))
            .await?;
        Ok(())
    }

    pub(crate) async fn index_outlive(
        &self,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let script = Script::new(OUTLIVE);
        let mut invocation = script.prepare_invoke();
        invocation.key(self.user_key(identity)).arg(millis);
        let mut connection = self.connection();
        let _: i64 = self
            .run("index expiry", invocation.invoke_async(&mut connection))
            .await?;
        Ok(())
    }

    pub(crate) async fn index_remove(
        &self,
        identity: &Identity,
        id: &SessionId,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let mut command = redis::cmd("HDEL");
        command.arg(self.user_key(identity)).arg(id.as_str());
        let _: i64 = self
            .run("HDEL", command.query_async(&mut connection))
            .await?;
        Ok(())
    }

    /// The live sessions of `identity`; members whose session is gone (or
    /// whose field or value is not ours) are removed from the hash.
    ///
    /// Read with `HSCAN` in rounds of [`SCAN_COUNT`] fields, each checked
    /// (one pipelined `PTTL` per member) and cleaned before the next: a
    /// hash of a million members never blocks Redis for the whole of it,
    /// nor holds a request past `store.command_timeout` in one command.
    pub(crate) async fn index_list(
        &self,
        identity: &Identity,
    ) -> Result<Vec<IndexedSession>, StoreError> {
        let key = self.user_key(identity);
        let mut connection = self.connection();
        let mut live = Vec::new();
        // HSCAN may return a field twice (when the hash is rehashed
        // between rounds): each is listed once.
        let mut seen = std::collections::HashSet::new();
        let mut cursor: u64 = 0;
        loop {
            let mut command = redis::cmd("HSCAN");
            command.arg(&key).arg(cursor).arg("COUNT").arg(SCAN_COUNT);
            let (next, fields): (u64, Vec<Field>) = self
                .run("HSCAN", command.query_async(&mut connection))
                .await?;
            let fields = fields
                .into_iter()
                .filter(|(field, _)| seen.insert(field.clone()));
            self.check_members(&key, fields, &mut live).await?;
            if next == 0 {
                return Ok(live);
            }
            cursor = next;
        }
    }

    /// Adds to `live` the members of `fields` whose session lives, and
    /// removes the others from the hash at `key`.
    async fn check_members(
        &self,
        key: &str,
        fields: impl Iterator<Item = Field>,
        live: &mut Vec<IndexedSession>,
    ) -> Result<(), StoreError> {
        let mut members = Vec::new();
        let mut stale: Vec<Vec<u8>> = Vec::new();
        for (field, value) in fields {
            let parsed = std::str::from_utf8(&field)
                .ok()
                .and_then(SessionId::parse)
                .zip(Member::decode(&value));
            match parsed {
                Some((id, member)) => members.push((field, id, member)),
                None => stale.push(field),
            }
        }
        let ids: Vec<&SessionId> = members.iter().map(|(_, id, _)| id).collect();
        let ttls = self.ttls(&ids).await?;
        for ((field, id, member), millis) in members.into_iter().zip(ttls) {
            // -2: no such key; -1: a key without expiry (written elsewhere).
            let expires = match millis {
                -2 => {
                    stale.push(field);
                    continue;
                }
                ms if ms >= 0 => Some(SystemTime::now() + Duration::from_millis(ms.unsigned_abs())),
                _ => None,
            };
            live.push(IndexedSession {
                id,
                member,
                expires,
            });
        }
        if !stale.is_empty() {
            let mut connection = self.connection();
            let mut hdel = redis::cmd("HDEL");
            hdel.arg(key).arg(stale);
            let _: i64 = self.run("HDEL", hdel.query_async(&mut connection)).await?;
        }
        Ok(())
    }

    /// Each session's `PTTL`, in order: pipelined on one server; one by one
    /// on a cluster, where the keys live on different nodes.
    async fn ttls(&self, ids: &[&SessionId]) -> Result<Vec<i64>, StoreError> {
        let mut connection = self.connection();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if let super::Connection::Single(_) = connection {
            let mut pipeline = redis::pipe();
            for id in ids {
                pipeline.cmd("PTTL").arg(self.key(id));
            }
            return self
                .run("PTTL", pipeline.query_async(&mut connection))
                .await;
        }
        let mut ttls = Vec::with_capacity(ids.len());
        for id in ids {
            let mut pttl = redis::cmd("PTTL");
            pttl.arg(self.key(id));
            ttls.push(self.run("PTTL", pttl.query_async(&mut connection)).await?);
        }
        Ok(ttls)
    }

    /// Session keys in the database: a `SCAN MATCH <prefix>*`, the index
    /// keys left out. O(n) in the database's keys. On one server only: a
    /// cluster's keys are spread over its nodes.
    pub(crate) async fn count_sessions(&self) -> Result<u64, StoreError> {
        let mut connection = self.connection();
        if let super::Connection::Cluster(_) = connection {
            return Err(StoreError::Unavailable(
                "counting sessions is not supported on a Redis Cluster".into(),
            ));
        }
        let prefix = &self.shared.prefix;
        let pattern = format!("{}*", glob_escape(prefix));
        let index_prefix = format!("{prefix}{USER_INFIX}");
        let mut cursor: u64 = 0;
        let mut count: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<Vec<u8>>) =
                self.run("SCAN", scan.query_async(&mut connection)).await?;
            count += keys
                .iter()
                .filter(|key| !key.starts_with(index_prefix.as_bytes()))
                .count() as u64;
            if next == 0 {
                return Ok(count);
            }
            cursor = next;
        }
    }
}

/// `text` with Redis glob characters escaped, to match it literally.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn the_prefix_is_matched_literally() {
        assert_eq!(glob_escape("sess:"), "sess:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
