//! The key store as the record of [`RedisSpendMeter`](crate::RedisSpendMeter)'s
//! charges: each instance's own charges, merged per (key, month) and written behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keygate_core::backend::{BackendError, Budget};
use keygate_core::record::SpendDelta;
use keygate_core::spend::Month;
use keygate_core::store::{detached, DynKeyStore, KeyStore, StoreError};
use keygate_core::KeyId;

/// (key, month) totals a store outage may hold back at most; beyond, a charge still
/// counts in Redis but its record is dropped, and that is logged.
const MAX_PENDING: usize = 100_000;

pub(crate) struct Record {
    store: Arc<dyn DynKeyStore>,
    /// Charges not yet written, merged per (key, month).
    pending: Mutex<HashMap<(KeyId, Month), u64>>,
    /// One flush at a time, so that a reseed waits for a flush under way to land.
    flushing: tokio::sync::Mutex<()>,
    /// The reads on the request path (a reseed, a total during an outage), each within
    /// its timeout and behind a breaker.
    budget: Budget,
}

impl Record {
    pub(crate) fn new(store: impl KeyStore) -> Self {
        Self {
            store: Arc::new(store),
            pending: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
            budget: Budget::default(),
        }
    }

    /// Adds a charge to what waits to be written.
    pub(crate) fn hold(&self, key_id: &KeyId, month: Month, micro_cents: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        merge(&mut pending, (key_id.clone(), month), micro_cents);
    }

    /// The total to seed a missing counter with: the recorded one plus this instance's
    /// charges of this key not yet written. No flush runs meanwhile (the flush lock is
    /// held), so each of this instance's charges is in exactly one of the two. Only
    /// reads, within the budget: a hung store costs the request its timeout, and no
    /// write is cut short.
    pub(crate) async fn seed(&self, key_id: &KeyId, month: Month) -> Result<u64, BackendError> {
        let read = async {
            let _one = self.flushing.lock().await;
            let recorded = read_spent(&self.store, key_id, month).await?;
            Ok::<u64, StoreError>(recorded.saturating_add(self.held(key_id, month)))
        };
        self.budget
            .call(read, StoreError::is_outage)
            .await
            .map_err(|e| BackendError(format!("could not read the recorded spend: {e}")))
    }

    /// This instance's view of a total: the recorded one plus its unwritten charges.
    pub(crate) async fn view(&self, key_id: &KeyId, month: Month) -> Result<u64, BackendError> {
        let recorded = self
            .budget
            .call(read_spent(&self.store, key_id, month), StoreError::is_outage)
            .await
            .map_err(|e| BackendError(format!("could not read the recorded spend: {e}")))?;
        Ok(recorded.saturating_add(self.held(key_id, month)))
    }

    /// This instance's charges of `key_id` in `month` not yet written.
    fn held(&self, key_id: &KeyId, month: Month) -> u64 {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(key_id.clone(), month))
            .copied()
            .unwrap_or(0)
    }

    /// Writes what is pending in one batch; on failure keeps it for the next flush.
    pub(crate) async fn flush(&self) -> usize {
        let _one = self.flushing.lock().await;
        self.write_pending().await
    }

    /// [`flush`](Self::flush), with the flush lock held by the caller.
    async fn write_pending(&self) -> usize {
        let batch: Vec<SpendDelta> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
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
        match self.store.record_spend(&batch).await {
            Ok(()) => batch.len(),
            Err(error) => {
                tracing::warn!(%error, totals = batch.len(), "spend flush failed; will retry");
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for delta in batch {
                    merge(&mut pending, (delta.key_id, delta.month), delta.micro_cents);
                }
                0
            }
        }
    }
}

/// The recorded total of `key_id` in `month`, read in a task of its own (see
/// [`detached`]).
async fn read_spent(store: &Arc<dyn DynKeyStore>, key_id: &KeyId, month: Month) -> Result<u64, StoreError> {
    let (store, id) = (Arc::clone(store), key_id.clone());
    detached(async move { store.spent(&id, month).await }).await
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
