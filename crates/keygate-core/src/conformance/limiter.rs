//! The [`RateLimiter`] conformance suite: what every limiter must do, checked the same
//! way for each (the in-memory one here, the Redis one in keygate-redis). A backend is
//! done when [`limiter_tests!`](crate::limiter_tests) passes against it unchanged: one test
//! per case below.
//!
//! Each case takes a fresh limiter and panics (like a failed assertion) when the limiter
//! breaks the contract. Key ids carry a random suffix, so a shared backend (one Redis)
//! may run the suite repeatedly. Time is only ever the `now` passed to
//! [`RateLimiter::acquire`], moved forward by hand: no case sleeps. Cases need a Tokio
//! runtime; run them on a multi-threaded one (`#[tokio::test(flavor = "multi_thread")]`)
//! so that [`concurrent_calls_admit_exactly_the_limit`] races on several threads.
//!
//! The contract is the algorithm's outside, not its inside: a limiter may use GCRA, a
//! sliding window or anything else, as long as
//!
//! - every bucket must admit, and the request is then counted in all of them, atomically
//!   (`N` concurrent calls against a limit `L` admit exactly `min(N, L)`);
//! - a refused request counts nowhere;
//! - counters are per (key id, service, period), and an account bucket's per (owner,
//!   service, period), shared by all the owner's keys; a decision's `holder` says whose
//!   window `tightest` is (a key's counters may be kept apart for calls that name an
//!   owner: the gate names its owner on every call of a key whose owner has windows);
//! - an idle key may burst up to each window's limit;
//! - `tightest` is the refusing window, or else the one with the fewest requests left;
//! - `retry_after` is whole seconds, at least 1, rounded up, and exact: a retry after it
//!   is admitted, one a second earlier is not;
//! - at `tightest.reset_at` the window is whole again.
//!
//! # Example
//! ```
//! use keygate_core::rate::MemoryRateLimiter;
//!
//! // In a test file: one `#[tokio::test]` per case, each against a fresh limiter.
//! keygate_core::limiter_tests!(|| async { MemoryRateLimiter::new() });
//! # fn main() {}
//! ```

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Barrier;

use crate::account::Holder;
use crate::rate::{Bucket, RateDecision, RateLimiter};
use crate::{KeyId, OwnerId, RateLimit};

/// 2030-01-01T00:00:00Z.
fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).expect("a valid instant")
}

fn after_millis(at: DateTime<Utc>, millis: i64) -> DateTime<Utc> {
    at + chrono::Duration::milliseconds(millis)
}

fn after_secs(at: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    at + chrono::Duration::seconds(i64::try_from(secs).expect("a reasonable wait"))
}

fn unix(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).expect("after 1970")
}

/// A key id no earlier run used.
fn key(case: &str) -> KeyId {
    KeyId::new(format!("conformance_{case}_{:016x}", rand::random::<u64>()))
}

fn own(limit: RateLimit) -> Bucket {
    Bucket {
        service: None,
        limit,
        account: None,
    }
}

/// A service bucket with a freshly allocated name: counters follow the name, not the
/// allocation.
fn service(name: &str, limit: RateLimit) -> Bucket {
    Bucket {
        service: Some(Arc::from(name)),
        limit,
        account: None,
    }
}

async fn acquire<L: RateLimiter>(
    limiter: &L,
    key: &KeyId,
    buckets: &[Bucket],
    now: DateTime<Utc>,
) -> RateDecision {
    limiter
        .acquire(key, buckets, now.into())
        .await
        .expect("the limiter answers")
}

async fn admit<L: RateLimiter>(
    limiter: &L,
    key: &KeyId,
    buckets: &[Bucket],
    now: DateTime<Utc>,
    what: &str,
) -> RateDecision {
    let decision = acquire(limiter, key, buckets, now).await;
    assert!(decision.allowed, "{what}: expected admission, got {decision:?}");
    decision
}

async fn refuse<L: RateLimiter>(
    limiter: &L,
    key: &KeyId,
    buckets: &[Bucket],
    now: DateTime<Utc>,
    what: &str,
) -> RateDecision {
    let decision = acquire(limiter, key, buckets, now).await;
    assert!(!decision.allowed, "{what}: expected refusal, got {decision:?}");
    assert!(
        decision.retry_after >= 1,
        "{what}: retry_after below 1: {decision:?}"
    );
    assert_eq!(
        decision.tightest.remaining, 0,
        "{what}: a refusing window has nothing left"
    );
    decision
}

/// `limit` requests at one instant are admitted, counting down `remaining`, with the
/// window's limit, period and a reset within one period; the next is refused.
pub async fn an_idle_key_may_burst_up_to_the_limit<L: RateLimiter>(limiter: L) {
    let k = key("burst");
    let now = start();
    let buckets = [own(RateLimit::per_minute(5))];
    for left in (0..5).rev() {
        let d = admit(&limiter, &k, &buckets, now, "burst within the limit").await;
        assert_eq!(d.tightest.limit, 5, "tightest.limit: {d:?}");
        assert_eq!(d.tightest.period_secs, 60, "tightest.period_secs: {d:?}");
        assert_eq!(d.tightest.remaining, left, "tightest.remaining: {d:?}");
        assert!(
            d.tightest.reset_at > unix(now) && d.tightest.reset_at <= unix(now) + 60,
            "reset_at within the window: {d:?}"
        );
    }
    let refused = refuse(&limiter, &k, &buckets, now, "one past the limit").await;
    assert_eq!(refused.tightest.limit, 5, "the refusing window: {refused:?}");
}

/// 3/min and 5/hour together: the minute refuses the 4th request; a minute later the
/// hour refuses the 6th, and is the window reported.
pub async fn every_window_applies_at_once<L: RateLimiter>(limiter: L) {
    let k = key("windows");
    let buckets = [own(RateLimit::per_minute(3)), own(RateLimit::per_hour(5))];
    let t0 = start();
    for _ in 0..3 {
        admit(&limiter, &k, &buckets, t0, "within both windows").await;
    }
    let refused = refuse(&limiter, &k, &buckets, t0, "minute window full").await;
    assert_eq!(
        (refused.tightest.limit, refused.tightest.period_secs),
        (3, 60),
        "the minute refuses: {refused:?}"
    );
    let t1 = after_secs(t0, 60);
    for _ in 0..2 {
        admit(&limiter, &k, &buckets, t1, "a new minute, the hour not yet full").await;
    }
    let refused = refuse(&limiter, &k, &buckets, t1, "hour window full").await;
    assert_eq!(
        (refused.tightest.limit, refused.tightest.period_secs),
        (5, 3600),
        "the hour refuses: {refused:?}"
    );
    refuse(
        &limiter,
        &k,
        &buckets,
        after_secs(t1, 60),
        "hour window still full a minute later",
    )
    .await;
}

/// Each service counts on its own; the key's own window counts every request.
pub async fn services_keep_separate_counters<L: RateLimiter>(limiter: L) {
    let k = key("services");
    let now = start();
    let own_limit = own(RateLimit::per_minute(5));
    let translation = || {
        [
            own_limit.clone(),
            service("translation", RateLimit::per_minute(2)),
        ]
    };
    let chat = || [own_limit.clone(), service("chat", RateLimit::per_minute(2))];

    admit(&limiter, &k, &translation(), now, "translation 1").await;
    admit(&limiter, &k, &translation(), now, "translation 2").await;
    let refused = refuse(&limiter, &k, &translation(), now, "translation 3").await;
    assert_eq!(
        refused.tightest.limit, 2,
        "the service window refuses: {refused:?}"
    );

    admit(&limiter, &k, &chat(), now, "chat 1: its own counter").await;
    let d = admit(&limiter, &k, &chat(), now, "chat 2").await;
    assert_eq!(d.tightest.remaining, 0, "chat's window is now full: {d:?}");
    refuse(&limiter, &k, &chat(), now, "chat 3").await;

    // Four requests counted in the key's own window, one left.
    let d = admit(
        &limiter,
        &k,
        std::slice::from_ref(&own_limit),
        now,
        "outside any service",
    )
    .await;
    assert_eq!(
        (d.tightest.limit, d.tightest.remaining),
        (5, 0),
        "key window: {d:?}"
    );
    let refused = refuse(&limiter, &k, &[own_limit], now, "key window full").await;
    assert_eq!(refused.tightest.limit, 5, "the key window refuses: {refused:?}");
}

/// One key's requests never count against another's.
pub async fn keys_keep_separate_counters<L: RateLimiter>(limiter: L) {
    let (a, b) = (key("keys_a"), key("keys_b"));
    let now = start();
    let buckets = [own(RateLimit::per_minute(1))];
    admit(&limiter, &a, &buckets, now, "key a").await;
    refuse(&limiter, &a, &buckets, now, "key a again").await;
    let d = admit(&limiter, &b, &buckets, now, "key b is untouched").await;
    assert_eq!(d.tightest.remaining, 0, "{d:?}");
}

/// `N` concurrent calls against a limit `L` admit exactly `min(N, L)`.
pub async fn concurrent_calls_admit_exactly_the_limit<L: RateLimiter>(limiter: L) {
    let limiter = Arc::new(limiter);
    for (n, limit) in [(64_usize, 16_u32), (8, 16)] {
        let k = key("concurrent");
        let buckets: Arc<[Bucket]> =
            Arc::from([own(RateLimit::per_minute(limit)), own(RateLimit::per_hour(1000))]);
        let barrier = Arc::new(Barrier::new(n));
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let (limiter, k, buckets, barrier) =
                    (limiter.clone(), k.clone(), buckets.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    acquire(&*limiter, &k, &buckets, start()).await.allowed
                })
            })
            .collect();
        let mut admitted = 0;
        for call in calls {
            admitted += usize::from(call.await.expect("a call completes"));
        }
        let expected = n.min(limit as usize);
        assert_eq!(admitted, expected, "{n} concurrent calls against {limit}");
        // Every admitted call was counted in the hour as well.
        let d = acquire(&*limiter, &k, &[own(RateLimit::per_hour(1000))], start()).await;
        assert_eq!(
            d.tightest.remaining as usize,
            1000 - expected - 1,
            "hour window: {d:?}"
        );
    }
}

/// A request refused by one window is counted in none: not in the window that refused
/// it, nor in those that would have admitted it.
pub async fn a_refused_request_counts_in_no_window<L: RateLimiter>(limiter: L) {
    let k = key("refusals");
    let buckets = [own(RateLimit::per_minute(1)), own(RateLimit::per_hour(2))];
    let t0 = start();
    admit(&limiter, &k, &buckets, t0, "first").await;
    for _ in 0..10 {
        refuse(&limiter, &k, &buckets, t0, "minute full").await;
    }
    let t1 = after_secs(t0, 60);
    let d = admit(
        &limiter,
        &k,
        &buckets,
        t1,
        "second: the refusals did not use the hour",
    )
    .await;
    assert_eq!(d.tightest.remaining, 0, "{d:?}");
    let refused = refuse(&limiter, &k, &buckets, after_secs(t1, 60), "hour full").await;
    assert_eq!(refused.tightest.limit, 2, "the hour refuses: {refused:?}");

    // With a service: refusals by the service window leave the key's window alone.
    let k = key("refusals_service");
    let own_limit = own(RateLimit::per_minute(10));
    let chat = [own_limit.clone(), service("chat", RateLimit::per_minute(1))];
    admit(&limiter, &k, &chat, t0, "chat").await;
    for _ in 0..5 {
        refuse(&limiter, &k, &chat, t0, "chat full").await;
    }
    let d = admit(&limiter, &k, &[own_limit], t0, "outside the service").await;
    assert_eq!(
        d.tightest.remaining, 8,
        "two requests counted in the key's window: {d:?}"
    );
}

/// `retry_after` is at least one second, rounded up, and exact: retrying a second
/// earlier is refused, retrying on time is admitted.
pub async fn retry_after_is_whole_seconds_rounded_up_and_at_least_one<L: RateLimiter>(limiter: L) {
    // Less than a second to wait: still 1.
    let k = key("retry_short");
    let t0 = start();
    let per_second = [own(RateLimit::per_second(1))];
    admit(&limiter, &k, &per_second, t0, "first").await;
    let refused = refuse(
        &limiter,
        &k,
        &per_second,
        after_millis(t0, 500),
        "within the second",
    )
    .await;
    assert_eq!(
        refused.retry_after, 1,
        "half a second rounds up to 1: {refused:?}"
    );

    // A fractional wait of many seconds, asked a quarter second into it.
    let k = key("retry_long");
    let buckets = [own(RateLimit::per_minute(2))];
    admit(&limiter, &k, &buckets, t0, "first").await;
    admit(&limiter, &k, &buckets, t0, "second").await;
    let asked = after_millis(t0, 250);
    let refused = refuse(&limiter, &k, &buckets, asked, "minute full").await;
    let wait = refused.retry_after;
    assert!((2..=60).contains(&wait), "a wait within the window: {refused:?}");
    refuse(
        &limiter,
        &k,
        &buckets,
        after_secs(asked, wait - 1),
        "a second before retry_after",
    )
    .await;
    admit(&limiter, &k, &buckets, after_secs(asked, wait), "at retry_after").await;
}

/// At the `reset_at` of an admitted decision, the window admits its whole limit again;
/// one period after a burst, it admits again.
pub async fn a_window_is_whole_again_at_its_reset<L: RateLimiter>(limiter: L) {
    let k = key("reset");
    let buckets = [own(RateLimit::per_minute(3))];
    let t0 = start();
    let mut reset_at = 0;
    for _ in 0..3 {
        reset_at = admit(&limiter, &k, &buckets, t0, "burst").await.tightest.reset_at;
    }
    refuse(&limiter, &k, &buckets, t0, "after the burst").await;
    assert!(
        reset_at <= unix(t0) + 60,
        "the window resets within its period: {reset_at}"
    );
    let reset =
        DateTime::from_timestamp(i64::try_from(reset_at).expect("a Unix time"), 0).expect("an instant");
    for _ in 0..3 {
        admit(&limiter, &k, &buckets, reset, "whole again at reset_at").await;
    }
    refuse(&limiter, &k, &buckets, reset, "and then full again").await;

    let k = key("reset_period");
    for _ in 0..3 {
        admit(&limiter, &k, &buckets, t0, "burst").await;
    }
    admit(&limiter, &k, &buckets, after_secs(t0, 60), "one period later").await;
}

/// An owner no earlier run used.
fn owner(case: &str) -> OwnerId {
    OwnerId::new(format!("conformance_{case}_{:016x}", rand::random::<u64>()))
}

/// A key's window and its owner's account-wide one, as the gate passes them.
fn with_account(key_limit: RateLimit, owner: &OwnerId, account_limit: RateLimit) -> [Bucket; 2] {
    [own(key_limit), Bucket::account(owner.clone(), account_limit)]
}

/// A key's own window, read through a call that still names its owner (with a roomy
/// account window of another period, which changes nothing): the gate passes an owner's
/// windows with every request of its keys, and a limiter may keep a key's counters
/// apart from the ones of calls without them (the Redis one tags them by owner then).
fn own_with(owner: &OwnerId, key_limit: RateLimit) -> [Bucket; 2] {
    [
        own(key_limit),
        Bucket::account(owner.clone(), RateLimit::per_day(1_000_000)),
    ]
}

/// Every key of an owner counts in the owner's window: an account of 3/min admits 3
/// requests across its keys, whatever each key's own limit, then refuses each of them,
/// naming the account; another owner's keys are not affected.
pub async fn an_account_window_is_shared_by_its_keys<L: RateLimiter>(limiter: L) {
    let acct = owner("shared");
    let (a, b) = (key("shared_a"), key("shared_b"));
    let buckets = with_account(RateLimit::per_minute(10), &acct, RateLimit::per_minute(3));
    let now = start();
    admit(&limiter, &a, &buckets, now, "a, first of the account's 3").await;
    admit(&limiter, &b, &buckets, now, "b, second").await;
    let third = admit(&limiter, &a, &buckets, now, "a, third").await;
    assert_eq!(
        third.holder,
        Holder::Account,
        "the account's window is the tightest: {third:?}"
    );
    assert_eq!(
        (third.tightest.limit, third.tightest.remaining),
        (3, 0),
        "{third:?}"
    );
    for k in [&a, &b] {
        let refused = refuse(&limiter, k, &buckets, now, "past the account's limit").await;
        assert_eq!(
            refused.holder,
            Holder::Account,
            "the account refused: {refused:?}"
        );
        assert_eq!(refused.tightest.limit, 3, "the refusing window: {refused:?}");
    }
    let other = with_account(
        RateLimit::per_minute(10),
        &owner("other"),
        RateLimit::per_minute(3),
    );
    admit(&limiter, &key("other"), &other, now, "another owner's key").await;
    let alone = admit(
        &limiter,
        &a,
        &own_with(&acct, RateLimit::per_minute(10)),
        now,
        "a's own window",
    )
    .await;
    assert_eq!(alone.holder, Holder::Key, "{alone:?}");
    assert_eq!(
        alone.tightest.remaining, 7,
        "a counted twice, then this: {alone:?}"
    );
}

/// All or nothing across the key and its account: a request the account refuses is not
/// counted in the key's window, and one the key refuses is not counted in the account's.
pub async fn a_request_refused_by_key_or_account_counts_in_neither<L: RateLimiter>(limiter: L) {
    let now = start();
    // Refused by the account: the key's window is untouched.
    let acct = owner("refused_by_account");
    let (k, other) = (key("by_account"), key("by_account_other"));
    let buckets = with_account(RateLimit::per_minute(2), &acct, RateLimit::per_minute(2));
    admit(&limiter, &k, &buckets, now, "k, the account's first").await;
    admit(
        &limiter,
        &other,
        &buckets,
        now,
        "another key, the account's second",
    )
    .await;
    let refused = refuse(&limiter, &k, &buckets, now, "k, past the account").await;
    assert_eq!(refused.holder, Holder::Account, "{refused:?}");
    let alone = admit(
        &limiter,
        &k,
        &own_with(&acct, RateLimit::per_minute(2)),
        now,
        "k's own second",
    )
    .await;
    assert_eq!(
        alone.tightest.remaining, 0,
        "k counted once before, not by the refusal: {alone:?}"
    );

    // Refused by the key: the account's window is untouched.
    let acct = owner("refused_by_key");
    let (k, other) = (key("by_key"), key("by_key_other"));
    let tight = with_account(RateLimit::per_minute(1), &acct, RateLimit::per_minute(2));
    admit(&limiter, &k, &tight, now, "k, its only one").await;
    let refused = refuse(&limiter, &k, &tight, now, "k, past its own").await;
    assert_eq!(refused.holder, Holder::Key, "{refused:?}");
    let roomy = with_account(RateLimit::per_minute(10), &acct, RateLimit::per_minute(2));
    admit(
        &limiter,
        &other,
        &roomy,
        now,
        "the account's second: the refusal took none",
    )
    .await;
    let full = refuse(&limiter, &other, &roomy, now, "the account full").await;
    assert_eq!(full.holder, Holder::Account, "{full:?}");
}

/// Concurrent calls from several keys of one owner admit exactly the account's limit.
pub async fn concurrent_keys_of_one_account_admit_exactly_its_limit<L: RateLimiter>(limiter: L) {
    let limiter = Arc::new(limiter);
    let acct = owner("concurrent_account");
    let keys: Vec<KeyId> = (0..4).map(|i| key(&format!("concurrent_account_{i}"))).collect();
    let buckets: Arc<[Bucket]> = Arc::from(with_account(
        RateLimit::per_minute(100),
        &acct,
        RateLimit::per_minute(7),
    ));
    let n = 32;
    let barrier = Arc::new(Barrier::new(n));
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let (limiter, k, buckets, barrier) = (
                limiter.clone(),
                keys[i % keys.len()].clone(),
                buckets.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                acquire(&*limiter, &k, &buckets, start()).await.allowed
            })
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        admitted += usize::from(call.await.expect("a call completes"));
    }
    assert_eq!(
        admitted, 7,
        "{n} concurrent calls over 4 keys against an account of 7"
    );
}
