//! Writing a store: a complete [`KeyStore`] outside keygate-core, checked by the
//! conformance macro exactly as keygate's own stores are. The guide in the docs of
//! `keygate_core::store` shows this file.
//!
//! `OrderedStore` keeps records in a `BTreeMap` ordered as listings are (creation time,
//! then key id), with an index from key id to that order, an index by owner, and the
//! change feed as a list of sequence numbers. A store over a database does the same with
//! a table, its indexes and a change table; the contract is the trait's documentation,
//! and the conformance cases are its executable form.
#![cfg(feature = "conformance")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use keygate_core::clock::Month;
use keygate_core::record::{KeyRecord, SpendDelta, UsageDelta};
use keygate_core::store::{Changes, Page, StoreError};
use keygate_core::{KeyId, KeyStore, OwnerId};

/// Where a record sits in a listing: oldest first, ties by key id.
type Order = (DateTime<Utc>, KeyId);

#[derive(Default)]
struct Tables {
    records: BTreeMap<Order, KeyRecord>,
    by_id: HashMap<KeyId, Order>,
    by_owner: HashMap<OwnerId, BTreeSet<Order>>,
    /// (sequence, key id) of every revocation and expiry change.
    changes: Vec<(u64, KeyId)>,
    /// Keys rotated once already.
    replaced: BTreeSet<KeyId>,
    /// The record of spend, per key and month.
    spend: HashMap<(KeyId, Month), u64>,
}

/// Key records in process memory, as a database would index them.
#[derive(Clone, Default)]
struct OrderedStore(Arc<Mutex<Tables>>);

impl OrderedStore {
    /// The tables, or `Unavailable` when a panic poisoned them: a store reports a broken
    /// backend as an error, never by panicking in the request path.
    fn tables(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.0
            .lock()
            .map_err(|_| StoreError::Unavailable("the tables' lock is poisoned".into()))
    }

    /// Edits one record and appends it to the change feed; `None` for an unknown id.
    fn change(
        &self,
        key_id: &KeyId,
        edit: impl FnOnce(&mut KeyRecord),
    ) -> Result<Option<KeyRecord>, StoreError> {
        let mut tables = self.tables()?;
        let Some(order) = tables.by_id.get(key_id).cloned() else {
            return Ok(None);
        };
        let Some(record) = tables.records.get_mut(&order) else {
            return Err(StoreError::Corrupt(format!(
                "index names a missing record: {key_id}"
            )));
        };
        edit(record);
        let updated = record.clone();
        let seq = tables.changes.last().map_or(1, |(seq, _)| seq + 1);
        tables.changes.push((seq, key_id.clone()));
        Ok(Some(updated))
    }
}

/// One page of `orders`, which come in listing order.
fn page_of<'a>(tables: &'a Tables, orders: impl Iterator<Item = &'a Order>, page: Page) -> Vec<KeyRecord> {
    orders
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(page.limit as usize)
        .filter_map(|order| tables.records.get(order).cloned())
        .collect()
}

impl KeyStore for OrderedStore {
    async fn find(&self, key_id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let tables = self.tables()?;
        let order = tables.by_id.get(key_id);
        Ok(order.and_then(|order| tables.records.get(order)).cloned())
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        if tables.by_id.contains_key(&record.key_id) {
            return Err(StoreError::Conflict);
        }
        let order = (record.created_at, record.key_id.clone());
        tables.by_id.insert(record.key_id.clone(), order.clone());
        let owned = tables.by_owner.entry(record.owner.clone()).or_default();
        owned.insert(order.clone());
        tables.records.insert(order, record.clone());
        Ok(())
    }

    async fn list_by_owner(&self, owner: &OwnerId, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let tables = self.tables()?;
        let Some(orders) = tables.by_owner.get(owner) else {
            return Ok(Vec::new());
        };
        Ok(page_of(&tables, orders.iter(), page))
    }

    async fn list(&self, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let tables = self.tables()?;
        Ok(page_of(&tables, tables.records.keys(), page))
    }

    async fn revoke(&self, key_id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError> {
        // The first revocation's time is kept.
        self.change(key_id, |record| {
            record.revoked_at.get_or_insert(at);
        })
    }

    async fn set_expiry(
        &self,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.change(key_id, |record| record.expires_at = expires_at)
    }

    async fn replace(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        old_expires_at: DateTime<Utc>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        // One lock held throughout: both writes or neither, as a transaction would.
        let mut tables = self.tables()?;
        if tables.by_id.contains_key(&new.key_id) {
            return Err(StoreError::Conflict);
        }
        let Some(order) = tables.by_id.get(old).cloned() else {
            return Ok(None);
        };
        if !tables.replaced.insert(old.clone()) {
            return Ok(None); // Rotated once already.
        }
        let Some(record) = tables.records.get_mut(&order).filter(|r| r.revoked_at.is_none()) else {
            tables.replaced.remove(old);
            return Ok(None);
        };
        record.expires_at = Some(old_expires_at);
        let updated = record.clone();
        let order = (new.created_at, new.key_id.clone());
        tables.by_id.insert(new.key_id.clone(), order.clone());
        let owned = tables.by_owner.entry(new.owner.clone()).or_default();
        owned.insert(order.clone());
        tables.records.insert(order, new.clone());
        let seq = tables.changes.last().map_or(1, |(seq, _)| seq + 1);
        tables.changes.push((seq, old.clone()));
        Ok(Some(updated))
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        for delta in batch {
            let Some(order) = tables.by_id.get(&delta.key_id).cloned() else {
                continue; // A key deleted meanwhile: its usage is dropped.
            };
            let Some(record) = tables.records.get_mut(&order) else {
                continue;
            };
            let usage = &mut record.usage;
            usage.request_count = usage.request_count.saturating_add(delta.requests);
            // Batches may arrive out of order: the latest use wins.
            if usage.last_used_at.is_none_or(|at| at <= delta.last_used_at) {
                usage.last_used_at = Some(delta.last_used_at);
                usage.last_user_agent.clone_from(&delta.last_user_agent);
            }
        }
        Ok(())
    }

    async fn record_spend(&self, batch: &[SpendDelta]) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        for delta in batch {
            let total = tables
                .spend
                .entry((delta.key_id.clone(), delta.month))
                .or_default();
            *total = total.saturating_add(delta.micro_cents);
        }
        Ok(())
    }

    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, StoreError> {
        let tables = self.tables()?;
        Ok(tables.spend.get(&(key_id.clone(), month)).copied().unwrap_or(0))
    }

    async fn changes_since(&self, cursor: u64) -> Result<Changes, StoreError> {
        let tables = self.tables()?;
        let start = tables.changes.partition_point(|(seq, _)| *seq <= cursor);
        Ok(Changes {
            keys: tables.changes[start..].iter().map(|(_, id)| id.clone()).collect(),
            cursor: tables.changes.last().map_or(0, |(seq, _)| *seq),
        })
    }
}

// One `#[tokio::test]` per case of the suite, each against a fresh store.
keygate_core::store_tests!(|| async { OrderedStore::default() });
