//! Spend that survives: `RecordSpendMeter` writes charges to the key store behind, so a
//! restarted process keeps every cap, a failed write loses nothing, and the record adds
//! up exactly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use keygate_core::clock::ManualClock;
use keygate_core::hash::Argon2Hasher;
use keygate_core::record::{KeyRecord, SpendDelta, UsageDelta};
use keygate_core::spend::{Month, RecordSpendMeter, SpendMeter};
use keygate_core::store::{Changes, Page, StoreError};
use keygate_core::{Gate, KeyId, KeyStore, MemoryStore, NewKey, OwnerId, RoutePolicy};

fn t0() -> DateTime<Utc> {
    "2026-12-01T10:00:00Z".parse().unwrap()
}

fn gate(store: MemoryStore, clock: &ManualClock) -> Gate {
    Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .clock(clock.clone())
        .spend_meter(RecordSpendMeter::new(store))
        .build()
}

fn bearer(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    headers
}

/// Admits and charges one request at the route's fixed cost; its status.
async fn chat(gate: &Gate, key: &str) -> StatusCode {
    let route = RoutePolicy::new().cost(1000);
    match gate.admit(&bearer(key), &route).await {
        Ok(admission) => {
            gate.settle(&admission, None).await;
            StatusCode::OK
        }
        Err(rejection) => rejection.status(),
    }
}

#[tokio::test]
async fn a_restart_keeps_the_months_spend_and_its_cap() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(t0());
    let before = gate(store.clone(), &clock);
    let created = before
        .keys()
        .create(NewKey::new("acct", "capped").spend_cap(2500))
        .await
        .unwrap();
    let key = created.key.expose_secret();
    for _ in 0..3 {
        assert_eq!(chat(&before, key).await, StatusCode::OK);
    }
    assert_eq!(chat(&before, key).await, StatusCode::PAYMENT_REQUIRED);
    // Shutdown writes what is pending; the process goes away.
    assert_eq!(before.flush_spend().await, 1);
    drop(before);

    let after = gate(store.clone(), &clock);
    assert_eq!(
        chat(&after, key).await,
        StatusCode::PAYMENT_REQUIRED,
        "a restart must not hand out a fresh budget"
    );
    let december = Month::of(t0());
    assert_eq!(store.spent(&created.record.key_id, december).await.unwrap(), 3000);
}

/// A store whose `record_spend` fails its first `failures` calls.
struct FlakySpend {
    inner: MemoryStore,
    failures: AtomicUsize,
}

impl KeyStore for FlakySpend {
    async fn find(&self, key_id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.find(key_id).await
    }
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }
    async fn list_by_owner(&self, owner: &OwnerId, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_by_owner(owner, page).await
    }
    async fn list(&self, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list(page).await
    }
    async fn revoke(&self, key_id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.revoke(key_id, at).await
    }
    async fn set_expiry(
        &self,
        key_id: &KeyId,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.set_expiry(key_id, at).await
    }
    async fn replace(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        at: DateTime<Utc>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.replace(old, new, at).await
    }
    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.inner.record_usage(batch).await
    }
    async fn record_spend(&self, batch: &[SpendDelta]) -> Result<(), StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("down".into()));
        }
        self.inner.record_spend(batch).await
    }
    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, StoreError> {
        self.inner.spent(key_id, month).await
    }
    async fn changes_since(&self, cursor: u64) -> Result<Changes, StoreError> {
        self.inner.changes_since(cursor).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_and_failed_flushes_lose_nothing_and_add_up_exactly() {
    let inner = MemoryStore::new();
    let meter = RecordSpendMeter::new(FlakySpend {
        inner: inner.clone(),
        failures: AtomicUsize::new(3),
    });
    let keys: Vec<KeyId> = (0..4)
        .map(|i| KeyId::new(format!("kg_live_spend{i:03}")))
        .collect();
    let month = Month::of(t0());
    let mut expected = [0u64; 4];
    let mut charges = Vec::new();
    for n in 0..200u64 {
        let (charging, key) = (meter.clone(), keys[(n % 4) as usize].clone());
        let cost = 1 + (n * 7919) % 1000;
        expected[(n % 4) as usize] += cost;
        charges.push(tokio::spawn(
            async move { charging.charge(&key, month, cost).await },
        ));
        if n % 50 == 49 {
            // Three flushes fail while charges keep coming.
            meter.flush().await;
        }
    }
    for charge in charges {
        charge.await.unwrap().unwrap();
    }
    // Whatever the earlier flushes met, the failures run out within four more.
    for _ in 0..4 {
        meter.flush().await;
    }
    for (key, expected) in keys.iter().zip(expected) {
        assert_eq!(inner.spent(key, month).await.unwrap(), expected, "{key}");
        assert_eq!(meter.spent(key, month).await.unwrap(), expected, "{key}");
    }
}

#[tokio::test]
async fn a_charge_during_an_outage_is_recorded_once_the_store_is_back() {
    let inner = MemoryStore::new();
    let failing = Arc::new(FlakySpend {
        inner: inner.clone(),
        failures: AtomicUsize::new(usize::MAX),
    });
    let meter = RecordSpendMeter::new(Arc::clone(&failing));
    let key = KeyId::from("kg_live_outage00");
    let month = Month::of(t0());
    meter.charge(&key, month, 1234).await.unwrap();
    for _ in 0..5 {
        assert_eq!(meter.flush().await, 0, "the store is down");
    }
    failing.failures.store(0, Ordering::SeqCst);
    assert_eq!(meter.flush().await, 1);
    assert_eq!(
        inner.spent(&key, month).await.unwrap(),
        1234,
        "once, not once per retry"
    );
}
