//! [`RedisSpendMeter`]: the [`SpendMeter`] shared by every instance, one counter per key
//! and month.

use std::fmt;
use std::time::Duration;

use keygate_core::backend::BackendError;
use keygate_core::spend::{Month, SpendMeter};
use keygate_core::KeyId;
use redis::aio::ConnectionManager;

use crate::limiter::DEFAULT_TIMEOUT;

/// A [`SpendMeter`] whose totals live in Redis, so that every instance meters one
/// shared spend per key and month. Cheap to clone; clones share the connection.
///
/// Each (key, month) is one integer, `{<key id>}:spend:<YYYY-MM>` (hash-tagged like the
/// limiter's counters), charged with `INCRBY`: atomic, so concurrent charges from any
/// number of instances are never lost. A counter expires at the end of the month after
/// its own, so memory holds at most two months of active keys. Totals are signed 64-bit
/// integers in Redis: a charge or a total beyond `i64::MAX` micro-cents (about 92
/// billion dollars) is a [`BackendError`].
///
/// Redis is the shared running total only: a Redis that keeps nothing on disk forgets
/// it on restart. Every call has a timeout ([`DEFAULT_TIMEOUT`], 50 ms, unless set by
/// [`timeout`](Self::timeout)); an unreachable or slow Redis is a [`BackendError`].
///
/// # Example
/// ```no_run
/// use keygate_core::spend::{Month, SpendMeter};
/// use keygate_core::KeyId;
/// use keygate_redis::RedisSpendMeter;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let meter = RedisSpendMeter::connect("redis://127.0.0.1:6379").await?;
/// let key = KeyId::from("kg_live_a1b2c3d4");
/// let month = Month::of(chrono::Utc::now());
/// let before = meter.spent(&key, month).await?;
/// assert_eq!(meter.charge(&key, month, 1000).await?, before + 1000);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSpendMeter {
    connection: ConnectionManager,
    timeout: Duration,
}

impl fmt::Debug for RedisSpendMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSpendMeter")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSpendMeter {
    /// A meter on `connection`, with a timeout of 50 ms per call.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Connects to the Redis at `url`, as
    /// [`RedisRateLimiter::connect`](crate::RedisRateLimiter::connect) does.
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self::new(crate::connect(url).await?))
    }

    /// Connects on the first call, as
    /// [`RedisRateLimiter::connect_lazy`](crate::RedisRateLimiter::connect_lazy) does.
    pub fn connect_lazy(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self::new(crate::connect_lazy(url)?))
    }

    /// Sets how long a call waits for Redis before it fails with a [`BackendError`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn spent_in(&self, key_id: &KeyId, month: Month) -> Result<u64, BackendError> {
        let mut connection = self.connection.clone();
        let total: Option<i64> = crate::call(self.timeout, async {
            redis::cmd("GET")
                .arg(spend_key(key_id, month))
                .query_async(&mut connection)
                .await
        })
        .await?;
        total_of(total.unwrap_or(0))
    }

    async fn charge_in(&self, key_id: &KeyId, month: Month, micro_cents: u64) -> Result<u64, BackendError> {
        let delta = i64::try_from(micro_cents)
            .map_err(|_| BackendError(format!("a charge of {micro_cents} micro-cents is beyond i64")))?;
        let key = spend_key(key_id, month);
        let expires = month.next().next().start().timestamp();
        let mut connection = self.connection.clone();
        let (total,): (i64,) = crate::call(self.timeout, async {
            redis::pipe()
                .atomic()
                .incr(&key, delta)
                .expire_at(&key, expires)
                .ignore()
                .query_async(&mut connection)
                .await
        })
        .await?;
        total_of(total)
    }
}

/// The counter of `key_id`'s spend in `month`.
fn spend_key(key_id: &KeyId, month: Month) -> String {
    format!("{{{}}}:spend:{month}", key_id.as_str())
}

fn total_of(total: i64) -> Result<u64, BackendError> {
    u64::try_from(total).map_err(|_| BackendError(format!("redis: a negative spend total ({total})")))
}

impl SpendMeter for RedisSpendMeter {
    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, BackendError> {
        self.spent_in(key_id, month).await
    }

    async fn charge(&self, key_id: &KeyId, month: Month, micro_cents: u64) -> Result<u64, BackendError> {
        self.charge_in(key_id, month, micro_cents).await
    }
}
