//! The connection to Redis: built once at start-up, verified with `PING`,
//! shared by every request.
//!
//! One server: a redis-rs `ConnectionManager`, one multiplexed connection
//! (concurrent requests' commands are pipelined on it) that reconnects by
//! itself after a failure. A cluster: redis-rs's async `ClusterConnection`,
//! one multiplexed connection per node, following the slot map and
//! reconnecting by itself. Cloning either is cheap and shares the
//! connection.

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo as _, Pipeline, RedisFuture, Value,
};
use thiserror::Error;

use super::settings::{RedisConfig, RedisEndpoint, RedisUrl};

/// Why the store could not start. Names the endpoint (password masked) and
/// the config key.
#[derive(Debug, Error)]
#[error("cannot use the Redis session store at {target} ({key}): {reason}")]
pub struct ConnectError {
    pub target: String,
    pub key: &'static str,
    pub reason: String,
}

/// Reconnection back-off: from 50 ms up to 1 s between attempts, so that a
/// Redis that comes back is used again within about a second.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// Attempts per reconnection round; the next command after a failed round
/// starts another, so recovery never needs a restart.
const RECONNECT_ATTEMPTS: usize = 8;

#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A worker's tracked connection ([`super::tracking`]), for the reads
    /// and writes that may fill the cache.
    Tracked(MultiplexedConnection),
}

impl Connection {
    /// Connects, and checks that Redis answers, within the configured
    /// timeouts. Never logs the password. One server: `count` connections
    /// (one per worker thread; each is established by the first command
    /// sent from its worker, so its I/O runs on that worker's event loop).
    /// A cluster: one connection, whatever `count`.
    pub(super) async fn open_many(
        config: &RedisConfig,
        count: usize,
    ) -> Result<Vec<Self>, ConnectError> {
        let fail = |reason: String| ConnectError {
            target: config.endpoint.redacted(),
            key: config.endpoint.key(),
            reason,
        };
        if uses_tls(&config.endpoint) {
            // redis's rustls setup reads the process-wide provider; an
            // error only means one is installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let deadline = config.connect_timeout + config.command_timeout;
        let connection = match &config.endpoint {
            RedisEndpoint::Single(url) => {
                let client = single_client(url, config).map_err(|e| fail(describe(&e)))?;
                probe(&client, config).await.map_err(&fail)?;
                // No response timeout of redis's own: every command runs
                // under the store's (`RedisStore::run`), and a timeout is
                // no reason to reconnect for the manager either way.
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(None)
                    .set_min_delay(RECONNECT_MIN_DELAY)
                    .set_max_delay(RECONNECT_MAX_DELAY)
                    .set_number_of_retries(RECONNECT_ATTEMPTS);
                // The probe has verified the server; the managers connect on
                // first use, from the worker that uses them.
                return (0..count.max(1))
                    .map(|_| {
                        ConnectionManager::new_lazy_with_config(
                            client.clone(),
                            manager_config.clone(),
                        )
                        .map(Self::Single)
                        .map_err(|e| fail(describe(&e)))
                    })
                    .collect();
            }
            RedisEndpoint::Cluster(urls) => {
                let mut builder = ClusterClient::builder(urls.iter().map(RedisUrl::expose))
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.command_timeout);
                if let Some(password) = &config.password {
                    builder = builder.password(password.expose_str());
                }
                let client = builder.build().map_err(|e| fail(describe(&e)))?;
                let connection = tokio::time::timeout(deadline, client.get_async_connection())
                    .await
                    .map_err(|_| fail(format!("no answer within {deadline:?}")))?
                    .map_err(|e| fail(describe(&e)))?;
                Self::Cluster(connection)
            }
        };
        let mut ping = connection.clone();
        let pong = tokio::time::timeout(
            deadline,
            redis::cmd("PING").query_async::<String>(&mut ping),
        )
        .await
        .map_err(|_| fail(format!("no answer to PING within {deadline:?}")))?;
        pong.map_err(|e| fail(describe(&e)))?;
        Ok(vec![connection])
    }
}

fn uses_tls(endpoint: &RedisEndpoint) -> bool {
    let tls = |url: &RedisUrl| url.expose().starts_with("rediss://");
    match endpoint {
        RedisEndpoint::Single(url) => tls(url),
        RedisEndpoint::Cluster(urls) => urls.iter().any(tls),
    }
}

fn single_client(url: &RedisUrl, config: &RedisConfig) -> redis::RedisResult<redis::Client> {
    let mut info = url.expose().into_connection_info()?;
    if let Some(password) = &config.password {
        let settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose_str());
        info = info.set_redis_settings(settings);
    }
    redis::Client::open(info)
}

/// The client of the tracked connections ([`super::tracking`]): the same
/// server and credentials, speaking RESP3, which carries invalidations on
/// the connection that asked for them.
pub(super) fn tracking_client(
    url: &RedisUrl,
    config: &RedisConfig,
) -> Result<redis::Client, ConnectError> {
    let fail = |error: redis::RedisError| ConnectError {
        target: config.endpoint.redacted(),
        key: config.endpoint.key(),
        reason: describe(&error),
    };
    let client = single_client(url, config).map_err(fail)?;
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings)).map_err(fail)
}

/// One direct connection attempt, so that start-up reports the real cause
/// (refused, wrong password, TLS) instead of the manager's retries timing
/// out; also refuses a cluster node given as `store.url`.
async fn probe(client: &redis::Client, config: &RedisConfig) -> Result<(), String> {
    let probe_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.command_timeout));
    let deadline = config.connect_timeout + config.command_timeout;
    let attempt = async {
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&probe_config)
            .await?;
        redis::cmd("INFO")
            .arg("cluster")
            .query_async::<String>(&mut connection)
            .await
    };
    let info = tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| format!("no answer within {deadline:?}"))?
        .map_err(|e| describe(&e))?;
    if info.contains("cluster_enabled:1") {
        return Err("this server is a Redis Cluster node; list the cluster's nodes in store.cluster_urls instead of store.url".into());
    }
    Ok(())
}

/// A Redis error as shown to operators. redis-rs messages hold neither
/// URLs nor passwords; a reply of an unexpected shape could quote the reply,
/// that is session data, so those are named by their kind only.
pub(super) fn describe(error: &redis::RedisError) -> String {
    match error.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            format!("{} (reply not shown)", error.category())
        }
        _ => error.to_string(),
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
            Self::Tracked(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Tracked(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
            Self::Tracked(connection) => connection.get_db(),
        }
    }
}
