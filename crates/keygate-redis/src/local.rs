//! The `Local` outage policy of [`RedisSpendMeter`](crate::RedisSpendMeter): while Redis
//! cannot be used, charges are counted here ("owed" to Redis) on top of the last total
//! Redis reported, and added to Redis when it answers again.

use std::collections::HashMap;
use std::sync::Mutex;

use keygate_core::spend::Month;
use keygate_core::KeyId;

/// Totals remembered at most; past it they are forgotten (an outage then reads the key
/// store for a key's total instead).
const MAX_SEEN: usize = 100_000;

type Totals = Mutex<HashMap<(KeyId, Month), u64>>;

#[derive(Default)]
pub(crate) struct Local {
    /// Charges Redis has not counted yet, per (key, month).
    owed: Totals,
    /// The last total Redis reported, per (key, month).
    seen: Totals,
}

fn lock(totals: &Totals) -> std::sync::MutexGuard<'_, HashMap<(KeyId, Month), u64>> {
    totals.lock().unwrap_or_else(|p| p.into_inner())
}

impl Local {
    /// What is owed to Redis for this key, now taken (to be charged with the next call).
    pub(crate) fn take_owed(&self, key_id: &KeyId, month: Month) -> u64 {
        lock(&self.owed).remove(&(key_id.clone(), month)).unwrap_or(0)
    }

    /// Adds `micro_cents` to what is owed to Redis.
    pub(crate) fn owe(&self, key_id: &KeyId, month: Month, micro_cents: u64) {
        if micro_cents == 0 {
            return;
        }
        let mut owed = lock(&self.owed);
        let entry = owed.entry((key_id.clone(), month)).or_default();
        *entry = entry.saturating_add(micro_cents);
    }

    pub(crate) fn owed(&self, key_id: &KeyId, month: Month) -> u64 {
        lock(&self.owed)
            .get(&(key_id.clone(), month))
            .copied()
            .unwrap_or(0)
    }

    /// Every (key, month) with something owed.
    pub(crate) fn owing(&self) -> Vec<(KeyId, Month)> {
        lock(&self.owed).keys().cloned().collect()
    }

    /// Remembers the total Redis reported.
    pub(crate) fn see(&self, key_id: &KeyId, month: Month, total: u64) {
        let mut seen = lock(&self.seen);
        if seen.len() >= MAX_SEEN && !seen.contains_key(&(key_id.clone(), month)) {
            seen.clear();
        }
        seen.insert((key_id.clone(), month), total);
    }

    pub(crate) fn seen(&self, key_id: &KeyId, month: Month) -> Option<u64> {
        lock(&self.seen).get(&(key_id.clone(), month)).copied()
    }
}
