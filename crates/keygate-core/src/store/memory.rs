//! [`MemoryStore`]: keys in process memory, for tests and single-process services.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, NaiveDate, Utc};

use super::{Changes, KeyStore, Page, StoreError};
use crate::account::OwnerLimits;
use crate::clock::Month;
use crate::key::KeyId;
use crate::record::{KeyRecord, OwnerId, Refused, SpendDelta, UsageDelta};
use crate::usage::{day_of, DailyUsage};

#[derive(Default)]
struct MemoryInner {
    records: HashMap<KeyId, KeyRecord>,
    /// (sequence, key id) of every revocation and expiry change, in order.
    changes: Vec<(u64, KeyId)>,
    next_seq: u64,
    /// Keys rotated already: each is replaced once.
    replaced: HashSet<KeyId>,
    /// The record of spend, per key and month.
    spend: HashMap<(KeyId, Month), u64>,
    /// Owners' account-wide limits.
    owners: HashMap<OwnerId, OwnerLimits>,
    /// Usage per key per UTC day: (requests, spend, refused).
    daily: BTreeMap<(KeyId, NaiveDate), (u64, u64, Refused)>,
}

/// Keys in process memory. The default for tests and the first run of an example;
/// everything is lost when the process exits.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<MemoryInner>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.inner.read().map(|i| i.records.len()).unwrap_or(0);
        f.debug_struct("MemoryStore").field("keys", &len).finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, f: impl FnOnce(&MemoryInner) -> T) -> Result<T, StoreError> {
        let guard = self
            .inner
            .read()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))?;
        Ok(f(&guard))
    }

    fn write<T>(&self, f: impl FnOnce(&mut MemoryInner) -> T) -> Result<T, StoreError> {
        let mut guard = self
            .inner
            .write()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))?;
        Ok(f(&mut guard))
    }

    fn change(
        &self,
        key_id: &KeyId,
        edit: impl FnOnce(&mut KeyRecord),
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.write(|inner| {
            let record = inner.records.get_mut(key_id)?;
            edit(record);
            let updated = record.clone();
            inner.next_seq += 1;
            let seq = inner.next_seq;
            inner.changes.push((seq, key_id.clone()));
            Some(updated)
        })
    }
}

fn page_of(mut records: Vec<&KeyRecord>, page: Page) -> Vec<KeyRecord> {
    records.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
    records
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(page.limit as usize)
        .cloned()
        .collect()
}

impl KeyStore for MemoryStore {
    async fn find(&self, key_id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.read(|inner| inner.records.get(key_id).cloned())
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.write(|inner| {
            if inner.records.contains_key(&record.key_id) {
                return Err(StoreError::Conflict);
            }
            inner.records.insert(record.key_id.clone(), record.clone());
            Ok(())
        })?
    }

    async fn list_by_owner(&self, owner: &OwnerId, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.read(|inner| {
            page_of(
                inner.records.values().filter(|r| &r.owner == owner).collect(),
                page,
            )
        })
    }

    async fn list(&self, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.read(|inner| page_of(inner.records.values().collect(), page))
    }

    async fn revoke(&self, key_id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError> {
        self.change(key_id, |r| {
            r.revoked_at.get_or_insert(at);
        })
    }

    async fn set_expiry(
        &self,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.change(key_id, |r| r.expires_at = expires_at)
    }

    async fn replace(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        old_expires_at: DateTime<Utc>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.write(|inner| {
            if inner.records.contains_key(&new.key_id) {
                return Err(StoreError::Conflict);
            }
            let replaceable = |r: &KeyRecord| r.revoked_at.is_none();
            match inner.records.get_mut(old) {
                Some(record) if replaceable(record) && !inner.replaced.contains(old) => {
                    record.expires_at = Some(old_expires_at);
                    let updated = record.clone();
                    inner.replaced.insert(old.clone());
                    inner.records.insert(new.key_id.clone(), new.clone());
                    inner.next_seq += 1;
                    let seq = inner.next_seq;
                    inner.changes.push((seq, old.clone()));
                    Ok(Some(updated))
                }
                _ => Ok(None),
            }
        })?
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.write(|inner| {
            for delta in batch {
                if let Some(r) = inner.records.get_mut(&delta.key_id) {
                    let day = (delta.key_id.clone(), day_of(delta.last_used_at));
                    let on_day = inner.daily.entry(day).or_default();
                    on_day.0 = on_day.0.saturating_add(delta.requests);
                    on_day.1 = on_day.1.saturating_add(delta.spend);
                    on_day.2 = on_day.2.plus(delta.refused);
                    // Refusals and charges alone are not a use.
                    if delta.requests == 0 {
                        continue;
                    }
                    r.usage.request_count = r.usage.request_count.saturating_add(delta.requests);
                    if r.usage.last_used_at.is_none_or(|t| t <= delta.last_used_at) {
                        r.usage.last_used_at = Some(delta.last_used_at);
                        r.usage.last_user_agent.clone_from(&delta.last_user_agent);
                    }
                }
            }
        })
    }

    async fn record_spend(&self, batch: &[SpendDelta]) -> Result<(), StoreError> {
        self.write(|inner| {
            for delta in batch {
                let total = inner
                    .spend
                    .entry((delta.key_id.clone(), delta.month))
                    .or_default();
                *total = total.saturating_add(delta.micro_cents);
            }
        })
    }

    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, StoreError> {
        self.read(|inner| inner.spend.get(&(key_id.clone(), month)).copied().unwrap_or(0))
    }

    async fn changes_since(&self, cursor: u64) -> Result<Changes, StoreError> {
        self.read(|inner| {
            let start = inner.changes.partition_point(|(seq, _)| *seq <= cursor);
            Changes {
                keys: inner.changes[start..].iter().map(|(_, id)| id.clone()).collect(),
                cursor: inner.next_seq,
            }
        })
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|inner| inner.records.is_empty())
    }

    async fn daily_usage(&self, owner: &OwnerId, since: NaiveDate) -> Result<Vec<DailyUsage>, StoreError> {
        self.read(|inner| {
            inner
                .daily
                .iter()
                .filter(|((key_id, day), _)| {
                    *day >= since && inner.records.get(key_id).is_some_and(|r| &r.owner == owner)
                })
                .map(|((key_id, day), (requests, spend, refused))| DailyUsage {
                    key_id: key_id.clone(),
                    day: *day,
                    requests: *requests,
                    spend: *spend,
                    refused: *refused,
                })
                .collect()
        })
    }

    async fn owner_limits(&self, owner: &OwnerId) -> Result<Option<OwnerLimits>, StoreError> {
        self.read(|inner| inner.owners.get(owner).cloned())
    }

    async fn set_owner_limits(&self, limits: &OwnerLimits) -> Result<(), StoreError> {
        self.write(|inner| {
            inner.owners.insert(limits.owner.clone(), limits.clone());
            let mut keys: Vec<KeyId> = inner
                .records
                .values()
                .filter(|r| r.owner == limits.owner)
                .map(|r| r.key_id.clone())
                .collect();
            keys.sort();
            for key_id in keys {
                inner.next_seq += 1;
                let seq = inner.next_seq;
                inner.changes.push((seq, key_id));
            }
        })
    }
}
