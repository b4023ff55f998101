//! Spend caps: the [`SpendMeter`] trait, the calendar [`Month`] it counts in, a
//! handler's declared [`Cost`], and the in-memory meter ([`MemorySpendMeter`]).

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::backend::BackendError;
use crate::key::KeyId;
use crate::store::BoxFuture;

mod memory;

pub use memory::MemorySpendMeter;

/// A request's cost in micro-cents, declared by a handler as a response extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost(pub u64);

/// A UTC calendar month, the period of spend caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month containing `at`.
    pub fn of(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first instant of this month.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

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
