//! [`MemorySpendMeter`]: the in-process [`SpendMeter`], for one instance.
//!
//! Its documentation is that of [`MemorySpendMeter`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::{Month, SpendMeter};
use crate::backend::BackendError;
use crate::key::KeyId;

const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Longer than any month, so that a counter outlives the month it counts.
const IDLE: Duration = Duration::from_secs(32 * 86_400);

/// An in-memory [`SpendMeter`], for one instance. Cheap to clone; clones share the
/// counters.
///
/// # Example
/// ```
/// use keygate_core::spend::{MemorySpendMeter, Month, SpendMeter};
/// use keygate_core::KeyId;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let meter = MemorySpendMeter::new();
/// let key = KeyId::from("kg_live_a1b2c3d4");
/// let march = Month { year: 2026, month: 3 };
///
/// meter.charge(&key, march, 1000).await.unwrap();
/// assert_eq!(meter.charge(&key, march, 500).await.unwrap(), 1500);
/// // A new month starts from zero.
/// assert_eq!(meter.spent(&key, march.next()).await.unwrap(), 0);
/// # });
/// ```
///
/// Spend is kept per (key, [`Month`]) in an atomic counter: concurrent charges are
/// added with a lock-free compare-and-swap and never lost (the total saturates at
/// `u64::MAX` micro-cents rather than wrapping). Reading a month nobody was charged in
/// stores nothing.
///
/// Memory stays bounded: a month's counter is evicted after 32 days without a charge
/// or a read (so a key charged on the 1st and next used on the 31st still has its
/// total, while last month's counters leave soon after the month ends), and the meter
/// holds at most [`max_entries`](MemorySpendMeter::max_entries) counters (100 000 by
/// default), about 270 bytes each with map overhead. Evicting a counter forgets that
/// spend, so size the bound above the number of capped keys in use.
#[derive(Clone)]
pub struct MemorySpendMeter {
    spend: Cache<(KeyId, Month), Arc<AtomicU64>>,
    max_entries: u64,
}

impl fmt::Debug for MemorySpendMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySpendMeter")
            .field("entries", &self.spend.entry_count())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl Default for MemorySpendMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySpendMeter {
    /// A meter holding at most 100 000 (key, month) counters.
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// Sets how many (key, month) counters are held at most.
    pub fn max_entries(self, max_entries: u64) -> Self {
        Self::with_max_entries(max_entries)
    }

    fn with_max_entries(max_entries: u64) -> Self {
        Self {
            spend: Cache::builder()
                .max_capacity(max_entries)
                .time_to_idle(IDLE)
                .build(),
            max_entries,
        }
    }

    /// Counters currently held (approximate: evictions are applied lazily).
    pub fn entry_count(&self) -> u64 {
        self.spend.entry_count()
    }

    /// What `key_id` has spent in `month`, synchronously.
    pub fn spent_now(&self, key_id: &KeyId, month: Month) -> u64 {
        self.spend
            .get(&(key_id.clone(), month))
            .map_or(0, |total| total.load(Ordering::Acquire))
    }

    /// Adds `micro_cents` to `key_id`'s spend in `month` and returns the new total,
    /// synchronously.
    pub fn charge_now(&self, key_id: &KeyId, month: Month, micro_cents: u64) -> u64 {
        let total = self
            .spend
            .get_with((key_id.clone(), month), || Arc::new(AtomicU64::new(0)));
        let add = |spent: u64| Some(spent.saturating_add(micro_cents));
        match total.fetch_update(Ordering::AcqRel, Ordering::Acquire, add) {
            Ok(previous) | Err(previous) => previous.saturating_add(micro_cents),
        }
    }
}

impl SpendMeter for MemorySpendMeter {
    fn spent(&self, key_id: &KeyId, month: Month) -> impl Future<Output = Result<u64, BackendError>> + Send {
        std::future::ready(Ok(self.spent_now(key_id, month)))
    }

    fn charge(
        &self,
        key_id: &KeyId,
        month: Month,
        micro_cents: u64,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send {
        std::future::ready(Ok(self.charge_now(key_id, month, micro_cents)))
    }

    fn spent_now(&self, key_id: &KeyId, month: Month) -> Option<Result<u64, BackendError>> {
        Some(Ok(MemorySpendMeter::spent_now(self, key_id, month)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARCH: Month = Month { year: 2026, month: 3 };

    #[test]
    fn charges_accumulate_per_key_and_month() {
        let meter = MemorySpendMeter::new();
        let a = KeyId::from("kg_live_aaaaaaaa");
        let b = KeyId::from("kg_live_bbbbbbbb");
        assert_eq!(meter.charge_now(&a, MARCH, 100), 100);
        assert_eq!(meter.charge_now(&a, MARCH, 250), 350);
        assert_eq!(meter.charge_now(&b, MARCH, 1), 1);
        assert_eq!(meter.spent_now(&a, MARCH), 350);
        assert_eq!(meter.spent_now(&a, MARCH.next()), 0);
        assert_eq!(meter.spent_now(&b, MARCH), 1);
    }

    #[test]
    fn concurrent_charges_are_never_lost() {
        let meter = MemorySpendMeter::new();
        let key = KeyId::from("kg_live_aaaaaaaa");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        meter.charge_now(&key, MARCH, 3);
                    }
                });
            }
        });
        assert_eq!(meter.spent_now(&key, MARCH), 120_000);
    }

    #[test]
    fn the_total_saturates_instead_of_wrapping() {
        let meter = MemorySpendMeter::new();
        let key = KeyId::from("kg_live_aaaaaaaa");
        meter.charge_now(&key, MARCH, u64::MAX - 1);
        assert_eq!(meter.charge_now(&key, MARCH, 10), u64::MAX);
        assert_eq!(meter.spent_now(&key, MARCH), u64::MAX);
    }

    #[test]
    fn reading_an_unused_month_stores_nothing() {
        let meter = MemorySpendMeter::new();
        assert_eq!(meter.spent_now(&KeyId::from("kg_live_aaaaaaaa"), MARCH), 0);
        meter.spend.run_pending_tasks();
        assert_eq!(meter.entry_count(), 0);
    }

    #[test]
    fn the_number_of_counters_is_bounded() {
        let meter = MemorySpendMeter::new().max_entries(50);
        for i in 0..500 {
            meter.charge_now(&KeyId::new(format!("kg_live_{i:08}")), MARCH, 1);
        }
        meter.spend.run_pending_tasks();
        assert!(meter.entry_count() <= 50, "{}", meter.entry_count());
    }
}
