//! A verification that was in flight across a revocation answers no one as admitted:
//! a request that joins it after `revoke()` returned is refused, and so is the request
//! that started it.

mod support;

use http::StatusCode;
use keygate_core::gate::Decision;
use keygate_core::{Gate, RoutePolicy};
use support::{bearer, create, pending, status, until, CountingStore, Probe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_joining_a_verification_begun_before_a_revocation_is_refused() {
    for everything in [false, true] {
        let store = CountingStore::default();
        let probe = Probe::default();
        let gate = Gate::builder(store.clone()).hasher(probe.clone()).build();
        let created = create(&gate).await;
        let key = created.key.expose_secret().to_string();

        // The first request reads the record (live), then its hash is held.
        let held = probe.hold_verifies();
        let first = {
            let (gate, key) = (gate.clone(), key.clone());
            tokio::spawn(async move { status(&gate, &key).await })
        };
        until(|| probe.verifies() == 1).await;
        gate.keys().revoke(&created.record.key_id).await.unwrap();
        if everything {
            gate.invalidate_all();
        }

        // After `revoke()` returned, a second request joins the verification in flight.
        let Decision::Later(joiner) = gate.decide(&bearer(&key), &RoutePolicy::new()) else {
            panic!("the key is not cached yet: its request is cold");
        };
        let mut joiner = Box::pin(joiner);
        assert!(pending(&mut joiner).await, "waiting on the flight");
        assert_eq!(store.finds(), 1, "it joined the flight rather than starting one");

        drop(held);
        let joined = joiner.await.map(|_| ()).map_err(|r| r.status());
        assert_eq!(
            joined,
            Err(StatusCode::UNAUTHORIZED),
            "invalidate_all: {everything}"
        );
        assert_eq!(
            first.await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "the first request too"
        );
        assert_eq!(
            probe.verifies(),
            1,
            "the secret was proven once: re-read, not re-hashed"
        );
        assert_eq!(status(&gate, &key).await, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_in_flight_across_an_unrelated_invalidation_still_admits() {
    let probe = Probe::default();
    let gate = Gate::builder(CountingStore::default())
        .hasher(probe.clone())
        .build();
    let created = create(&gate).await;
    let other = create(&gate).await;
    let key = created.key.expose_secret().to_string();

    let held = probe.hold_verifies();
    let first = {
        let (gate, key) = (gate.clone(), key.clone());
        tokio::spawn(async move { status(&gate, &key).await })
    };
    until(|| probe.verifies() == 1).await;
    gate.keys().revoke(&other.record.key_id).await.unwrap();
    drop(held);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(probe.verifies(), 1);
}
