//! Key creation and rotation hash on the verifier's bounded pool: a burst of creations
//! never runs more argon2 hashes at once than the pool allows, the surplus is shed with
//! an error that means "retry later", and cold verifications still get a worker.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use keygate_core::manage::{KeyManager, ManageError};
use keygate_core::verify::VerifierConfig;
use keygate_core::{Gate, MemoryStore, NewKey};
use support::{create, status, until, Probe};

const BURST: usize = 50;

/// `BURST` creations at once through `keys`, each counted in `answered` when it returns.
fn burst(
    keys: &KeyManager,
    answered: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Result<String, ManageError>>> {
    (0..BURST)
        .map(|_| {
            let (keys, answered) = (keys.clone(), answered.clone());
            tokio::spawn(async move {
                let created = keys.create(NewKey::new("acct_1", "burst")).await;
                answered.fetch_add(1, Ordering::SeqCst);
                created.map(|c| c.key.expose_secret().to_string())
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_hash_more_at_once_than_the_pool_allows() {
    let probe = Probe::default();
    let config = VerifierConfig {
        hash_workers: 2,
        create_workers: 1,
        create_queue: 3,
        ..VerifierConfig::default()
    };
    let gate = Gate::builder(MemoryStore::new())
        .hasher(probe.clone())
        .verifier(config)
        .build();
    let existing = create(&gate).await.key.expose_secret().to_string();

    let held = probe.hold_hashes();
    let answered = Arc::new(AtomicUsize::new(0));
    let creates = burst(gate.keys(), &answered);
    // One creation hashes and three wait for it; the other 46 are answered at once.
    // (Without a bound, every creation hashes at once: stop looking then.)
    let admitted = 1 + 3;
    until(|| answered.load(Ordering::SeqCst) >= BURST - admitted || probe.most_hashing() > 1).await;
    until(|| probe.most_hashing() >= 1).await;
    assert_eq!(probe.most_hashing(), 1, "hashes running at once");

    // The creations hold one of the two workers: a cold verification takes the other.
    assert_eq!(status(&gate, &existing).await, StatusCode::OK);

    drop(held);
    let results: Vec<_> = futures_join(creates).await;
    let shed = results
        .iter()
        .filter(|r| matches!(r, Err(ManageError::Busy)))
        .count();
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!((created, shed), (admitted, BURST - admitted), "{results:?}");
    assert!(probe.most_hashing() <= 1);
    assert!(
        probe.most_running() <= 2,
        "argon2 calls at once: {}",
        probe.most_running()
    );
    // The keys created in the burst work.
    for key in results.iter().flatten() {
        assert_eq!(status(&gate, key).await, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_hashes_on_the_same_bounded_pool_and_is_shed_beyond_it() {
    let probe = Probe::default();
    let config = VerifierConfig {
        hash_workers: 2,
        create_workers: 1,
        create_queue: 0,
        ..VerifierConfig::default()
    };
    let gate = Gate::builder(MemoryStore::new())
        .hasher(probe.clone())
        .verifier(config)
        .build();
    let old = create(&gate).await;

    let held = probe.hold_hashes();
    let answered = Arc::new(AtomicUsize::new(0));
    let holding = burst(gate.keys(), &answered);
    until(|| answered.load(Ordering::SeqCst) >= BURST - 1 || probe.most_hashing() > 1).await;
    until(|| probe.most_hashing() >= 1).await;
    assert_eq!(probe.most_hashing(), 1, "hashes running at once");
    let rotated = gate.keys().rotate(&old.record.key_id, Duration::ZERO).await;
    assert!(matches!(rotated, Err(ManageError::Busy)), "{rotated:?}");
    // Shed before any write: the old key is untouched.
    assert_eq!(status(&gate, old.key.expose_secret()).await, StatusCode::OK);

    drop(held);
    futures_join(holding).await;
    let rotated = gate.keys().rotate(&old.record.key_id, Duration::ZERO).await;
    assert!(rotated.is_ok(), "{rotated:?}");
    assert_eq!(probe.most_hashing(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_manager_without_a_gate_bounds_its_hashes_and_queues_the_rest() {
    let probe = Probe::default();
    let keys = KeyManager::new(MemoryStore::new()).hasher(probe.clone());
    let defaults = VerifierConfig::default();
    let lane = defaults.create_workers.clamp(1, defaults.hash_workers.max(1));

    let held = probe.hold_hashes();
    let answered = Arc::new(AtomicUsize::new(0));
    let creates = burst(&keys, &answered);
    until(|| probe.most_hashing() >= lane).await;
    assert_eq!(probe.most_hashing(), lane, "hashes running at once");
    assert_eq!(
        answered.load(Ordering::SeqCst),
        0,
        "alone, a creation waits its turn"
    );

    drop(held);
    let results = futures_join(creates).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(probe.most_hashing(), lane);
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
