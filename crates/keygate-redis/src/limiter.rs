//! [`RedisRateLimiter`]: the [`RateLimiter`] shared by every instance, one Lua script
//! per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use keygate_core::backend::BackendError;
use keygate_core::clock::Timestamp;
use keygate_core::rate::{Bucket, MemoryRateLimiter, RateDecision, RateLimiter, WindowState};
use keygate_core::KeyId;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::Script;

use crate::window::{decide, plan, MAX_INSTANT_MICROS};
use crate::Connection;
use keygate_core::account::Holder;
use keygate_core::backend::Budget;

/// How long a call waits for Redis by default.
pub const DEFAULT_TIMEOUT: Duration = keygate_core::backend::DEFAULT_TIMEOUT;

/// The script: checks and counts every window of one request (see `acquire.lua`).
const ACQUIRE: &str = include_str!("acquire.lua");

/// A [`RateLimiter`] whose counters live in Redis, so that every instance behind a load
/// balancer shares them. Cheap to clone; clones share the connection.
///
/// # Example
/// ```no_run
/// use keygate_core::rate::{Bucket, RateLimiter};
/// use keygate_core::{KeyId, RateLimit};
/// use keygate_redis::RedisRateLimiter;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisRateLimiter::connect("redis://127.0.0.1:6379").await?;
/// let buckets = [Bucket { service: None, limit: RateLimit::per_minute(100), account: None }];
/// let key = KeyId::from("kg_live_a1b2c3d4");
/// // `now` is not read: the time is Redis' own.
/// let decision = limiter.acquire(&key, &buckets, chrono::Utc::now().into()).await?;
/// assert!(decision.allowed);
/// # Ok(())
/// # }
/// ```
///
/// # Semantics
///
/// The same as [`MemoryRateLimiter`](keygate_core::rate::MemoryRateLimiter), whose
/// documentation is the guide to the algorithm (GCRA): bursts up to the limit, a steady
/// refill, an exact `Retry-After`. Every bucket of one call, the key's windows and the
/// service's, is checked and counted by one Lua script in one round trip (`EVALSHA`,
/// loaded again on `NOSCRIPT`), all or nothing: a refused request counts nowhere, and
/// `N` concurrent calls against a limit `L` admit exactly `min(N, L)`, whichever
/// instances they come from. Counters are per (key id, service, period); buckets of one
/// call with the same identity count once, against the smaller limit; a limit of 0
/// refuses.
///
/// # Time
///
/// By default the time is Redis' `TIME`, read inside the script, and the `now` passed
/// to [`acquire`](RateLimiter::acquire) is **ignored**: instances whose clocks disagree
/// still share one timeline, and `reset_at` is in Redis' time. A call with no bucket
/// sends nothing to Redis and reports `now`. [`with_caller_time`](Self::with_caller_time)
/// uses the `now` passed in instead, for tests that move time by hand (the conformance
/// suite), or a deployment whose instances share a clock. Time is counted in whole
/// microseconds (an instant is rounded down, a period up).
///
/// # Bounds
///
/// Redis' Lua numbers are doubles, exact only for integers below 2^53, so the script
/// keeps every value below that:
///
/// - an instant is in microseconds since the Unix epoch, within ±2^52 µs (until 2112);
/// - a window is counted in steps of `period / limit`, held as an exact fraction with
///   denominator `limit / gcd(limit, period in µs)`; `period in µs × that denominator`
///   must be at most 2^52. A limit that divides its period in µs always passes
///   (100/min, 10 000/day, 1 000 000/day: the denominator is 1); any other passes up
///   to 4 294 967 295 (every `u32`) per second, 75 000 000 per minute, 1 250 000 per
///   hour, 52 000 per day, and beyond those when it shares enough factors with the
///   period.
///
/// A window or an instant beyond the bounds is a [`BackendError`], never a wrong count.
///
/// # Keys and memory
///
/// One Redis string per counter, `{<key id>}:rl:<period µs>:-` for the key's own window
/// and `{<key id>}:rl:<period µs>:s:<service>` for a service's. The hash tag `{<key
/// id>}` puts every counter of a key in one slot of a Redis Cluster, so one script
/// touches one slot. A call that also counts the owner's account-wide windows is tagged
/// by the owner instead, `{a:<owner>}:k:<key id>:rl:…` for the key's counters and
/// `{a:<owner>}:rl:…` for the account's, for the same reason: all of an owner's keys
/// then share its slot. Each key expires (`PX`) when its window is whole again, when
/// forgetting it changes no decision, so memory is bounded by the keys active within
/// their longest window. A refused request writes nothing.
///
/// # Errors and timeouts
///
/// Every call has a timeout, [`DEFAULT_TIMEOUT`] (50 ms) unless set by
/// [`timeout`](Self::timeout). An unreachable, failing or slow Redis is a
/// [`BackendError`], which the gate answers according to its `FailMode`; the limiter
/// never panics. The connection ([`ConnectionManager`]) reconnects in the background.
///
/// # Outages: a circuit breaker, and `Local`
///
/// After 3 failed or timed-out calls in a row the limiter stops calling Redis for a
/// second (an open breaker costs a request nothing), then lets one call probe; the first
/// answer closes the breaker again. While Redis cannot be used, each call is a
/// [`BackendError`] (the gate's `FailMode` decides: `Closed`, 503 with `Retry-After`,
/// by default, or `Open`), unless [`local_fallback`](Self::local_fallback) is set: then
/// this instance enforces the same limits from its own memory
/// ([`MemoryRateLimiter`], the caller's clock) until Redis answers again. Each instance
/// then admits up to each limit on its own, so `N` instances admit up to `N` times it
/// during the outage; nothing is reconciled afterwards (a rate window is short-lived).
///
/// # Redis Cluster
///
/// [`connect_cluster`](Self::connect_cluster) (or [`cluster`](Self::cluster) over a
/// [`ClusterConnection`]) runs the same script on a Redis Cluster: every counter of one
/// call shares its key id's hash tag, so the script touches one slot and runs on that
/// slot's master, with the same semantics; keys of different ids spread over the
/// masters. The script is loaded on each master the first time it runs there
/// (`NOSCRIPT`, then `SCRIPT LOAD`).
#[derive(Clone)]
pub struct RedisRateLimiter {
    connection: Connection,
    script: Arc<Script>,
    /// Each call's timeout, and the breaker the calls share.
    budget: Budget,
    caller_time: bool,
    local: Option<Arc<MemoryRateLimiter>>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("timeout", &self.budget.timeout())
            .field("caller_time", &self.caller_time)
            .field("local_fallback", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on `connection`, with Redis' time and a timeout of 50 ms per call.
    pub fn new(connection: ConnectionManager) -> Self {
        Self::on(Connection::Single(connection))
    }

    /// A limiter on a Redis Cluster `connection` (see [Redis Cluster](#redis-cluster)).
    pub fn cluster(connection: ClusterConnection) -> Self {
        Self::on(Connection::Cluster(connection))
    }

    /// Connects to the Redis Cluster that `nodes` belong to (`redis://host:port`, one or
    /// more of its masters; the others are discovered), failing if none answers.
    pub async fn connect_cluster(nodes: &[&str]) -> Result<Self, redis::RedisError> {
        Ok(Self::cluster(crate::connect_cluster(nodes).await?))
    }

    fn on(connection: Connection) -> Self {
        Self {
            connection,
            script: Arc::new(Script::new(ACQUIRE)),
            budget: Budget::new(DEFAULT_TIMEOUT),
            caller_time: false,
            local: None,
        }
    }

    /// The `Local` outage policy: while Redis cannot be used (failing, slow, or the
    /// breaker open), this instance enforces the limits from memory instead of failing
    /// the call. See [Outages](#outages-a-circuit-breaker-and-local).
    pub fn local_fallback(mut self) -> Self {
        self.local = Some(Arc::new(MemoryRateLimiter::new()));
        self
    }

    /// Answers a call Redis could not: from memory under `Local`, else `error`.
    async fn outage(
        &self,
        error: BackendError,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> Result<RateDecision, BackendError> {
        match &self.local {
            Some(local) => local.acquire(key_id, buckets, now).await,
            None => Err(error),
        }
    }

    /// Connects to the Redis at `url` (`redis://host:port/db`), failing if it cannot be
    /// reached (after retrying for a few seconds); once connected, the connection is
    /// re-established in the background whenever it drops.
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self::new(crate::connect(url).await?))
    }

    /// Like [`connect`](Self::connect), but connects on the first call, so that an
    /// instance starts while Redis is down (its calls fail with [`BackendError`] until
    /// Redis is back). Fails only on a malformed `url`, or outside a Tokio runtime.
    pub fn connect_lazy(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self::new(crate::connect_lazy(url)?))
    }

    /// Sets how long a call waits for Redis before it fails with a [`BackendError`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.budget = Budget::new(timeout);
        self
    }

    /// Uses the `now` passed to [`acquire`](RateLimiter::acquire) instead of Redis'
    /// `TIME`: for tests that move time by hand, or instances that share one clock.
    pub fn with_caller_time(mut self) -> Self {
        self.caller_time = true;
        self
    }

    async fn run(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> Result<RateDecision, BackendError> {
        if buckets.is_empty() {
            return Ok(RateDecision {
                allowed: true,
                tightest: WindowState {
                    limit: u32::MAX,
                    period_secs: 0,
                    remaining: u32::MAX,
                    reset_at: u64::try_from(now.unix_secs().max(0)).unwrap_or(0),
                },
                retry_after: 0,
                holder: Holder::Key,
            });
        }
        let windows = plan(buckets)?;
        let mut invocation = self.script.prepare_invoke();
        let account = windows.iter().find_map(|w| w.account.as_ref());
        for window in &windows {
            invocation.key(window.redis_key(key_id, account));
        }
        if self.caller_time {
            let micros = i128::from(now.unix_nanos()).div_euclid(1000);
            if micros.abs() >= MAX_INSTANT_MICROS {
                return Err(BackendError(format!(
                    "{} is beyond the Redis limiter's range of instants",
                    now.to_datetime()
                )));
            }
            invocation.arg(micros.to_string());
        } else {
            invocation.arg("");
        }
        for w in &windows {
            invocation.arg(w.limit).arg(w.period).arg(w.scale).arg(w.step);
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> =
            match crate::guarded(&self.budget, invocation.invoke_async(&mut connection)).await {
                Ok(reply) => reply,
                Err(error) => return self.outage(error, key_id, buckets, now).await,
            };
        decide(&windows, &reply)
    }
}

impl RateLimiter for RedisRateLimiter {
    async fn acquire(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> Result<RateDecision, BackendError> {
        self.run(key_id, buckets, now).await
    }
}
