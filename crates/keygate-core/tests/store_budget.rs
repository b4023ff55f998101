//! The key store on the request path, within a budget: a hung store costs a cold request
//! the store timeout (50 ms by default) and answers 503 with `Retry-After`; after a few
//! timeouts in a row the breaker answers at once, without sending; one probe per
//! cool-down finds the store back. Cached keys never wait on it. The SQL-backed meter's
//! first read of a month is bounded alike, and its charge is still recorded.
//!
//! Time is tokio's, paused (`start_paused`): the durations asserted are virtual, exact
//! and repeatable, not read off a wall clock.

mod support;

use std::time::Duration;

use http::StatusCode;
use keygate_core::backend::{COOL_DOWN, DEFAULT_TIMEOUT, THRESHOLD};
use keygate_core::hash::Argon2Hasher;
use keygate_core::spend::{Month, RecordSpendMeter, SpendMeter};
use keygate_core::verify::VerifierConfig;
use keygate_core::{Gate, KeyId, KeyStore, Rejection, RoutePolicy};
use tokio::time::{timeout, Instant};

use support::{bearer, create, status, CountingStore};

/// Longer than any budget: a request still unanswered after it hangs.
const HANG: Duration = Duration::from_secs(60);

fn gate(store: &CountingStore) -> Gate {
    Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build()
}

/// The gate's answer to `key`, awaited at most [`HANG`]; and the (virtual) time it took.
async fn timed(gate: &Gate, key: &str) -> (Result<StatusCode, Rejection>, Duration) {
    let started = Instant::now();
    let answer = timeout(HANG, gate.admit(&bearer(key), &RoutePolicy::new()))
        .await
        .expect("the request hangs with the store");
    (answer.map(|_| StatusCode::OK), started.elapsed())
}

/// The refusal in `answer`, which must be a 503 (`why`: the case, for the message).
fn unavailable(answer: Result<StatusCode, Rejection>, why: &str) -> Rejection {
    let refused = answer.expect_err(why);
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE, "{why}");
    refused
}

/// Whether `elapsed` is `budget`, to the timer's millisecond.
fn spent_the_budget(elapsed: Duration, budget: Duration) -> bool {
    elapsed >= budget && elapsed <= budget + Duration::from_millis(1)
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_costs_a_cold_request_the_store_timeout_and_answers_503() {
    let store = CountingStore::default();
    let gate = gate(&store);
    let cached = create(&gate).await.key.expose_secret().to_string();
    let cold = create(&gate).await.key.expose_secret().to_string();
    assert_eq!(status(&gate, &cached).await, StatusCode::OK, "warm");

    let _hung = store.hold_finds();
    let (answer, took) = timed(&gate, &cold).await;
    let refused = unavailable(answer, "a cold key with the store hung");
    let retry_after = refused.headers().get(http::header::RETRY_AFTER);
    assert!(
        retry_after
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
    assert!(
        spent_the_budget(took, DEFAULT_TIMEOUT),
        "answered after {took:?}, the budget is {DEFAULT_TIMEOUT:?}"
    );

    let (answer, took) = timed(&gate, &cached).await;
    assert_eq!(answer.expect("a cached key"), StatusCode::OK);
    assert_eq!(took, Duration::ZERO, "a cached key does not wait on the store");
}

#[tokio::test(start_paused = true)]
async fn a_read_past_the_budget_still_runs_to_its_end() {
    // So that a connection it was opening is kept for the next request, not thrown away.
    let store = CountingStore::default();
    let gate = gate(&store);
    let cold = create(&gate).await.key.expose_secret().to_string();
    let hung = store.hold_finds();
    let (answer, _) = timed(&gate, &cold).await;
    unavailable(answer, "hung");
    assert_eq!(store.finds_done(), 0);
    drop(hung);
    let finished = async {
        // Sleeps, not yields: paused time moves only while the runtime is idle.
        while store.finds_done() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    timeout(HANG, finished)
        .await
        .expect("the read given up on finishes");
    assert_eq!(status(&gate, &cold).await, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn the_store_timeout_is_a_setting() {
    let store = CountingStore::default();
    let budget = Duration::from_millis(200);
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .verifier(VerifierConfig {
            store_timeout: budget,
            ..VerifierConfig::default()
        })
        .build();
    let cold = create(&gate).await.key.expose_secret().to_string();
    let _hung = store.hold_finds();
    let (answer, took) = timed(&gate, &cold).await;
    unavailable(answer, "hung");
    assert!(spent_the_budget(took, budget), "answered after {took:?}");
}

#[tokio::test(start_paused = true)]
async fn after_timeouts_in_a_row_the_breaker_answers_at_once_and_one_probe_finds_the_store_back() {
    let store = CountingStore::default();
    let gate = gate(&store);
    let mut keys = Vec::new();
    for _ in 0..THRESHOLD + 2 {
        keys.push(create(&gate).await.key.expose_secret().to_string());
    }
    let hung = store.hold_finds();
    for key in &keys[..THRESHOLD as usize] {
        let (answer, took) = timed(&gate, key).await;
        unavailable(answer, "hung");
        assert!(spent_the_budget(took, DEFAULT_TIMEOUT), "answered after {took:?}");
    }
    assert_eq!(store.finds(), THRESHOLD as usize, "each of them asked the store");

    // Open: answered at once, and the store is not asked.
    let probe = &keys[THRESHOLD as usize];
    let (answer, took) = timed(&gate, probe).await;
    unavailable(answer, "open");
    assert_eq!(took, Duration::ZERO, "an open breaker costs a request nothing");
    assert_eq!(store.finds(), THRESHOLD as usize, "not sent");

    // The store answers again; the breaker does not know it before its cool-down.
    drop(hung);
    let (answer, _) = timed(&gate, probe).await;
    unavailable(answer, "still open");
    assert_eq!(store.finds(), THRESHOLD as usize, "not sent");

    tokio::time::advance(COOL_DOWN).await;
    let (answer, _) = timed(&gate, probe).await;
    assert_eq!(answer.expect("the probe"), StatusCode::OK);
    let (answer, _) = timed(&gate, &keys[THRESHOLD as usize + 1]).await;
    assert_eq!(answer.expect("closed again"), StatusCode::OK);
    for key in &keys[..THRESHOLD as usize] {
        assert_eq!(
            status(&gate, key).await,
            StatusCode::OK,
            "refused while down, admitted now"
        );
    }
    assert_eq!(
        gate.stats().store_errors(),
        u64::from(THRESHOLD) + 2,
        "the timeouts and the calls the open breaker held back, counted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_costs_the_record_meter_its_timeout_and_the_charge_is_still_recorded() {
    let store = CountingStore::default();
    let meter = RecordSpendMeter::new(store.clone());
    let key = KeyId::from("kg_live_a1b2c3d4");
    let march = Month { year: 2026, month: 3 };

    let hung = store.hold_spent();
    let started = Instant::now();
    let charged = timeout(HANG, meter.charge(&key, march, 1000))
        .await
        .expect("the charge hangs with the store");
    let took = started.elapsed();
    assert!(charged.is_err(), "the month's total could not be read");
    assert!(spent_the_budget(took, DEFAULT_TIMEOUT), "answered after {took:?}");

    drop(hung);
    // What this instance charged reaches the record: nothing is lost to the outage.
    assert_eq!(meter.flush().await, 1);
    assert_eq!(store.inner.spent(&key, march).await.unwrap(), 1000);
    assert_eq!(meter.spent(&key, march).await.unwrap(), 1000);
    assert_eq!(meter.charge(&key, march, 500).await.unwrap(), 1500);
}

#[tokio::test(start_paused = true)]
async fn the_record_meter_breaker_spares_a_hung_store() {
    let store = CountingStore::default();
    let meter = RecordSpendMeter::new(store.clone()).timeout(Duration::from_millis(10));
    let march = Month { year: 2026, month: 3 };
    let _hung = store.hold_spent();
    for i in 0..THRESHOLD {
        let key = KeyId::from(format!("kg_live_key{i:05}").as_str());
        assert!(timeout(HANG, meter.spent(&key, march))
            .await
            .expect("hangs")
            .is_err());
    }
    let reads = store.spents();
    let started = Instant::now();
    let key = KeyId::from("kg_live_another1");
    assert!(timeout(HANG, meter.spent(&key, march))
        .await
        .expect("hangs")
        .is_err());
    assert_eq!(started.elapsed(), Duration::ZERO, "answered at once");
    assert_eq!(store.spents(), reads, "not sent while the breaker is open");
}
