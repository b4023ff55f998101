//! Redis backends for keygate: [`RedisRateLimiter`], a
//! [`RateLimiter`](keygate_core::rate::RateLimiter) whose counters every instance
//! shares, so that two replicas behind a load balancer admit each limit once, not twice;
//! [`RedisSpendMeter`], a [`SpendMeter`](keygate_core::spend::SpendMeter) whose
//! monthly totals they share (and, with `record_to`, write behind to the key store, which
//! reseeds them after a Redis restart); and [`RedisBroadcast`], a
//! [`KeyStore`](keygate_core::KeyStore) wrapper that publishes every revocation,
//! rotation and expiry change on a Redis channel, so that every instance forgets the key
//! within milliseconds.
//!
//! Every call to Redis has a timeout (50 ms by default) and goes through a circuit
//! breaker; `local_fallback` (on the limiter and the meter) answers from this instance's
//! memory while Redis is away. The limiter also runs on a Redis Cluster
//! ([`RedisRateLimiter::connect_cluster`]).
//!
//! The limiter has the semantics of keygate-core's in-memory limiter (GCRA, all or
//! nothing, exact `Retry-After`) and passes the same conformance suite. Each request
//! costs one round trip: one Lua script, run with `EVALSHA`, checks and counts every
//! window. Its time is Redis' own `TIME`; its numeric bounds, keys and timeouts are
//! documented on [`RedisRateLimiter`]. The driver is re-exported as [`redis`].
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//!
//! use keygate_core::rate::{Bucket, RateLimiter};
//! use keygate_core::{KeyId, RateLimit};
//! use keygate_redis::RedisRateLimiter;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RedisRateLimiter::connect("redis://127.0.0.1:6379")
//!     .await?
//!     .timeout(Duration::from_millis(20));
//! let key = KeyId::from("kg_live_a1b2c3d4");
//! let buckets = [
//!     Bucket { service: None, limit: RateLimit::per_minute(2), account: None },
//!     Bucket { service: Some("chat".into()), limit: RateLimit::per_hour(100), account: None },
//! ];
//! let now = chrono::Utc::now().into(); // ignored: the script reads Redis' TIME
//! assert!(limiter.acquire(&key, &buckets, now).await?.allowed);
//! assert!(limiter.acquire(&key, &buckets, now).await?.allowed);
//! let third = limiter.acquire(&key, &buckets, now).await?;
//! assert!(!third.allowed);
//! assert_eq!(third.tightest.limit, 2);
//! assert!(third.retry_after >= 1);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::time::Duration;

use keygate_core::backend::{BackendError, Budget};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

mod broadcast;
mod limiter;
mod local;
mod record;
mod spend;
mod window;

pub use broadcast::{RedisBroadcast, DEFAULT_CHANNEL, DEFAULT_PUBLISH_TIMEOUT};
pub use limiter::{RedisRateLimiter, DEFAULT_TIMEOUT};
pub use redis;
pub use spend::RedisSpendMeter;

/// A connection to one Redis, or to a Redis Cluster: the commands keygate sends touch
/// one hash slot each (keys are hash-tagged by key id), so either serves them.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server (or a proxy in front of many), reconnecting in the background.
    Single(ConnectionManager),
    /// A Redis Cluster: each command goes to the master of its keys' slot.
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection to the Redis Cluster that `nodes` (`redis://host:port`, one or more of
/// its masters) belong to, with attempts of a second per node.
async fn connect_cluster(nodes: &[&str]) -> Result<ClusterConnection, redis::RedisError> {
    redis::cluster::ClusterClient::builder(nodes.iter().copied())
        .connection_timeout(Duration::from_secs(1))
        .build()?
        .get_async_connection()
        .await
}

/// Reconnection settings: connection attempts of a second, retries at most a second
/// apart.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_max_delay(Duration::from_secs(1))
}

/// A connection to the Redis at `url`, failing if it cannot be reached; once
/// connected, it is re-established in the background whenever it drops.
async fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    ConnectionManager::new_with_config(client, manager_config()).await
}

/// A connection made on the first call, so that an instance starts while Redis is
/// down. Fails only on a malformed `url`, or outside a Tokio runtime.
fn connect_lazy(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err((redis::ErrorKind::Client, "connect_lazy needs a Tokio runtime").into());
    }
    let client = redis::Client::open(url)?;
    ConnectionManager::new_lazy_with_config(client, manager_config())
}

/// Runs one Redis call within `budget`, keygate-core's timeout and circuit breaker: not
/// sent while the breaker is open; a failure or no answer in time is a [`BackendError`]
/// and counts against the breaker.
async fn guarded<T>(
    budget: &Budget,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, BackendError> {
    budget
        .call(request, |_| true)
        .await
        .map_err(|e| BackendError(format!("redis: {e}")))
}

/// Runs one Redis call within `timeout`, outside any breaker: a failure or no answer in
/// time is a [`BackendError`].
async fn call<T>(
    timeout: Duration,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(BackendError(format!("redis: {e}"))),
        Err(_) => Err(BackendError(format!(
            "redis: no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
