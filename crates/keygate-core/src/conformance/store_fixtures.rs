//! What the store cases share: a fixed start instant, and a store set up with a key
//! manager on a manual clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::ManualClock;
use crate::hash::Argon2Hasher;
use crate::manage::KeyManager;
use crate::record::KeyRecord;
use crate::{KeyId, KeyStore, NewKey};

/// 2030-01-01T00:00:00Z: whole seconds, so every store keeps it exactly.
pub(super) fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).expect("a valid instant")
}

pub(super) fn after(at: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    at + chrono::Duration::seconds(secs)
}

pub(super) const DAY: i64 = 86_400;

/// The store shared with a manager on a manual clock and cheap argon2 parameters.
pub(super) fn setup<S: KeyStore>(store: S) -> (Arc<S>, KeyManager, ManualClock) {
    let store = Arc::new(store);
    let clock = ManualClock::new(start());
    let keys = KeyManager::new(Arc::clone(&store))
        .hasher(Argon2Hasher::insecure_fast())
        .clock(clock.clone());
    (store, keys, clock)
}

pub(super) async fn create(keys: &KeyManager, new: NewKey) -> KeyRecord {
    keys.create(new).await.expect("create a key").record
}

pub(super) async fn find<S: KeyStore>(store: &S, key_id: &KeyId) -> Option<KeyRecord> {
    store.find(key_id).await.expect("find a key")
}

pub(super) fn sorted(mut records: Vec<KeyRecord>) -> Vec<KeyRecord> {
    records.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
    records
}

pub(super) fn ids(records: &[KeyRecord]) -> Vec<&str> {
    records.iter().map(|r| r.key_id.as_str()).collect()
}
