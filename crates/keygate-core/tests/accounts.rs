//! Accounts through the gate: an owner's spend cap and rate limits shared by all its
//! keys, all or nothing with each key's own, named in the refusal; set while keys are
//! cached; and the attack they exist for: minting keys (or rotating them) to multiply a
//! budget. Time is a `ManualClock`; nothing sleeps.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use keygate_core::account::{spend_subject, Holder};
use keygate_core::clock::ManualClock;
use keygate_core::gate::Admission;
use keygate_core::hash::Argon2Hasher;
use keygate_core::manage::CreatedKey;
use keygate_core::rate::MemoryRateLimiter;
use keygate_core::spend::{MemorySpendMeter, Month, SpendMeter};
use keygate_core::{Cost, Denial, Gate, MemoryStore, NewKey, OwnerId, RateLimit, Rejection, RoutePolicy};
use serde_json::Value;

fn t0() -> DateTime<Utc> {
    "2026-03-10T12:00:00Z".parse().unwrap()
}

fn gate(clock: &ManualClock, meter: &MemorySpendMeter) -> Gate {
    Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .rate_limiter(MemoryRateLimiter::new(), [RateLimit::per_minute(100)])
        .spend_meter(meter.clone())
        .clock(clock.clone())
        .build()
}

fn headers(key: &CreatedKey) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {}", key.key.expose_secret());
    headers.insert("authorization", value.parse().unwrap());
    headers
}

async fn admit(gate: &Gate, key: &CreatedKey) -> Result<Admission, Rejection> {
    gate.admit(&headers(key), &RoutePolicy::new()).await
}

fn body(rejection: &Rejection) -> Value {
    serde_json::from_slice(rejection.body()).unwrap()
}

/// Admits and charges `cost`, as a handler that declared it would.
async fn spend(gate: &Gate, key: &CreatedKey, cost: u64) -> Result<(), Rejection> {
    let admission = admit(gate, key).await?;
    gate.settle(&admission, Some(Cost(cost))).await;
    Ok(())
}

#[tokio::test]
async fn an_accounts_cap_is_shared_by_its_keys_and_named_when_it_refuses() {
    let clock = ManualClock::new(t0());
    let meter = MemorySpendMeter::new();
    let gate = gate(&clock, &meter);
    let owner = OwnerId::new("acct_capped");
    gate.keys()
        .set_owner_limits(&owner, vec![], Some(3000))
        .await
        .unwrap();
    // Each key alone could spend ten times the account's cap.
    let a = gate
        .keys()
        .create(NewKey::new("acct_capped", "a").spend_cap(30_000))
        .await
        .unwrap();
    let b = gate.keys().create(NewKey::new("acct_capped", "b")).await.unwrap();
    spend(&gate, &a, 1000).await.unwrap();
    spend(&gate, &b, 1000).await.unwrap();
    spend(&gate, &a, 1000).await.unwrap();
    for key in [&a, &b] {
        let refused = admit(&gate, key).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
        assert!(matches!(
            refused.denial(),
            Denial::QuotaExceeded {
                holder: Holder::Account,
                ..
            }
        ));
        assert_eq!(body(&refused)["error"]["details"]["limit"], "account");
        assert_eq!(body(&refused)["error"]["code"], "INSUFFICIENT_QUOTA");
    }
    let month = Month::of(t0());
    assert_eq!(meter.spent(&spend_subject(&owner), month).await.unwrap(), 3000);
    assert_eq!(meter.spent(&a.record.key_id, month).await.unwrap(), 2000);
    // A key's own cap still speaks for itself, with the documented bytes.
    let other = gate
        .keys()
        .create(NewKey::new("acct_free", "own").spend_cap(500))
        .await
        .unwrap();
    spend(&gate, &other, 500).await.unwrap();
    let refused = admit(&gate, &other).await.unwrap_err();
    assert_eq!(body(&refused)["error"]["details"].get("limit"), None);
}

#[tokio::test]
async fn minting_or_rotating_keys_never_multiplies_the_accounts_budget() {
    let clock = ManualClock::new(t0());
    let meter = MemorySpendMeter::new();
    let gate = gate(&clock, &meter);
    let owner = OwnerId::new("acct_greedy");
    gate.keys()
        .set_owner_limits(&owner, vec![], Some(2000))
        .await
        .unwrap();
    let first = gate
        .keys()
        .create(NewKey::new("acct_greedy", "first"))
        .await
        .unwrap();
    spend(&gate, &first, 1500).await.unwrap();
    // The attack: a fresh key (its own fresh meter) and a rotation (a fresh key id).
    let child = gate
        .keys()
        .create(NewKey::new("acct_greedy", "child"))
        .await
        .unwrap();
    spend(&gate, &child, 1500).await.unwrap(); // admitted below the cap, charged past it
    let rotated = gate
        .keys()
        .rotate(&first.record.key_id, Duration::ZERO)
        .await
        .unwrap();
    let mut minted = Vec::new();
    for i in 0..5 {
        minted.push(
            gate.keys()
                .create(NewKey::new("acct_greedy", format!("n{i}")))
                .await
                .unwrap(),
        );
    }
    for key in minted.iter().chain([&child, &rotated.new]) {
        let refused = admit(&gate, key).await.unwrap_err();
        assert_eq!(
            refused.status(),
            StatusCode::PAYMENT_REQUIRED,
            "{}",
            key.record.key_id
        );
    }
}

#[tokio::test]
async fn an_accounts_window_admits_exactly_its_limit_across_its_keys() {
    let clock = ManualClock::new(t0());
    let meter = MemorySpendMeter::new();
    let gate = gate(&clock, &meter);
    let owner = OwnerId::new("acct_limited");
    gate.keys()
        .set_owner_limits(&owner, vec![RateLimit::per_minute(10)], None)
        .await
        .unwrap();
    let a = gate
        .keys()
        .create(NewKey::new("acct_limited", "a"))
        .await
        .unwrap();
    let b = gate
        .keys()
        .create(NewKey::new("acct_limited", "b"))
        .await
        .unwrap();
    let mut admitted = 0;
    let mut refused_by_account = 0;
    for i in 0..30 {
        match admit(&gate, if i % 2 == 0 { &a } else { &b }).await {
            Ok(_) => admitted += 1,
            Err(refused) => {
                assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
                assert_eq!(body(&refused)["limit"], "account");
                assert!(refused.headers().contains_key("retry-after"));
                refused_by_account += 1;
            }
        }
    }
    assert_eq!((admitted, refused_by_account), (10, 20));
    // The account refills as GCRA does: one request every 6 s, for any of its keys.
    clock.advance(Duration::from_secs(6));
    assert!(admit(&gate, &b).await.is_ok());
    assert!(admit(&gate, &a).await.is_err());
}

#[tokio::test]
async fn limits_set_while_keys_are_cached_apply_at_once_and_lifting_them_frees_the_keys() {
    let clock = ManualClock::new(t0());
    let meter = MemorySpendMeter::new();
    let gate = gate(&clock, &meter);
    let owner = OwnerId::new("acct_later");
    let key = gate.keys().create(NewKey::new("acct_later", "k")).await.unwrap();
    for _ in 0..5 {
        admit(&gate, &key).await.unwrap(); // cached, and 5 requests in before the limit
    }
    gate.keys()
        .set_owner_limits(&owner, vec![RateLimit::per_minute(2)], None)
        .await
        .unwrap();
    admit(&gate, &key).await.unwrap();
    admit(&gate, &key).await.unwrap();
    let refused = admit(&gate, &key).await.unwrap_err();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        gate.keys()
            .owner_limits(&owner)
            .await
            .unwrap()
            .unwrap()
            .rate_limits,
        vec![RateLimit::per_minute(2)]
    );
    gate.keys().set_owner_limits(&owner, vec![], None).await.unwrap();
    admit(&gate, &key).await.unwrap();
}

#[tokio::test]
async fn a_request_the_account_refuses_is_not_counted_in_the_keys_window() {
    let clock = ManualClock::new(t0());
    let meter = MemorySpendMeter::new();
    let gate = gate(&clock, &meter);
    let owner = OwnerId::new("acct_atomic");
    gate.keys()
        .set_owner_limits(&owner, vec![RateLimit::per_minute(1)], None)
        .await
        .unwrap();
    let own = [RateLimit::per_minute(3)];
    let a = gate
        .keys()
        .create(NewKey::new("acct_atomic", "a").rate_limits(own))
        .await
        .unwrap();
    admit(&gate, &a).await.unwrap();
    for _ in 0..5 {
        admit(&gate, &a).await.unwrap_err();
    }
    // Lift the account's window: the key has used 1 of its 3, not 6.
    gate.keys().set_owner_limits(&owner, vec![], None).await.unwrap();
    let admitted = admit(&gate, &a).await.unwrap();
    let (_, after) = admitted.into_parts();
    let headers = after.finish(200, || None).headers.unwrap();
    assert_eq!(headers.numbers()[1], 1, "remaining after the key's 2nd of 3");
}

#[tokio::test]
async fn an_owner_id_with_nul_is_refused() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock, &MemorySpendMeter::new());
    let err = gate
        .keys()
        .set_owner_limits(&OwnerId::new("a\0b"), vec![], Some(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
}

#[tokio::test]
async fn a_free_route_serves_a_key_past_its_caps_and_charges_nothing() {
    let clock = ManualClock::new(t0());
    let meter = MemorySpendMeter::new();
    let gate = gate(&clock, &meter);
    let owner = OwnerId::new("acct_free_route");
    gate.keys()
        .set_owner_limits(&owner, vec![], Some(1000))
        .await
        .unwrap();
    let key = gate
        .keys()
        .create(NewKey::new("acct_free_route", "k").spend_cap(1000))
        .await
        .unwrap();
    spend(&gate, &key, 1000).await.unwrap();
    assert_eq!(
        admit(&gate, &key).await.unwrap_err().status(),
        StatusCode::PAYMENT_REQUIRED
    );
    let free = RoutePolicy::new().cost(500).free(true);
    let admitted = gate.admit(&headers(&key), &free).await.unwrap();
    gate.settle(&admitted, Some(Cost(250))).await;
    let month = Month::of(t0());
    assert_eq!(
        meter.spent(&key.record.key_id, month).await.unwrap(),
        1000,
        "nothing charged"
    );
    assert_eq!(meter.spent(&spend_subject(&owner), month).await.unwrap(), 1000);
}

#[tokio::test]
async fn charges_and_refusals_join_the_keys_daily_usage() {
    let clock = ManualClock::new(t0());
    let meter = MemorySpendMeter::new();
    let gate = gate(&clock, &meter);
    let key = gate
        .keys()
        .create(NewKey::new("acct_daily", "k").spend_cap(2500))
        .await
        .unwrap();
    spend(&gate, &key, 1000).await.unwrap();
    spend(&gate, &key, 1500).await.unwrap();
    // At the cap: 402, twice; a scope it lacks: 403, once.
    for _ in 0..2 {
        assert_eq!(
            admit(&gate, &key).await.unwrap_err().status(),
            StatusCode::PAYMENT_REQUIRED
        );
    }
    let write = RoutePolicy::new().require(["write"]);
    assert_eq!(
        gate.admit(&headers(&key), &write).await.unwrap_err().status(),
        StatusCode::FORBIDDEN
    );
    gate.flush_usage().await;
    let days = gate
        .keys()
        .daily_usage(&OwnerId::new("acct_daily"), t0().date_naive())
        .await
        .unwrap();
    assert_eq!(days.len(), 1, "{days:?}");
    let today = &days[0];
    assert_eq!((today.requests, today.spend), (2, 2500));
    assert_eq!(
        (today.refused.quota, today.refused.scope, today.refused.rate),
        (2, 1, 0)
    );
    // Refusals are not uses: the key's count is its two admitted requests.
    let record = gate.keys().find(&key.record.key_id).await.unwrap().unwrap();
    assert_eq!(record.usage.request_count, 2);
}
