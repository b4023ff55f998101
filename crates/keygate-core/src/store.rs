//! Where keys live: the [`KeyStore`] trait and the in-memory [`MemoryStore`].
//!
//! A backend implements [`KeyStore`] and is done when it passes the conformance suite
//! (`keygate_core::conformance`, feature `conformance`) unchanged.
//!
//! # Example
//! ```
//! use keygate_core::{KeyStore, MemoryStore, KeyId};
//!
//! # tokio_test_block_on(async {
//! let store = MemoryStore::new();
//! assert!(store.find(&KeyId::from("kg_live_missing0")).await.unwrap().is_none());
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::key::KeyId;
use crate::record::{KeyRecord, OwnerId, UsageDelta};

/// A boxed future, for the object-safe store used inside the gate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A key with this id already exists.
    #[error("key id already exists")]
    Conflict,
    /// The store cannot be reached or failed; the request may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store holds data this version cannot read.
    #[error("store holds unreadable data: {0}")]
    Corrupt(String),
}

/// A page of a listing: `limit` records after skipping `offset`, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Records to skip.
    pub offset: u64,
    /// Records to return at most (1 to 1000).
    pub limit: u32,
}

impl Page {
    /// The largest page a store returns.
    pub const MAX_LIMIT: u32 = 1000;

    /// `limit` records after `offset`; `limit` is clamped to 1..=1000.
    pub fn new(offset: u64, limit: u32) -> Self {
        Self {
            offset,
            limit: limit.clamp(1, Self::MAX_LIMIT),
        }
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new(0, 100)
    }
}

/// Keys changed (revoked, expiry moved) since a cursor: the revocation feed that running
/// services poll so a key revoked elsewhere is refused within seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Keys whose cached state is stale.
    pub keys: Vec<KeyId>,
    /// Pass this back next time.
    pub cursor: u64,
}

/// Storage of key records. Implement it with `async fn` or `impl Future + Send`.
///
/// Contract (checked by the conformance suite): `insert` refuses a duplicate key id with
/// [`StoreError::Conflict`]; `revoke` and `set_expiry` return the updated record, or
/// `None` for an unknown id, and append the id to the change feed; `revoke` keeps the
/// first `revoked_at`; listings are ordered by `created_at`, then key id.
pub trait KeyStore: Send + Sync + 'static {
    /// The record with this key id.
    fn find(&self, key_id: &KeyId) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Stores a new record.
    fn insert(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The keys of one owner.
    fn list_by_owner(
        &self,
        owner: &OwnerId,
        page: Page,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Every key.
    fn list(&self, page: Page) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Marks a key revoked at `at`.
    fn revoke(
        &self,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Sets (or clears) a key's expiry.
    fn set_expiry(
        &self,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Adds a batch of usage; unknown ids are skipped.
    fn record_usage(&self, batch: &[UsageDelta]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Keys changed after `cursor`, and the cursor of the newest change to pass next
    /// time. `0` reads from the start; a cursor beyond the newest change (`u64::MAX`)
    /// returns no keys and the newest cursor: "from now on".
    fn changes_since(&self, cursor: u64) -> impl Future<Output = Result<Changes, StoreError>> + Send;

    /// Whether the store holds no key at all.
    fn is_empty(&self) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async { Ok(self.list(Page::new(0, 1)).await?.is_empty()) }
    }
}

/// The object-safe form of [`KeyStore`], implemented for every store. The gate holds an
/// `Arc<dyn DynKeyStore>` so that its types stay free of a store parameter; the boxing
/// costs one allocation per store call, and store calls are the cold path.
pub trait DynKeyStore: Send + Sync + 'static {
    /// See [`KeyStore::find`].
    fn find<'a>(&'a self, key_id: &'a KeyId) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>>;
    /// See [`KeyStore::insert`].
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`KeyStore::list_by_owner`].
    fn list_by_owner<'a>(
        &'a self,
        owner: &'a OwnerId,
        page: Page,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>>;
    /// See [`KeyStore::list`].
    fn list(&self, page: Page) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>>;
    /// See [`KeyStore::revoke`].
    fn revoke<'a>(
        &'a self,
        key_id: &'a KeyId,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>>;
    /// See [`KeyStore::set_expiry`].
    fn set_expiry<'a>(
        &'a self,
        key_id: &'a KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>>;
    /// See [`KeyStore::record_usage`].
    fn record_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`KeyStore::changes_since`].
    fn changes_since(&self, cursor: u64) -> BoxFuture<'_, Result<Changes, StoreError>>;
    /// See [`KeyStore::is_empty`].
    fn is_empty(&self) -> BoxFuture<'_, Result<bool, StoreError>>;
}

impl<S: KeyStore> DynKeyStore for S {
    fn find<'a>(&'a self, key_id: &'a KeyId) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::find(self, key_id))
    }
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::insert(self, record))
    }
    fn list_by_owner<'a>(
        &'a self,
        owner: &'a OwnerId,
        page: Page,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list_by_owner(self, owner, page))
    }
    fn list(&self, page: Page) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list(self, page))
    }
    fn revoke<'a>(
        &'a self,
        key_id: &'a KeyId,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::revoke(self, key_id, at))
    }
    fn set_expiry<'a>(
        &'a self,
        key_id: &'a KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::set_expiry(self, key_id, expires_at))
    }
    fn record_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::record_usage(self, batch))
    }
    fn changes_since(&self, cursor: u64) -> BoxFuture<'_, Result<Changes, StoreError>> {
        Box::pin(KeyStore::changes_since(self, cursor))
    }
    fn is_empty(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(KeyStore::is_empty(self))
    }
}

/// A shared store is a store, so one store can back a gate and a CLI-like tool at once.
impl<S: KeyStore> KeyStore for Arc<S> {
    fn find(&self, key_id: &KeyId) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        S::find(self, key_id)
    }
    fn insert(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::insert(self, record)
    }
    fn list_by_owner(
        &self,
        owner: &OwnerId,
        page: Page,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send {
        S::list_by_owner(self, owner, page)
    }
    fn list(&self, page: Page) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send {
        S::list(self, page)
    }
    fn revoke(
        &self,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        S::revoke(self, key_id, at)
    }
    fn set_expiry(
        &self,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        S::set_expiry(self, key_id, expires_at)
    }
    fn record_usage(&self, batch: &[UsageDelta]) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::record_usage(self, batch)
    }
    fn changes_since(&self, cursor: u64) -> impl Future<Output = Result<Changes, StoreError>> + Send {
        S::changes_since(self, cursor)
    }
    fn is_empty(&self) -> impl Future<Output = Result<bool, StoreError>> + Send {
        S::is_empty(self)
    }
}

#[derive(Default)]
struct MemoryInner {
    records: HashMap<KeyId, KeyRecord>,
    /// (sequence, key id) of every revocation and expiry change, in order.
    changes: Vec<(u64, KeyId)>,
    next_seq: u64,
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

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.write(|inner| {
            for delta in batch {
                if let Some(r) = inner.records.get_mut(&delta.key_id) {
                    r.usage.request_count = r.usage.request_count.saturating_add(delta.requests);
                    if r.usage.last_used_at.is_none_or(|t| t <= delta.last_used_at) {
                        r.usage.last_used_at = Some(delta.last_used_at);
                        r.usage.last_user_agent.clone_from(&delta.last_user_agent);
                    }
                }
            }
        })
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
}
