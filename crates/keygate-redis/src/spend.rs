//! [`RedisSpendMeter`]: the [`SpendMeter`] shared by every instance, one counter per key
//! and month.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use keygate_core::backend::BackendError;
use keygate_core::spend::{Month, SpendMeter};
use keygate_core::store::KeyStore;
use keygate_core::KeyId;
use redis::aio::ConnectionManager;
use redis::Script;

use crate::limiter::DEFAULT_TIMEOUT;
use crate::local::Local;
use crate::record::Record;
use keygate_core::backend::Budget;

/// Charges `ARGV[1]` to the counter `KEYS[1]` and returns the new total; a missing
/// counter is first set to `ARGV[2]` (its recorded total), or, when `ARGV[2]` is empty,
/// left missing and `false` returned, so the caller reads the record and asks again.
/// `ARGV[3]` is when the counter expires (Unix seconds).
const CHARGE_SEEDED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[2] == '' then return false end
  redis.call('SET', KEYS[1], ARGV[2])
end
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return total
";

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
/// it on restart, unless the meter also records to the key store
/// ([`record_to`](Self::record_to), below). Every call has a timeout ([`DEFAULT_TIMEOUT`], 50 ms, unless set by
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
///
/// # Recorded in the key store: a Redis restart loses nothing
///
/// With [`record_to`](Self::record_to), Redis still holds the shared running total, and
/// each instance also writes its own charges to the key store behind, in batches, as
/// [`RecordSpendMeter`](keygate_core::spend::RecordSpendMeter) does
/// ([`KeyStore::record_spend`], on every [`flush`](SpendMeter::flush): the gate's
/// background task calls it with the usage flush, and at shutdown). After a flush the
/// store's total is exactly the sum of the costs charged: a charge is recorded even when
/// Redis fails it.
///
/// A counter missing from Redis (Redis restarted, or the counter expired) is reseeded
/// from the record before it is used: the instance that finds it missing reads the
/// recorded total ([`KeyStore::spent`]) plus its own charges not yet written, and one
/// script sets the counter to that unless another instance got there first, then
/// charges. The read has a time budget of its own (50 ms, with a breaker, as the
/// store's reads have in a cold verification): a hung store fails the call (answered
/// as the outage policy says) instead of holding the request.
/// Concurrent reseeds from several instances are safe: the first sets the counter, the
/// others only charge.
///
/// What a reseed cannot see: charges that *other* instances made before Redis restarted
/// and had not yet written to the store (at most one flush interval of their charges,
/// 10 s by default). The shared total misses them from then on, so the cap may be
/// exceeded by that much across the fleet; the record still gets them, exactly, and a
/// restart of the instances (or the next month) reads the record again. A charge that
/// Redis fails (down, slow) is recorded in the store; without `Local` (below) it is
/// missing from the shared total until its counter is reseeded.
///
/// # Outages: a circuit breaker, and `Local`
///
/// As for [`RedisRateLimiter`](crate::RedisRateLimiter): 3 failed or timed-out calls in
/// a row open a breaker that sends nothing for a second, then lets one call probe. While
/// Redis cannot be used, calls are [`BackendError`]s (the gate's `FailMode` decides),
/// unless [`local_fallback`](Self::local_fallback) is set on a recording meter: then the
/// instance meters spend itself. A charge is recorded in the store as always, and owed
/// to Redis; a total is the last one Redis reported for the key plus what this instance
/// owes it (for a key it has not seen yet, the record's total plus its unwritten
/// charges). When Redis answers again, what is owed is charged with the key's next call,
/// or by the next [`flush`](SpendMeter::flush); a counter Redis lost is reseeded from
/// the record, which already holds those charges. So nothing is lost: after a flush the
/// store holds every charge exactly, and Redis every charge of every instance that is
/// back. During the outage each instance sees only its own charges on top of the last
/// shared total, so the fleet may overspend a cap by what the others charged meanwhile;
/// and a charge whose reply timed out although Redis counted it is counted in Redis
/// twice (the cap errs on the side of refusing).
#[derive(Clone)]
pub struct RedisSpendMeter {
    connection: ConnectionManager,
    /// Each call's timeout, and the breaker the calls share.
    budget: Budget,
    record: Option<Arc<Record>>,
    script: Arc<Script>,
    local: Option<Arc<Local>>,
}

impl fmt::Debug for RedisSpendMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSpendMeter")
            .field("timeout", &self.budget.timeout())
            .finish_non_exhaustive()
    }
}

impl RedisSpendMeter {
    /// A meter on `connection`, with a timeout of 50 ms per call.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            budget: Budget::new(DEFAULT_TIMEOUT),
            record: None,
            script: Arc::new(Script::new(CHARGE_SEEDED)),
            local: None,
        }
    }

    /// The `Local` outage policy, for a meter that records to the key store
    /// ([`record_to`](Self::record_to); without it this changes nothing): while Redis
    /// cannot be used, this instance meters spend itself and reconciles with Redis when
    /// it is back. See [Outages](#outages-a-circuit-breaker-and-local).
    pub fn local_fallback(mut self) -> Self {
        self.local = Some(Arc::new(Local::default()));
        self
    }

    /// Also records every charge in `store` (usually the gate's own `SqlStore`), and
    /// reseeds a counter missing from Redis from it: see [Recorded in the key
    /// store](#recorded-in-the-key-store-a-redis-restart-loses-nothing).
    pub fn record_to(mut self, store: impl KeyStore) -> Self {
        self.record = Some(Arc::new(Record::new(store)));
        self
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
        self.budget = Budget::new(timeout);
        self
    }

    async fn spent_in(&self, key_id: &KeyId, month: Month) -> Result<u64, BackendError> {
        let mut connection = self.connection.clone();
        let total: Option<i64> = crate::guarded(&self.budget, async {
            redis::cmd("GET")
                .arg(spend_key(key_id, month))
                .query_async(&mut connection)
                .await
        })
        .await?;
        total_of(total.unwrap_or(0))
    }

    /// Runs the charge script: `Some(total)`, or `None` when the counter is missing and
    /// no `seed` was given.
    async fn run_script(
        &self,
        key_id: &KeyId,
        month: Month,
        micro_cents: u64,
        seed: Option<u64>,
    ) -> Result<Option<u64>, BackendError> {
        let delta = i64::try_from(micro_cents)
            .map_err(|_| BackendError(format!("a charge of {micro_cents} micro-cents is beyond i64")))?;
        let mut invocation = self.script.key(spend_key(key_id, month));
        invocation
            .arg(delta)
            .arg(seed.map(|s| s.to_string()).unwrap_or_default())
            .arg(month.next().next().start().timestamp());
        let mut connection = self.connection.clone();
        let total: Option<i64> = crate::call(
            self.budget.timeout(),
            invocation.invoke_async::<Option<i64>>(&mut connection),
        )
        .await?;
        total.map(total_of).transpose()
    }

    /// Charges `micro_cents` (0 to read) to the counter, reseeding it from the record
    /// when it is missing; what is owed to Redis from an outage is charged with it.
    async fn charge_seeded(
        &self,
        record: &Record,
        key_id: &KeyId,
        month: Month,
        micro_cents: u64,
    ) -> Result<u64, BackendError> {
        // Refused before anything is sent: not an outage.
        i64::try_from(micro_cents)
            .map_err(|_| BackendError(format!("a charge of {micro_cents} micro-cents is beyond i64")))?;
        if !self.budget.breaker().allow() {
            let error = BackendError("redis: unavailable (circuit breaker open)".into());
            return self.outage(record, error, key_id, month, micro_cents).await;
        }
        let owed = self
            .local
            .as_ref()
            .map_or(0, |local| local.take_owed(key_id, month));
        let total = match self
            .run_script(key_id, month, micro_cents.saturating_add(owed), None)
            .await
        {
            Ok(Some(total)) => {
                self.budget.breaker().success();
                total
            }
            // Missing: this instance's own charges go to the record first, so the total
            // read back holds them (what was owed included), and is charged in Redis once.
            Ok(None) => {
                self.budget.breaker().success();
                let recorded = match record.seed(key_id, month).await {
                    Ok(recorded) => recorded,
                    Err(error) => return self.outage(record, error, key_id, month, micro_cents).await,
                };
                match self.run_script(key_id, month, micro_cents, Some(recorded)).await {
                    Ok(Some(total)) => total,
                    Ok(None) => return Err(BackendError("redis: the spend counter was not seeded".into())),
                    Err(error) => {
                        self.budget.breaker().failure();
                        return self.outage(record, error, key_id, month, micro_cents).await;
                    }
                }
            }
            Err(error) => {
                self.budget.breaker().failure();
                if let Some(local) = &self.local {
                    local.owe(key_id, month, owed);
                }
                return self.outage(record, error, key_id, month, micro_cents).await;
            }
        };
        if let Some(local) = &self.local {
            local.see(key_id, month, total);
        }
        Ok(total)
    }

    /// Answers a call Redis could not: under `Local`, the charge is owed to Redis and
    /// the total is the last one Redis reported plus what is owed (or, for a key not
    /// seen yet, the record's total plus this instance's unwritten charges); else
    /// `error`.
    async fn outage(
        &self,
        record: &Record,
        error: BackendError,
        key_id: &KeyId,
        month: Month,
        micro_cents: u64,
    ) -> Result<u64, BackendError> {
        let Some(local) = &self.local else {
            return Err(error);
        };
        local.owe(key_id, month, micro_cents);
        match local.seen(key_id, month) {
            Some(seen) => Ok(seen.saturating_add(local.owed(key_id, month))),
            None => Ok(record.view(key_id, month).await?.saturating_add(micro_cents)),
        }
    }

    /// Charges Redis what an outage left owed, key by key, while it answers.
    async fn reconcile(&self, record: &Record) {
        let Some(local) = &self.local else {
            return;
        };
        for (key_id, month) in local.owing() {
            let _ = self.charge_seeded(record, &key_id, month, 0).await;
            if local.owed(&key_id, month) > 0 {
                return; // Still away: the next flush tries again.
            }
        }
    }

    async fn charge_in(&self, key_id: &KeyId, month: Month, micro_cents: u64) -> Result<u64, BackendError> {
        if let Some(record) = &self.record {
            // Neither Redis nor a SQL `BIGINT` holds more: refused, and not recorded.
            i64::try_from(micro_cents)
                .map_err(|_| BackendError(format!("a charge of {micro_cents} micro-cents is beyond i64")))?;
            let charged = self.charge_seeded(record, key_id, month, micro_cents).await;
            // Held after Redis was charged (or failed): a reseed that flushed it before
            // would count it twice, once in the record read back and once here.
            record.hold(key_id, month, micro_cents);
            return charged;
        }
        let delta = i64::try_from(micro_cents)
            .map_err(|_| BackendError(format!("a charge of {micro_cents} micro-cents is beyond i64")))?;
        let key = spend_key(key_id, month);
        let expires = month.next().next().start().timestamp();
        let mut connection = self.connection.clone();
        let (total,): (i64,) = crate::guarded(&self.budget, async {
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
        match &self.record {
            Some(record) => self.charge_seeded(record, key_id, month, 0).await,
            None => self.spent_in(key_id, month).await,
        }
    }

    async fn charge(&self, key_id: &KeyId, month: Month, micro_cents: u64) -> Result<u64, BackendError> {
        self.charge_in(key_id, month, micro_cents).await
    }

    async fn flush(&self) -> usize {
        match &self.record {
            Some(record) => {
                self.reconcile(record).await;
                record.flush().await
            }
            None => 0,
        }
    }
}
