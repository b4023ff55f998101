//! Spend caps: the [`SpendMeter`] trait, the calendar [`Month`] it counts in, a
//! handler's declared [`Cost`], the in-memory meter ([`MemorySpendMeter`]) and the meter
//! whose record is the key store ([`RecordSpendMeter`]): spend that survives restarts.

use std::future::Future;

use crate::backend::BackendError;
use crate::key::KeyId;
use crate::store::BoxFuture;

mod memory;
mod record;

pub use crate::clock::Month;
pub use memory::MemorySpendMeter;
pub use record::RecordSpendMeter;

/// A request's cost in micro-cents, declared by a handler as a response extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost(pub u64);

/// Accumulates spend per key per UTC calendar month, in micro-cents.
pub trait SpendMeter: Send + Sync + 'static {
    /// What `key_id` has spent in `month`.
    fn spent(&self, key_id: &KeyId, month: Month) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// Adds `micro_cents` to `key_id`'s spend in `month` and returns the new total.
    /// Concurrent charges are never lost.
    fn charge(
        &self,
        key_id: &KeyId,
        month: Month,
        micro_cents: u64,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// [`spent`](SpendMeter::spent) without a future, for meters that need no I/O (the
    /// in-memory one); the gate awaits `spent` only on `None`, the default. Like
    /// [`RateLimiter::acquire_now`](crate::rate::RateLimiter::acquire_now), it runs under the cache's read lock: memory only.
    fn spent_now(&self, key_id: &KeyId, month: Month) -> Option<Result<u64, BackendError>> {
        let _ = (key_id, month);
        None
    }

    /// Writes what the meter holds back (a meter that writes its charges to the store
    /// behind, in batches); returns how many (key, month) totals were written. The
    /// gate's background task calls it with the usage flush, and on shutdown. The
    /// default writes nothing.
    fn flush(&self) -> impl Future<Output = usize> + Send {
        std::future::ready(0)
    }
}

/// Object-safe form of [`SpendMeter`], for the gate.
pub trait DynSpendMeter: Send + Sync + 'static {
    /// See [`SpendMeter::spent`].
    fn spent<'a>(&'a self, key_id: &'a KeyId, month: Month) -> BoxFuture<'a, Result<u64, BackendError>>;
    /// See [`SpendMeter::charge`].
    fn charge<'a>(
        &'a self,
        key_id: &'a KeyId,
        month: Month,
        micro_cents: u64,
    ) -> BoxFuture<'a, Result<u64, BackendError>>;
    /// See [`SpendMeter::spent_now`].
    fn spent_now(&self, key_id: &KeyId, month: Month) -> Option<Result<u64, BackendError>>;
    /// See [`SpendMeter::flush`].
    fn flush(&self) -> BoxFuture<'_, usize>;
}

impl<M: SpendMeter> DynSpendMeter for M {
    fn spent<'a>(&'a self, key_id: &'a KeyId, month: Month) -> BoxFuture<'a, Result<u64, BackendError>> {
        Box::pin(SpendMeter::spent(self, key_id, month))
    }
    fn charge<'a>(
        &'a self,
        key_id: &'a KeyId,
        month: Month,
        micro_cents: u64,
    ) -> BoxFuture<'a, Result<u64, BackendError>> {
        Box::pin(SpendMeter::charge(self, key_id, month, micro_cents))
    }
    fn spent_now(&self, key_id: &KeyId, month: Month) -> Option<Result<u64, BackendError>> {
        SpendMeter::spent_now(self, key_id, month)
    }
    fn flush(&self) -> BoxFuture<'_, usize> {
        Box::pin(SpendMeter::flush(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn december_rolls_into_january() {
        let dec = Month::of("2026-12-31T23:59:59Z".parse().unwrap());
        assert_eq!(dec.next().start().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(dec.to_string(), "2026-12");
    }
}
