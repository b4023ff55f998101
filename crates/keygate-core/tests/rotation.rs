//! Rotation cannot be gamed: one step in the store, once per key, never for a revoked
//! key, and a failure leaves no second live key behind.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keygate_core::clock::Month;
use keygate_core::hash::Argon2Hasher;
use keygate_core::manage::KeyManager;
use keygate_core::record::{KeyRecord, SpendDelta, UsageDelta};
use keygate_core::store::{Changes, Page, StoreError};
use keygate_core::{KeyId, KeyStore, MemoryStore, NewKey, OwnerId};

fn manager(store: impl KeyStore) -> KeyManager {
    KeyManager::new(store).hasher(Argon2Hasher::insecure_fast())
}

async fn keys_of(store: &impl KeyStore) -> Vec<KeyRecord> {
    store.list(Page::default()).await.unwrap()
}

#[tokio::test]
async fn a_key_is_rotated_once_even_while_it_is_still_in_its_grace_period() {
    let store = Arc::new(MemoryStore::new());
    let keys = manager(Arc::clone(&store));
    let old = keys.create(NewKey::new("acct", "prod")).await.unwrap();
    let hour = Duration::from_secs(3600);
    keys.rotate(&old.record.key_id, hour)
        .await
        .expect("the first rotation");
    // The old key still works for an hour, but it has been replaced: rotating it again
    // would mint a second live successor.
    assert!(keys.rotate(&old.record.key_id, hour).await.is_err());
    assert_eq!(keys_of(&*store).await.len(), 2, "the old key and one successor");
}

#[tokio::test]
async fn concurrent_rotations_of_one_key_mint_one_successor() {
    let store = Arc::new(MemoryStore::new());
    let keys = Arc::new(manager(Arc::clone(&store)));
    let old = keys.create(NewKey::new("acct", "prod")).await.unwrap();
    let rotations: Vec<_> = (0..8)
        .map(|_| {
            let (keys, id) = (Arc::clone(&keys), old.record.key_id.clone());
            tokio::spawn(async move { keys.rotate(&id, Duration::from_secs(60)).await.is_ok() })
        })
        .collect();
    let mut won = 0;
    for rotation in rotations {
        won += usize::from(rotation.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one rotation succeeds");
    assert_eq!(keys_of(&*store).await.len(), 2);
}

#[tokio::test]
async fn a_revoked_key_cannot_be_rotated() {
    let store = Arc::new(MemoryStore::new());
    let keys = manager(Arc::clone(&store));
    let old = keys.create(NewKey::new("acct", "prod")).await.unwrap();
    keys.revoke(&old.record.key_id).await.unwrap();
    assert!(keys.rotate(&old.record.key_id, Duration::ZERO).await.is_err());
    assert_eq!(keys_of(&*store).await.len(), 1);
}

/// A store whose every change to an existing key fails: the database went away half way
/// through a rotation.
struct FailingChanges(MemoryStore);

impl KeyStore for FailingChanges {
    async fn find(&self, key_id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.0.find(key_id).await
    }
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.0.insert(record).await
    }
    async fn list_by_owner(&self, owner: &OwnerId, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.0.list_by_owner(owner, page).await
    }
    async fn list(&self, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.0.list(page).await
    }
    async fn revoke(&self, _: &KeyId, _: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError> {
        Err(StoreError::Unavailable("gone".into()))
    }
    async fn set_expiry(&self, _: &KeyId, _: Option<DateTime<Utc>>) -> Result<Option<KeyRecord>, StoreError> {
        Err(StoreError::Unavailable("gone".into()))
    }
    async fn replace(
        &self,
        _: &KeyId,
        _: &KeyRecord,
        _: DateTime<Utc>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        Err(StoreError::Unavailable("gone".into()))
    }
    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.0.record_usage(batch).await
    }
    async fn record_spend(&self, batch: &[SpendDelta]) -> Result<(), StoreError> {
        self.0.record_spend(batch).await
    }
    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, StoreError> {
        self.0.spent(key_id, month).await
    }
    async fn changes_since(&self, cursor: u64) -> Result<Changes, StoreError> {
        self.0.changes_since(cursor).await
    }
}

#[tokio::test]
async fn a_failed_rotation_leaves_no_second_live_key() {
    let inner = MemoryStore::new();
    let keys = manager(FailingChanges(inner.clone()));
    let old = keys.create(NewKey::new("acct", "prod")).await.unwrap();
    assert!(keys.rotate(&old.record.key_id, Duration::ZERO).await.is_err());
    let left = keys_of(&inner).await;
    assert_eq!(left.len(), 1, "no orphan successor");
    assert_eq!(left[0].key_id, old.record.key_id);
    assert_eq!(left[0].expires_at, None, "the old key is as it was");
}
