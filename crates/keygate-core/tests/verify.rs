//! The verifier's promises, checked through the gate: coalesced misses, immediate
//! revocation, shedding under a saturated hash pool, cancellation, expiry on every
//! request, and no secret in any trace.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use keygate_core::clock::{Clock, ManualClock};
use keygate_core::hash::{Argon2Hasher, SecretHash};
use keygate_core::record::KeyRecord;
use keygate_core::verify::VerifierConfig;
use keygate_core::{Denial, Gate, KeyId, KeyStore, MemoryStore, NewKey, RoutePolicy};
use support::{bearer, create, forge, status, CountingStore, Probe};

/// A gate whose store reads may take a minute: these tests hold the lookup on purpose,
/// longer than the default budget (`tests/store_budget.rs` tests that budget).
fn patient(store: &CountingStore, hasher: &Probe) -> Gate {
    Gate::builder(store.clone())
        .hasher(hasher.clone())
        .verifier(VerifierConfig {
            store_timeout: Duration::from_secs(60),
            ..VerifierConfig::default()
        })
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_cause_one_lookup_and_one_hash() {
    let store = CountingStore::default();
    let hasher = Probe::default();
    let gate = patient(&store, &hasher);
    let key = create(&gate).await.key.expose_secret().to_string();

    // Hold the lookup so that every request arrives while the first is still cold.
    let held = store.hold_finds();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let gate = gate.clone();
            let key = key.clone();
            tokio::spawn(async move { status(&gate, &key).await })
        })
        .collect();
    while store.finds() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(store.finds(), 1, "store lookups");
    assert_eq!(hasher.verifies(), 1, "argon2 verifications");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_first_request_neither_stalls_nor_fails_the_others() {
    let store = CountingStore::default();
    let hasher = Probe::default();
    let gate = patient(&store, &hasher);
    let key = create(&gate).await.key.expose_secret().to_string();

    let held = store.hold_finds();
    let first = {
        let (gate, key) = (gate.clone(), key.clone());
        tokio::spawn(async move { status(&gate, &key).await })
    };
    while store.finds() == 0 {
        tokio::task::yield_now().await;
    }
    let others: Vec<_> = (0..20)
        .map(|_| {
            let (gate, key) = (gate.clone(), key.clone());
            tokio::spawn(async move { status(&gate, &key).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The client of the first request disconnects: its future is dropped.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    drop(held);
    for other in others {
        assert_eq!(other.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(store.finds(), 1);
    assert_eq!(hasher.verifies(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_is_refused_on_the_next_request() {
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let created = create(&gate).await;
    let key = created.key.expose_secret();
    assert_eq!(status(&gate, key).await, StatusCode::OK, "cached now");

    gate.keys().revoke(&created.record.key_id).await.unwrap();
    let rejection = gate.admit(&bearer(key), &RoutePolicy::new()).await.unwrap_err();
    assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        rejection.denial(),
        &Denial::InvalidKey {
            key_id: Some(created.record.key_id.clone())
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_answers_the_same_bytes_as_an_unknown_one() {
    let store = MemoryStore::new();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let created = create(&gate).await;
    gate.keys().revoke(&created.record.key_id).await.unwrap();
    let revoked = gate
        .admit(&bearer(created.key.expose_secret()), &RoutePolicy::new())
        .await
        .unwrap_err();

    // Same id, record deleted from a fresh store: the id is unknown.
    let other = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let unknown = other
        .admit(&bearer(created.key.expose_secret()), &RoutePolicy::new())
        .await
        .unwrap_err();
    assert_eq!(revoked.status(), unknown.status());
    assert_eq!(revoked.body(), unknown.body());
    assert_eq!(revoked.headers(), unknown.headers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_elsewhere_is_seen_after_invalidate() {
    let store = MemoryStore::new();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let created = create(&gate).await;
    let key = created.key.expose_secret();
    assert_eq!(status(&gate, key).await, StatusCode::OK);

    // Another process revokes through the store directly: the cache still trusts it...
    store.revoke(&created.record.key_id, Utc::now()).await.unwrap();
    assert_eq!(status(&gate, key).await, StatusCode::OK);
    // ...until the change feed tells this gate.
    gate.invalidate(&created.record.key_id);
    assert_eq!(status(&gate, key).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_checked_on_every_request_not_only_on_a_miss() {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .clock(clock.clone())
        .build();
    let expires: DateTime<Utc> = "2026-01-01T01:00:00Z".parse().unwrap();
    let created = gate
        .keys()
        .create(NewKey::new("acct_1", "short-lived").expires_at(expires))
        .await
        .unwrap();
    let key = created.key.expose_secret();
    assert_eq!(status(&gate, key).await, StatusCode::OK);

    clock.advance(Duration::from_secs(3600));
    let rejection = gate.admit(&bearer(key), &RoutePolicy::new()).await.unwrap_err();
    assert_eq!(rejection.denial(), &Denial::ExpiredKey { expired_at: expires });
    let body = std::str::from_utf8(rejection.body()).unwrap();
    assert!(body.contains(r#""expired_at":"2026-01-01T01:00:00Z""#), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_flow_while_the_hash_pool_is_saturated_and_cold_ones_are_shed() {
    let hasher = Probe::default();
    let config = VerifierConfig {
        hash_workers: 1,
        hash_queue: 2,
        ..VerifierConfig::default()
    };
    let gate = Gate::builder(MemoryStore::new())
        .hasher(hasher.clone())
        .verifier(config)
        .build();
    let valid = create(&gate).await;
    let valid_key = valid.key.expose_secret().to_string();
    assert_eq!(status(&gate, &valid_key).await, StatusCode::OK, "warm the cache");

    // Wrong-secret keys for a real id: each is a cold argon2 verification. Block the
    // hasher so they pile up and fill the pool (1 running + 2 waiting).
    let held = hasher.hold_verifies();
    let victim = create(&gate).await;
    let wrong_keys: Vec<String> = (0..3).map(|_| forge(victim.record.key_id.as_str())).collect();
    let flood: Vec<_> = wrong_keys
        .iter()
        .map(|key| {
            let (gate, key) = (gate.clone(), key.clone());
            tokio::spawn(async move { status(&gate, &key).await })
        })
        .collect();
    while hasher.verifies() < 2 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The pool is saturated: a cached key still completes at once...
    for _ in 0..100 {
        assert_eq!(status(&gate, &valid_key).await, StatusCode::OK);
    }
    // ...and a new cold key is shed with 503 and Retry-After, not queued.
    let cold = forge(victim.record.key_id.as_str());
    let shed = gate.admit(&bearer(&cold), &RoutePolicy::new()).await.unwrap_err();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert!(std::str::from_utf8(shed.body())
        .unwrap()
        .contains("SERVICE_UNAVAILABLE"));

    drop(held);
    for request in flood {
        assert_eq!(request.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_keys_go_to_the_negative_cache() {
    let store = CountingStore::default();
    let hasher = Probe::default();
    let gate = Gate::builder(store.clone()).hasher(hasher.clone()).build();
    let victim = create(&gate).await;
    let wrong = forge(victim.record.key_id.as_str());
    for _ in 0..10 {
        assert_eq!(status(&gate, &wrong).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(store.finds(), 1);
    assert_eq!(hasher.verifies(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_hash_above_the_ceiling_is_refused_without_hashing() {
    let store = MemoryStore::new();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let format = keygate_core::key::KeyFormat::default();
    let (key_id, key) = format.generate(keygate_core::key::Environment::Live);
    let record = KeyRecord {
        key_id,
        owner: "acct_1".into(),
        name: "poisoned".into(),
        scopes: Default::default(),
        environment: Default::default(),
        secret_hash: SecretHash::new(
            "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
        ),
        created_at: Utc::now(),
        expires_at: None,
        revoked_at: None,
        metadata: serde_json::Value::Null,
        rate_limits: None,
        spend_cap: None,
        usage: Default::default(),
    };
    store.insert(&record).await.unwrap();
    assert_eq!(status(&gate, key.expose_secret()).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trace_of_a_canary_secret_reaches_the_logs() {
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let canary = create(&gate).await;
    let key = canary.key.expose_secret().to_string();
    let secret = keygate_core::key::KeyFormat::default()
        .parse(&key)
        .unwrap()
        .secret()
        .to_string();
    // Every path a key can take: admitted, cached, malformed, wrong, revoked, rotated.
    assert_eq!(status(&gate, &key).await, StatusCode::OK);
    assert_eq!(status(&gate, &key).await, StatusCode::OK);
    assert_eq!(status(&gate, &format!("{key}x")).await, StatusCode::UNAUTHORIZED);
    let mut altered = key.clone().into_bytes();
    altered[20] = if altered[20] == b'a' { b'b' } else { b'a' };
    assert_eq!(
        status(&gate, std::str::from_utf8(&altered).unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    tracing::info!(created = ?canary, "created key (Debug)");
    tracing::info!(key = %canary.key, "created key (Display)");
    let rotated = gate
        .keys()
        .rotate(&canary.record.key_id, Duration::ZERO)
        .await
        .unwrap();
    tracing::info!(?rotated, "rotated");
    gate.keys().revoke(&rotated.new.record.key_id).await.unwrap();
    assert_eq!(
        status(&gate, rotated.new.key.expose_secret()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status(&gate, &key).await, StatusCode::UNAUTHORIZED);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains(canary.record.key_id.as_str()),
        "the key id is logged:\n{logs}"
    );
    assert!(
        !logs.contains(&secret),
        "the secret leaked into the logs:\n{logs}"
    );
    let new_secret = rotated.new.key.expose_secret();
    assert!(
        !logs.contains(&new_secret[new_secret.len() - 20..]),
        "a rotated secret leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_key_is_read_again_once_its_ttl_has_passed_on_the_gates_clock() {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    let store = CountingStore::default();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .clock(clock.clone())
        .verifier(VerifierConfig {
            cache_ttl: Duration::from_secs(60),
            ..VerifierConfig::default()
        })
        .build();
    let created = gate.keys().create(NewKey::new("acct_1", "ttl")).await.unwrap();
    let key = created.key.expose_secret();
    assert_eq!(status(&gate, key).await, StatusCode::OK);
    assert_eq!(store.finds(), 1);

    clock.advance(Duration::from_secs(59));
    assert_eq!(status(&gate, key).await, StatusCode::OK);
    assert_eq!(store.finds(), 1, "still cached within its ttl");

    clock.advance(Duration::from_secs(1));
    // Revoked behind the gate's back: only a fresh read can see it.
    store.revoke(&created.record.key_id, clock.now()).await.unwrap();
    assert_eq!(status(&gate, key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(store.finds(), 2, "read again after its ttl");
}

#[tokio::test]
async fn a_key_that_is_not_utf8_is_invalid_without_a_key_id_and_never_verified() {
    let hasher = Probe::default();
    let store = CountingStore::default();
    let gate = Gate::builder(store.clone()).hasher(hasher.clone()).build();
    let created = create(&gate).await;
    // A real key with its last character swapped for a byte that is not UTF-8 (header
    // values may carry such bytes as obs-text).
    let mut bytes = created.key.expose_secret().as_bytes().to_vec();
    *bytes.last_mut().unwrap() = 0xff;
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", http::HeaderValue::from_bytes(&bytes).unwrap());

    let rejection = gate.admit(&headers, &RoutePolicy::new()).await.unwrap_err();
    assert_eq!(rejection.denial(), &Denial::InvalidKey { key_id: None });
    assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
    assert_eq!((store.finds(), hasher.verifies()), (0, 0));
}

/// A request checking a cached key while the key is invalidated must never record the
/// entry as checked at the new epoch without seeing the key's mark: else the revoked key
/// stays admitted until its cache entry expires. Readers spin on another thread while
/// the main thread revokes in the store and invalidates; right after `invalidate`
/// returns, the key must be refused, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_racing_with_cache_hits_is_never_lost() {
    let store = MemoryStore::new();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let policy = RoutePolicy::new();
    for round in 0..300 {
        let created = create(&gate).await;
        let headers = bearer(created.key.expose_secret());
        assert_eq!(status(&gate, created.key.expose_secret()).await, StatusCode::OK);

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (gate, headers, policy, stop) = (gate.clone(), headers.clone(), policy.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = gate.decide(&headers, &policy);
                }
            })
        };
        // Let the reader get going, then change the record behind the cache's back.
        std::thread::sleep(Duration::from_micros(200));
        store.revoke(&created.record.key_id, Utc::now()).await.unwrap();
        gate.invalidate(&created.record.key_id);
        let after = gate
            .admit(&headers, &policy)
            .await
            .map(|_| ())
            .map_err(|r| r.status());
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        assert_eq!(
            after,
            Err(StatusCode::UNAUTHORIZED),
            "round {round}: admitted after invalidate"
        );
    }
}

/// A cold verification that read the store before a change and finishes after the
/// gate was told of it must not leave its stale result in the cache: the request after
/// the invalidation is refused, whether one key or every key was invalidated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_in_flight_across_an_invalidation_caches_nothing_stale() {
    for everything in [false, true] {
        let store = CountingStore::default();
        let hasher = Probe::default();
        let gate = Gate::builder(store.clone()).hasher(hasher.clone()).build();
        let created = create(&gate).await;
        let key = created.key.expose_secret().to_string();

        // The record is read (not revoked yet), then the hash is held.
        let held = hasher.hold_verifies();
        let in_flight = {
            let (gate, key) = (gate.clone(), key.clone());
            tokio::spawn(async move { status(&gate, &key).await })
        };
        while hasher.verifies() == 0 {
            tokio::task::yield_now().await;
        }
        store
            .inner
            .revoke(&created.record.key_id, Utc::now())
            .await
            .unwrap();
        if everything {
            gate.invalidate_all();
        } else {
            gate.invalidate(&created.record.key_id);
        }
        drop(held);
        // It began before the change; whatever it answers, it must not be remembered.
        in_flight.await.unwrap();
        assert_eq!(
            status(&gate, &key).await,
            StatusCode::UNAUTHORIZED,
            "invalidate_all: {everything}"
        );
    }
}

/// A mass revocation (more invalidations than the cache holds keys) must drop no
/// key's mark, the latest ones included: every revoked key is refused afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_invalidation_forgets_no_revoked_key() {
    let store = MemoryStore::new();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .verifier(VerifierConfig {
            cache_capacity: 100,
            ..VerifierConfig::default()
        })
        .build();
    let first = create(&gate).await;
    let last = create(&gate).await;
    for created in [&first, &last] {
        assert_eq!(
            status(&gate, created.key.expose_secret()).await,
            StatusCode::OK,
            "cached now"
        );
    }

    store.revoke(&first.record.key_id, Utc::now()).await.unwrap();
    gate.invalidate(&first.record.key_id);
    // Far more invalidations than the marks were once bounded to (10 000 here).
    for round in 0..3 {
        for i in 0..10_000 {
            gate.invalidate(&KeyId::new(format!("kg_live_{round}{i:07}")));
        }
        // Time for the cache's housekeeping, which evicts, to run on the next calls.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    store.revoke(&last.record.key_id, Utc::now()).await.unwrap();
    gate.invalidate(&last.record.key_id);
    // Housekeeping again, before any request with the key reads its mark.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for i in 0..100 {
        gate.invalidate(&KeyId::new(format!("kg_live_9{i:07}")));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    gate.invalidate(&KeyId::new("kg_live_99999999"));
    for created in [&first, &last] {
        assert_eq!(
            status(&gate, created.key.expose_secret()).await,
            StatusCode::UNAUTHORIZED,
            "{}",
            created.record.key_id
        );
    }
}
