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
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! # Writing a store
//!
//! A store is a type that implements [`KeyStore`]: eight async methods over
//! [`KeyRecord`]s, whose contract is written on the trait. It is done when the
//! conformance suite passes against it unchanged. In a test file of the store's crate,
//! with keygate-core's `conformance` feature among its dev-dependencies:
//!
//! ```rust,ignore
//! keygate_core::store_tests!(|| async { MyStore::connect_to_a_fresh_database().await });
//! ```
//!
//! expands into one `#[tokio::test]` per case of `keygate_core::conformance::store`
//! (`harness = …` sets up and tears down per case instead). Keep the store's errors as
//! [`StoreError`]s (`Unavailable` for a backend that is down, which the gate answers with
//! 503), and never log a record's `secret_hash`.
//!
//! Here is a complete store outside keygate-core, a `BTreeMap` indexed the way a
//! database would be, that passes the suite: it is the test file
//! `crates/keygate-core/tests/custom_store.rs`, which CI runs.
//!
#![doc = concat!("```rust,ignore\n", include_str!("../../tests/custom_store.rs"), "```")]
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::mpsc;

use crate::account::OwnerLimits;
use crate::clock::Month;
use crate::key::KeyId;
use crate::record::{KeyRecord, OwnerId, SpendDelta, UsageDelta};
use crate::usage::DailyUsage;

mod memory;

pub use memory::MemoryStore;

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
    /// The store does not keep this (a custom store without owner limits).
    #[error("this store does not keep {0}")]
    Unsupported(&'static str),
}

impl StoreError {
    /// Whether the store is down or failing (the call may succeed later), rather than
    /// refusing this one call: what counts against a [`Breaker`](crate::backend::Breaker).
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Runs the store read `read` in a task of its own and waits for its answer. A caller
/// that stops waiting (at a [`Budget`](crate::backend::Budget)'s timeout) leaves the read
/// to finish: a connection it is opening is kept (a new connection to a distant database
/// takes several round trips, and would otherwise be thrown away by every timed-out read,
/// so the pool never grew), and no query is cut in half. Only for reads; outside a Tokio
/// runtime it runs in place.
pub async fn detached<T: Send + 'static>(
    read: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn(read)
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("the store read failed: {e}")))),
        Err(_) => read.await,
    }
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

/// What a store pushes as it happens (PostgreSQL's LISTEN/NOTIFY): see
/// [`KeyStore::subscribe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// This key was revoked, rotated or had its expiry moved: forget what is cached.
    Changed(KeyId),
    /// The push dropped and came back: what changed meanwhile is read from the change
    /// feed ([`KeyStore::changes_since`]), and exactly those keys are forgotten.
    Lost,
}

/// Storage of key records. Implement it with `async fn` or `impl Future + Send`.
///
/// Contract (checked by the conformance suite): `insert` refuses a duplicate key id with
/// [`StoreError::Conflict`]; `revoke` and `set_expiry` return the updated record, or
/// `None` for an unknown id, and append the id to the change feed; `revoke` keeps the
/// first `revoked_at`; `replace` is one transaction, once per key; listings are ordered
/// by `created_at`, then key id.
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

    /// Rotation, in one step: inserts `new` and sets `old`'s expiry to `old_expires_at`,
    /// both or neither, and only while `old` exists, is not revoked and has never been
    /// replaced (a key is rotated once; concurrent rotations of one key make one
    /// successor). Returns the updated `old`; `None` when it is unknown, revoked or
    /// already replaced, with nothing written; [`StoreError::Conflict`] when `new`'s key
    /// id exists, with nothing written. `old` joins the change feed.
    fn replace(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        old_expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Adds a batch of usage; unknown ids are skipped.
    fn record_usage(&self, batch: &[UsageDelta]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a batch of spend to each (key, month)'s recorded total: the record of spend
    /// that a restart or another instance reads back. Totals saturate, never wrap.
    fn record_spend(&self, batch: &[SpendDelta]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// What `key_id` has spent in `month`, as recorded; 0 when nothing was.
    fn spent(&self, key_id: &KeyId, month: Month) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Keys changed after `cursor`, and the cursor of the newest change to pass next
    /// time. `0` reads from the start; a cursor beyond the newest change (`u64::MAX`)
    /// returns no keys and the newest cursor: "from now on".
    fn changes_since(&self, cursor: u64) -> impl Future<Output = Result<Changes, StoreError>> + Send;

    /// Whether the store holds no key at all.
    fn is_empty(&self) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async { Ok(self.list(Page::new(0, 1)).await?.is_empty()) }
    }

    /// The owner's keys' requests per UTC day from `since` on, ordered by key id, then
    /// day (days without use are absent). `record_usage` adds each delta's requests to
    /// the day of its `last_used_at`; days older than
    /// [`RETENTION_DAYS`](crate::usage::RETENTION_DAYS) may be dropped. The default
    /// keeps none.
    fn daily_usage(
        &self,
        owner: &OwnerId,
        since: NaiveDate,
    ) -> impl Future<Output = Result<Vec<DailyUsage>, StoreError>> + Send {
        let _ = (owner, since);
        std::future::ready(Ok(Vec::new()))
    }

    /// An owner's account-wide limits ([`OwnerLimits`]), `None` when none were set. Read
    /// with each key on its cold verification. The default keeps none.
    fn owner_limits(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Option<OwnerLimits>, StoreError>> + Send {
        let _ = owner;
        std::future::ready(Ok(None))
    }

    /// Sets (replaces) an owner's limits and appends every key of the owner to the
    /// change feed, in one transaction, so that every instance re-reads them. The
    /// default refuses: [`StoreError::Unsupported`].
    fn set_owner_limits(&self, limits: &OwnerLimits) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = limits;
        std::future::ready(Err(StoreError::Unsupported("owner limits")))
    }

    /// Pushes every change as it commits, when the store can (PostgreSQL): the gate's
    /// background task then forgets a key revoked by another process within
    /// milliseconds, and keeps polling the change feed as the backstop. `None` (the
    /// default) when the store cannot push: the feed is polled only.
    fn subscribe(&self) -> impl Future<Output = Option<mpsc::Receiver<Pushed>>> + Send {
        std::future::ready(None)
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
    /// See [`KeyStore::replace`].
    fn replace<'a>(
        &'a self,
        old: &'a KeyId,
        new: &'a KeyRecord,
        old_expires_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>>;
    /// See [`KeyStore::record_usage`].
    fn record_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`KeyStore::record_spend`].
    fn record_spend<'a>(&'a self, batch: &'a [SpendDelta]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`KeyStore::spent`].
    fn spent<'a>(&'a self, key_id: &'a KeyId, month: Month) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// See [`KeyStore::changes_since`].
    fn changes_since(&self, cursor: u64) -> BoxFuture<'_, Result<Changes, StoreError>>;
    /// See [`KeyStore::is_empty`].
    fn is_empty(&self) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// See [`KeyStore::subscribe`].
    fn subscribe(&self) -> BoxFuture<'_, Option<mpsc::Receiver<Pushed>>>;
    /// See [`KeyStore::owner_limits`].
    fn owner_limits<'a>(
        &'a self,
        owner: &'a OwnerId,
    ) -> BoxFuture<'a, Result<Option<OwnerLimits>, StoreError>>;
    /// See [`KeyStore::set_owner_limits`].
    fn set_owner_limits<'a>(&'a self, limits: &'a OwnerLimits) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`KeyStore::daily_usage`].
    fn daily_usage<'a>(
        &'a self,
        owner: &'a OwnerId,
        since: NaiveDate,
    ) -> BoxFuture<'a, Result<Vec<DailyUsage>, StoreError>>;
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
    fn replace<'a>(
        &'a self,
        old: &'a KeyId,
        new: &'a KeyRecord,
        old_expires_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::replace(self, old, new, old_expires_at))
    }
    fn record_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::record_usage(self, batch))
    }
    fn record_spend<'a>(&'a self, batch: &'a [SpendDelta]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::record_spend(self, batch))
    }
    fn spent<'a>(&'a self, key_id: &'a KeyId, month: Month) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(KeyStore::spent(self, key_id, month))
    }
    fn changes_since(&self, cursor: u64) -> BoxFuture<'_, Result<Changes, StoreError>> {
        Box::pin(KeyStore::changes_since(self, cursor))
    }
    fn is_empty(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(KeyStore::is_empty(self))
    }
    fn subscribe(&self) -> BoxFuture<'_, Option<mpsc::Receiver<Pushed>>> {
        Box::pin(KeyStore::subscribe(self))
    }
    fn owner_limits<'a>(
        &'a self,
        owner: &'a OwnerId,
    ) -> BoxFuture<'a, Result<Option<OwnerLimits>, StoreError>> {
        Box::pin(KeyStore::owner_limits(self, owner))
    }
    fn set_owner_limits<'a>(&'a self, limits: &'a OwnerLimits) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::set_owner_limits(self, limits))
    }
    fn daily_usage<'a>(
        &'a self,
        owner: &'a OwnerId,
        since: NaiveDate,
    ) -> BoxFuture<'a, Result<Vec<DailyUsage>, StoreError>> {
        Box::pin(KeyStore::daily_usage(self, owner, since))
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
    fn replace(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        old_expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        S::replace(self, old, new, old_expires_at)
    }
    fn record_usage(&self, batch: &[UsageDelta]) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::record_usage(self, batch)
    }
    fn record_spend(&self, batch: &[SpendDelta]) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::record_spend(self, batch)
    }
    fn spent(&self, key_id: &KeyId, month: Month) -> impl Future<Output = Result<u64, StoreError>> + Send {
        S::spent(self, key_id, month)
    }
    fn changes_since(&self, cursor: u64) -> impl Future<Output = Result<Changes, StoreError>> + Send {
        S::changes_since(self, cursor)
    }
    fn is_empty(&self) -> impl Future<Output = Result<bool, StoreError>> + Send {
        S::is_empty(self)
    }
    fn subscribe(&self) -> impl Future<Output = Option<mpsc::Receiver<Pushed>>> + Send {
        S::subscribe(self)
    }
    fn owner_limits(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Option<OwnerLimits>, StoreError>> + Send {
        S::owner_limits(self, owner)
    }
    fn set_owner_limits(&self, limits: &OwnerLimits) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::set_owner_limits(self, limits)
    }
    fn daily_usage(
        &self,
        owner: &OwnerId,
        since: NaiveDate,
    ) -> impl Future<Output = Result<Vec<DailyUsage>, StoreError>> + Send {
        S::daily_usage(self, owner, since)
    }
}
