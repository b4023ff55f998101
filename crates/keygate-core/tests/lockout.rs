//! Guesses at a key id cost the guesser, not the key's holder: a key proven lately is
//! never locked out by them, a key never proven gets 503 with `Retry-After` (which
//! clients retry) rather than 401 (which they read as "revoked"), and an id's
//! existence shows in no answer's bytes.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use http::StatusCode;
use keygate_core::clock::ManualClock;
use keygate_core::gate::Decision;
use keygate_core::hash::KeyHasher;
use keygate_core::verify::VerifierConfig;
use keygate_core::{Gate, KeyStore, MemoryStore, RoutePolicy};
use support::{bearer, create, forge, status, unknown_key, CountingStore, Probe};

const LIMIT: u32 = 5;

fn config() -> VerifierConfig {
    VerifierConfig {
        failure_limit: LIMIT,
        failure_window: Duration::from_secs(60),
        cache_ttl: Duration::from_secs(300),
        ..VerifierConfig::default()
    }
}

fn clock() -> ManualClock {
    ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap())
}

fn gate(store: impl KeyStore, probe: &Probe, clock: &ManualClock) -> Gate {
    Gate::builder(store)
        .hasher(probe.clone())
        .clock(clock.clone())
        .verifier(config())
        .build()
}

/// Sends `n` wrong guesses at `key_id`; their statuses.
async fn guess(gate: &Gate, key_id: &str, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(status(gate, &forge(key_id)).await);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_secrets_for_a_known_id_stops_costing_hashes_after_the_limit() {
    let (probe, clock) = (Probe::default(), clock());
    let gate = gate(MemoryStore::new(), &probe, &clock);
    let cached = create(&gate).await;
    let cached_key = cached.key.expose_secret();
    assert_eq!(status(&gate, cached_key).await, StatusCode::OK);
    let victim = create(&gate).await;
    let hashes = probe.verifies();

    let mut answers = Vec::new();
    for _ in 0..30 {
        let guess = forge(victim.record.key_id.as_str());
        let refused = gate
            .admit(&bearer(&guess), &RoutePolicy::new())
            .await
            .unwrap_err();
        answers.push((refused.status(), refused.body().clone()));
    }
    assert_eq!(
        probe.verifies() - hashes,
        LIMIT as usize,
        "only the first guesses were hashed"
    );
    let (hashed, refused) = answers.split_at(LIMIT as usize);
    assert!(
        hashed.iter().all(|answer| *answer == hashed[0]),
        "one 401 for every wrong secret"
    );
    assert_eq!(hashed[0].0, StatusCode::UNAUTHORIZED);
    assert!(
        refused.iter().all(|answer| *answer == refused[0]),
        "one 503 past the limit"
    );
    assert_eq!(refused[0].0, StatusCode::SERVICE_UNAVAILABLE);
    // Past the limit a guess is refused from memory: no future, no store read.
    let guess = forge(victim.record.key_id.as_str());
    let Decision::Now(Err(at_once)) = gate.decide(&bearer(&guess), &RoutePolicy::new()) else {
        panic!("a throttled guess is refused at once");
    };
    assert_eq!(at_once.body(), &refused[0].1);
    // Keys already cached are not affected.
    assert_eq!(status(&gate, cached_key).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_at_its_id_never_lock_out_a_key_proven_lately() {
    let (store, probe, clock) = (CountingStore::default(), Probe::default(), clock());
    let gate = gate(store.clone(), &probe, &clock);
    let created = create(&gate).await;
    let key = created.key.expose_secret();
    assert_eq!(status(&gate, key).await, StatusCode::OK, "proven and cached");

    // Hours later (the cache entry long gone: a TTL, or a restart of the cache), the id
    // is under attack.
    clock.advance(Duration::from_secs(6 * 3600));
    let statuses = guess(&gate, created.record.key_id.as_str(), 30).await;
    assert!(statuses[..LIMIT as usize]
        .iter()
        .all(|s| *s == StatusCode::UNAUTHORIZED));
    assert!(statuses[LIMIT as usize..]
        .iter()
        .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE));

    let hashes = probe.verifies();
    assert_eq!(
        status(&gate, key).await,
        StatusCode::OK,
        "the holder is let through"
    );
    assert_eq!(
        probe.verifies(),
        hashes,
        "re-read from the store, not hashed again"
    );
    assert_eq!(status(&gate, key).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_expiry_re_reads_a_proven_key_without_hashing_it_again() {
    let (store, probe, clock) = (CountingStore::default(), Probe::default(), clock());
    let gate = gate(store.clone(), &probe, &clock);
    let created = create(&gate).await;
    let key = created.key.expose_secret();
    assert_eq!(status(&gate, key).await, StatusCode::OK);
    assert_eq!((store.finds(), probe.verifies()), (1, 1));

    clock.advance(Duration::from_secs(301));
    assert_eq!(status(&gate, key).await, StatusCode::OK);
    assert_eq!((store.finds(), probe.verifies()), (2, 1), "a lookup, no argon2");

    // A new stored hash is a new secret: the old key must be proven again, and fails.
    clock.advance(Duration::from_secs(301));
    store.replace_hash(probe.hash(b"another secret").unwrap());
    assert_eq!(status(&gate, key).await, StatusCode::UNAUTHORIZED);
    assert_eq!((store.finds(), probe.verifies()), (3, 2), "argon2 again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_never_proven_answers_503_with_retry_after_while_its_id_is_under_attack() {
    let (probe, clock) = (Probe::default(), clock());
    let gate = gate(MemoryStore::new(), &probe, &clock);
    let created = create(&gate).await;
    let key = created.key.expose_secret();
    let hashes = probe.verifies();
    guess(&gate, created.record.key_id.as_str(), 30).await;
    assert_eq!(
        probe.verifies() - hashes,
        LIMIT as usize,
        "only the first guesses are hashed"
    );

    clock.advance(Duration::from_secs(15));
    let refused = gate.admit(&bearer(key), &RoutePolicy::new()).await.unwrap_err();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "45", "the rest of the window");
    let body = std::str::from_utf8(refused.body()).unwrap();
    assert!(body.contains("SERVICE_UNAVAILABLE"), "{body}");
    // From memory: no future, no store read, no hash.
    let Decision::Now(Err(again)) = gate.decide(&bearer(key), &RoutePolicy::new()) else {
        panic!("refused at once");
    };
    assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The window over, the right secret works (the refusal was not remembered).
    clock.advance(Duration::from_secs(45));
    assert_eq!(status(&gate, key).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_older_than_a_day_no_longer_spares_a_key_under_attack() {
    let (probe, clock) = (Probe::default(), clock());
    let gate = gate(MemoryStore::new(), &probe, &clock);
    let created = create(&gate).await;
    let key = created.key.expose_secret();
    assert_eq!(status(&gate, key).await, StatusCode::OK);

    clock.advance(Duration::from_secs(24 * 3600 + 1));
    guess(&gate, created.record.key_id.as_str(), 10).await;
    assert_eq!(status(&gate, key).await, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_at_an_unknown_id_answer_the_same_bytes_as_at_a_known_one() {
    let clock = clock();
    let known = gate(MemoryStore::new(), &Probe::default(), &clock);
    let unknown = gate(MemoryStore::new(), &Probe::default(), &clock);
    let created = create(&known).await;
    let key_id = created.record.key_id.as_str();

    let mut answers = Vec::new();
    for gate in [&known, &unknown] {
        let mut seen = Vec::new();
        for _ in 0..(LIMIT + 3) {
            let refused = gate
                .admit(&bearer(&forge(key_id)), &RoutePolicy::new())
                .await
                .unwrap_err();
            seen.push((
                refused.status(),
                refused.headers().clone(),
                refused.body().clone(),
            ));
        }
        answers.push(seen);
    }
    assert_eq!(
        answers[0], answers[1],
        "the same answers, byte for byte, guess after guess"
    );
    assert_eq!(answers[0].last().unwrap().0, StatusCode::SERVICE_UNAVAILABLE);
}

/// Item 9 of issue 13, decided: an unknown id costs one store lookup and no argon2
/// (what a timing observer learns is documented in `keygate_core::verify`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_costs_one_store_lookup_and_no_hash() {
    let (store, probe, clock) = (CountingStore::default(), Probe::default(), clock());
    let gate = gate(store.clone(), &probe, &clock);
    let key = unknown_key();
    assert_eq!(status(&gate, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!((store.finds(), probe.verifies()), (1, 0));
    // Failed lately: answered from memory.
    assert_eq!(status(&gate, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!((store.finds(), probe.verifies()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_ids_proves_nothing_and_spares_no_key() {
    let (probe, clock) = (Probe::default(), clock());
    let gate = gate(MemoryStore::new(), &probe, &clock);
    let created = create(&gate).await;
    let mut statuses = HashSet::new();
    for _ in 0..200 {
        statuses.insert(status(&gate, &unknown_key()).await);
    }
    assert_eq!(statuses, HashSet::from([StatusCode::UNAUTHORIZED]));
    assert_eq!(gate.cached_keys(), 0, "only proven keys are cached");
    // The real key, never proven, is not spared: guesses at its id throttle it.
    guess(&gate, created.record.key_id.as_str(), 10).await;
    assert_eq!(
        status(&gate, created.key.expose_secret()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
