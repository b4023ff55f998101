//! [`RecordSpendMeter`]: spend kept in memory for the request path and written to the
//! key store behind, in batches, so that a restart keeps every cap.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use tokio::sync::OnceCell;

use super::{Month, SpendMeter};
use crate::backend::{BackendError, Budget};
use crate::key::KeyId;
use crate::record::SpendDelta;
use crate::store::{detached, DynKeyStore, KeyStore, StoreError};

/// Counters held by default.
const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Longer than any month, so that a counter outlives the month it counts.
const IDLE: Duration = Duration::from_secs(32 * 86_400);
/// (key, month) totals a store outage may hold back at most; beyond, charges still
/// count in memory but their record is dropped, and that is logged.
const MAX_PENDING: usize = 100_000;

/// A [`SpendMeter`] whose record is the key store ([`KeyStore::record_spend`]): each
/// (key, month) total is read from the store on first use and counted in memory after
/// that, and charges are written behind in batches by [`flush`](SpendMeter::flush)
/// (the gate's background task calls it with the usage flush, and on shutdown).
///
/// What it promises:
/// - **A restart keeps every cap**: a new process reads the month's total back from the
///   store before it admits the key's first capped request.
/// - **No charge is lost**: charges wait in a batch, merged per (key, month), until the
///   store takes them; a failed write keeps them for the next flush. After a flush the
///   store's total is exactly the sum of the costs charged.
/// - The request path reads memory only (`spent_now`), once the total is loaded.
///
/// Across instances each one counts its own charges on top of what it read, so two
/// replicas may together overspend by what each charged since its first read; a
/// shared counter (Redis) closes that.
///
/// ```
/// use keygate_core::spend::{Month, RecordSpendMeter, SpendMeter};
/// use keygate_core::{KeyId, MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let key = KeyId::from("kg_live_a1b2c3d4");
/// let march = Month { year: 2026, month: 3 };
///
/// let meter = RecordSpendMeter::new(store.clone());
/// meter.charge(&key, march, 1500).await.unwrap();
/// meter.flush().await;
///
/// // A new process over the same store starts from the recorded total.
/// let restarted = RecordSpendMeter::new(store);
/// assert_eq!(restarted.spent(&key, march).await.unwrap(), 1500);
/// # });
/// ```
#[derive(Clone)]
pub struct RecordSpendMeter {
    inner: Arc<Inner>,
    /// Each read of a recorded total, within its timeout and behind a breaker (shared
    /// by the clones).
    budget: Budget,
}

struct Inner {
    store: Arc<dyn DynKeyStore>,
    totals: Cache<(KeyId, Month), Arc<Total>>,
    /// Charges not yet written, merged per (key, month).
    pending: Mutex<HashMap<(KeyId, Month), u64>>,
}

/// One (key, month): its total, once read from the store.
#[derive(Default)]
struct Total {
    spent: AtomicU64,
    loaded: OnceCell<()>,
}

impl fmt::Debug for RecordSpendMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSpendMeter")
            .field("entries", &self.inner.totals.entry_count())
            .finish_non_exhaustive()
    }
}

impl RecordSpendMeter {
    /// A meter recording spend in `store` (the gate's own store, usually: a clone of a
    /// `SqlStore` or `MemoryStore` shares its connections or its map).
    pub fn new(store: impl KeyStore) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                totals: Cache::builder()
                    .max_capacity(DEFAULT_MAX_ENTRIES)
                    .time_to_idle(IDLE)
                    .build(),
                pending: Mutex::default(),
            }),
            budget: Budget::default(),
        }
    }

    /// How long the first use of a (key, month) waits to read its recorded total
    /// ([`DEFAULT_TIMEOUT`](crate::backend::DEFAULT_TIMEOUT), 50 ms, by default). A
    /// read that fails or takes longer fails the call (the gate answers as its
    /// [`FailMode`](crate::backend::FailMode) says) and the charge is still recorded; a
    /// few in a row open a breaker that answers at once until a probe finds the store
    /// back.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.budget = Budget::new(timeout);
        self
    }

    fn total(&self, key_id: &KeyId, month: Month) -> Arc<Total> {
        self.inner
            .totals
            .get_with((key_id.clone(), month), || Arc::new(Total::default()))
    }

    /// Reads the recorded total into `total`, once; concurrent first uses wait for one
    /// read. Charges are counted only after it, so none is counted twice. The wait and
    /// the read together take at most the budget's timeout.
    async fn load(&self, total: &Total, key_id: &KeyId, month: Month) -> Result<(), BackendError> {
        if total.loaded.initialized() {
            return Ok(());
        }
        let read = total.loaded.get_or_try_init(|| async {
            let (store, id) = (Arc::clone(&self.inner.store), key_id.clone());
            let recorded = detached(async move { store.spent(&id, month).await }).await?;
            total.spent.fetch_add(recorded, Ordering::AcqRel);
            Ok::<(), StoreError>(())
        });
        self.budget
            .call(read, StoreError::is_outage)
            .await
            .map(|_| ())
            .map_err(|e| BackendError(format!("could not read the recorded spend: {e}")))
    }

    /// Adds `micro_cents` to what waits to be written.
    fn hold(&self, key_id: &KeyId, month: Month, micro_cents: u64) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        merge(&mut pending, (key_id.clone(), month), micro_cents);
    }
}

/// Adds `micro_cents` to `key`'s entry, if there is room for a new one.
fn merge(pending: &mut HashMap<(KeyId, Month), u64>, key: (KeyId, Month), micro_cents: u64) {
    if pending.len() >= MAX_PENDING && !pending.contains_key(&key) {
        tracing::error!(key_id = %key.0, micro_cents, "spend batch full: this charge is not recorded");
        return;
    }
    let held = pending.entry(key).or_default();
    *held = held.saturating_add(micro_cents);
}

impl SpendMeter for RecordSpendMeter {
    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, BackendError> {
        let total = self.total(key_id, month);
        self.load(&total, key_id, month).await?;
        Ok(total.spent.load(Ordering::Acquire))
    }

    async fn charge(&self, key_id: &KeyId, month: Month, micro_cents: u64) -> Result<u64, BackendError> {
        let total = self.total(key_id, month);
        if let Err(error) = self.load(&total, key_id, month).await {
            // The record still gets the charge; the total in memory, not loaded yet, will
            // read it back from the store once it has been written.
            self.hold(key_id, month, micro_cents);
            return Err(error);
        }
        // Held only once the total is loaded: a charge flushed before the load would
        // otherwise be counted twice, once in what the load read and once here.
        self.hold(key_id, month, micro_cents);
        let add = |spent: u64| Some(spent.saturating_add(micro_cents));
        match total.spent.fetch_update(Ordering::AcqRel, Ordering::Acquire, add) {
            Ok(previous) | Err(previous) => Ok(previous.saturating_add(micro_cents)),
        }
    }

    fn spent_now(&self, key_id: &KeyId, month: Month) -> Option<Result<u64, BackendError>> {
        let total = self.inner.totals.get(&(key_id.clone(), month))?;
        total
            .loaded
            .initialized()
            .then(|| Ok(total.spent.load(Ordering::Acquire)))
    }

    async fn flush(&self) -> usize {
        let batch: Vec<SpendDelta> = {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *pending)
                .into_iter()
                .map(|((key_id, month), micro_cents)| SpendDelta {
                    key_id,
                    month,
                    micro_cents,
                })
                .collect()
        };
        if batch.is_empty() {
            return 0;
        }
        match self.inner.store.record_spend(&batch).await {
            Ok(()) => batch.len(),
            Err(error) => {
                tracing::warn!(%error, totals = batch.len(), "spend flush failed; will retry");
                let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                for delta in batch {
                    merge(&mut pending, (delta.key_id, delta.month), delta.micro_cents);
                }
                0
            }
        }
    }
}
