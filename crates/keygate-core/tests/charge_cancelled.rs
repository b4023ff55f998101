//! A charge lands whole even when the future awaiting it is dropped: the response future
//! of a client that disconnects while its request is being charged (a meter that needs
//! I/O: Redis, or the store's first read of a month). Neither the key's charge nor its
//! account's may be lost, so a client cannot shed what it spent by hanging up on time.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use keygate_core::account::spend_subject;
use keygate_core::backend::BackendError;
use keygate_core::hash::Argon2Hasher;
use keygate_core::spend::{MemorySpendMeter, Month, SpendMeter};
use keygate_core::{Cost, Gate, KeyId, MemoryStore, NewKey, OwnerId, RoutePolicy};
use tokio::sync::Semaphore;

/// A meter in memory whose charges wait at a door until the test opens it, and count
/// once they have landed.
#[derive(Clone)]
struct DoorMeter {
    inner: MemorySpendMeter,
    door: Arc<Semaphore>,
    landed: Arc<AtomicUsize>,
}

impl SpendMeter for DoorMeter {
    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, BackendError> {
        self.inner.spent(key_id, month).await
    }

    async fn charge(&self, key_id: &KeyId, month: Month, micro_cents: u64) -> Result<u64, BackendError> {
        let _open = self.door.acquire().await;
        let total = self.inner.charge(key_id, month, micro_cents).await;
        self.landed.fetch_add(1, Ordering::SeqCst);
        total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_dropped_midway_still_lands_for_the_key_and_its_account() {
    let meter = DoorMeter {
        inner: MemorySpendMeter::new(),
        door: Arc::new(Semaphore::new(0)),
        landed: Arc::default(),
    };
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .spend_meter(meter.clone())
        .build();
    let owner = OwnerId::from("acct_hangs_up");
    gate.keys()
        .set_owner_limits(&owner, Vec::new(), Some(1_000_000))
        .await
        .expect("account cap");
    let created = gate
        .keys()
        .create(NewKey::new("acct_hangs_up", "k"))
        .await
        .unwrap();
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {}", created.key.expose_secret());
    headers.insert("authorization", value.parse().unwrap());
    let admission = gate.admit(&headers, &RoutePolicy::new()).await.expect("admitted");

    // The charge starts, waits on the meter, and its future is dropped: the client went away.
    let mut settling = Box::pin(gate.settle(&admission, Some(Cost(1000))));
    let pending =
        std::future::poll_fn(|cx| std::task::Poll::Ready(settling.as_mut().poll(cx).is_pending())).await;
    assert!(pending, "the charge waits on the meter");
    drop(settling);

    meter.door.add_permits(10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while meter.landed.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped charge never landed ({} of 2)",
            meter.landed.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let month = Month::of(gate.now());
    assert_eq!(
        gate.spent(&created.record.key_id, month).await.unwrap(),
        1000,
        "the key"
    );
    assert_eq!(
        gate.spent(&spend_subject(&owner), month).await.unwrap(),
        1000,
        "the account"
    );
}
