//! Policy after authentication, through the gate: rate limits (several windows,
//! services, per-key overrides, concurrency, headers), spend caps across a month
//! boundary, and scopes. Time is a `ManualClock`; nothing sleeps.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use keygate_core::clock::{Clock, ManualClock};
use keygate_core::gate::{Admission, Decision};
use keygate_core::hash::Argon2Hasher;
use keygate_core::key::Environment;
use keygate_core::manage::CreatedKey;
use keygate_core::rate::{Bucket, MemoryRateLimiter};
use keygate_core::reject::ErrorFormatKind;
use keygate_core::spend::{MemorySpendMeter, Month};
use keygate_core::{Cost, Gate, GateBuilder, KeyId, MemoryStore, NewKey, RateLimit, Rejection, RoutePolicy};
use serde_json::{json, Value};

/// 2026-03-10T12:00:00Z.
fn t0() -> DateTime<Utc> {
    "2026-03-10T12:00:00Z".parse().unwrap()
}

fn unix(at: DateTime<Utc>) -> u64 {
    at.timestamp() as u64
}

/// The gate of the examples: defaults of 100/min and 1000/h, a spend meter, a manual
/// clock; `tweak` adjusts the builder.
fn gate_with(clock: &ManualClock, tweak: impl FnOnce(GateBuilder) -> GateBuilder) -> Gate {
    let builder = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .rate_limiter(
            MemoryRateLimiter::new(),
            [RateLimit::per_minute(100), RateLimit::per_hour(1000)],
        )
        .spend_meter(MemorySpendMeter::new())
        .clock(clock.clone());
    tweak(builder).build()
}

fn gate(clock: &ManualClock) -> Gate {
    gate_with(clock, |b| b)
}

async fn create(gate: &Gate, new: NewKey) -> CreatedKey {
    gate.keys().create(new).await.unwrap()
}

fn bearer(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    headers
}

fn headers_of(key: &CreatedKey) -> HeaderMap {
    bearer(key.key.expose_secret())
}

async fn admit(gate: &Gate, key: &CreatedKey, route: &RoutePolicy) -> Admission {
    match gate.admit(&headers_of(key), route).await {
        Ok(admission) => admission,
        Err(rejection) => panic!("expected admission, got {rejection:?}: {:?}", rejection.body()),
    }
}

async fn refuse(gate: &Gate, key: &CreatedKey, route: &RoutePolicy, status: StatusCode) -> Rejection {
    let rejection = gate.admit(&headers_of(key), route).await.unwrap_err();
    assert_eq!(rejection.status(), status, "{:?}", rejection.body());
    rejection
}

fn header<'a>(map: &'a HeaderMap, name: &str) -> &'a str {
    map.get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

fn body(rejection: &Rejection) -> Value {
    serde_json::from_slice(rejection.body()).unwrap()
}

fn read() -> RoutePolicy {
    RoutePolicy::new().require(["read"])
}

#[tokio::test]
async fn every_window_applies_at_once() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock);
    let key = create(
        &gate,
        NewKey::new("acct", "two windows")
            .scopes(["read"])
            .rate_limits([RateLimit::per_minute(3), RateLimit::per_hour(5)]),
    )
    .await;
    for _ in 0..3 {
        admit(&gate, &key, &read()).await;
    }
    let minute = refuse(&gate, &key, &read(), StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(header(minute.headers(), "x-ratelimit-limit"), "3");

    clock.advance(Duration::from_secs(60));
    for _ in 0..2 {
        admit(&gate, &key, &read()).await;
    }
    let hour = refuse(&gate, &key, &read(), StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(header(hour.headers(), "x-ratelimit-limit"), "5");
    clock.advance(Duration::from_secs(60));
    refuse(&gate, &key, &read(), StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn each_service_keeps_its_own_counter() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock);
    let key = create(&gate, NewKey::new("acct", "services").scopes(["read", "write"])).await;
    let translate = RoutePolicy::new()
        .require(["read"])
        .limits_for("translation", [RateLimit::per_minute(2)]);
    let chat = RoutePolicy::new()
        .require(["write"])
        .limits_for("chat", [RateLimit::per_minute(2)]);

    admit(&gate, &key, &translate).await;
    let second = admit(&gate, &key, &translate).await;
    assert_eq!(header(&second.headers(), "x-ratelimit-limit"), "2");
    assert_eq!(header(&second.headers(), "x-ratelimit-remaining"), "0");
    refuse(&gate, &key, &translate, StatusCode::TOO_MANY_REQUESTS).await;

    let first_chat = admit(&gate, &key, &chat).await;
    assert_eq!(header(&first_chat.headers(), "x-ratelimit-remaining"), "1");
    admit(&gate, &key, &chat).await;
    refuse(&gate, &key, &chat, StatusCode::TOO_MANY_REQUESTS).await;

    // The key's own minute counted all four admitted requests.
    let plain = admit(&gate, &key, &read()).await;
    assert_eq!(header(&plain.headers(), "x-ratelimit-limit"), "100");
    assert_eq!(header(&plain.headers(), "x-ratelimit-remaining"), "95");
}

#[tokio::test]
async fn a_per_key_override_wins_over_the_defaults() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock);
    let limited = create(
        &gate,
        NewKey::new("acct", "override")
            .scopes(["read"])
            .rate_limits([RateLimit::per_minute(2)]),
    )
    .await;
    let ordinary = create(&gate, NewKey::new("acct", "defaults").scopes(["read"])).await;

    let first = admit(&gate, &limited, &read()).await;
    assert_eq!(header(&first.headers(), "x-ratelimit-limit"), "2");
    admit(&gate, &limited, &read()).await;
    refuse(&gate, &limited, &read(), StatusCode::TOO_MANY_REQUESTS).await;

    let other = admit(&gate, &ordinary, &read()).await;
    assert_eq!(header(&other.headers(), "x-ratelimit-limit"), "100");
    assert_eq!(header(&other.headers(), "x-ratelimit-remaining"), "99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_of_concurrent_requests_is_admitted() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock);
    let key = create(
        &gate,
        NewKey::new("acct", "burst")
            .scopes(["read"])
            .rate_limits([RateLimit::per_minute(10)]),
    )
    .await;
    let headers = headers_of(&key);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let (gate, headers, barrier) = (gate.clone(), headers.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                gate.admit(&headers, &read()).await.map_err(|r| r.status())
            })
        })
        .collect();
    let (mut admitted, mut limited) = (0, 0);
    for request in requests {
        match request.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(StatusCode::TOO_MANY_REQUESTS) => limited += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((admitted, limited), (10, 30));
}

#[tokio::test]
async fn requests_refused_with_401_or_403_consume_no_quota() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock);
    let key = create(
        &gate,
        NewKey::new("acct", "reader")
            .scopes(["read"])
            .rate_limits([RateLimit::per_minute(2)]),
    )
    .await;
    let write = RoutePolicy::new().require(["write"]);
    for _ in 0..5 {
        refuse(&gate, &key, &write, StatusCode::FORBIDDEN).await;
    }
    // The same key id with a mistyped secret.
    let mut mistyped = key.key.expose_secret().to_string();
    let last = mistyped.pop().unwrap();
    mistyped.push(if last == 'A' { 'B' } else { 'A' });
    for _ in 0..5 {
        let rejection = gate.admit(&bearer(&mistyped), &read()).await.unwrap_err();
        assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
        assert!(rejection.headers().get("x-ratelimit-limit").is_none());
    }
    let first = admit(&gate, &key, &read()).await;
    assert_eq!(header(&first.headers(), "x-ratelimit-remaining"), "1");
    admit(&gate, &key, &read()).await;
    refuse(&gate, &key, &read(), StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn a_429_carries_retry_after_and_the_rate_limit_headers() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock);
    let key = create(
        &gate,
        NewKey::new("acct", "slow")
            .scopes(["read"])
            .rate_limits([RateLimit::per_minute(1)]),
    )
    .await;
    admit(&gate, &key, &read()).await;
    clock.advance(Duration::from_millis(500));
    let rejection = refuse(&gate, &key, &read(), StatusCode::TOO_MANY_REQUESTS).await;
    let headers = rejection.headers();
    // 59.5 s to wait, rounded up.
    assert_eq!(header(headers, RETRY_AFTER.as_str()), "60");
    assert_eq!(header(headers, "x-ratelimit-limit"), "1");
    assert_eq!(header(headers, "x-ratelimit-remaining"), "0");
    assert_eq!(
        header(headers, "x-ratelimit-reset"),
        (unix(t0()) + 60).to_string()
    );
    assert_eq!(header(headers, "content-type"), "application/json");
    let body = body(&rejection);
    assert_eq!(body["error"], "Rate limit exceeded");
    assert_eq!(body["status_code"], 429);
    assert_eq!(body["retry_after"], 60);
    assert_eq!(body["timestamp"], "2026-03-10T12:00:00.500Z");

    // Retrying when told to succeeds.
    clock.advance(Duration::from_secs(60));
    admit(&gate, &key, &read()).await;
}

#[tokio::test]
async fn admitted_responses_carry_the_tightest_windows_headers() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock);
    let key = create(&gate, NewKey::new("acct", "defaults").scopes(["read"])).await;
    let admission = admit(&gate, &key, &read()).await;
    let headers = &admission.headers();
    assert_eq!(header(headers, "x-ratelimit-limit"), "100");
    assert_eq!(header(headers, "x-ratelimit-remaining"), "99");
    // The minute is whole again 0.6 s later: the next whole second.
    assert_eq!(header(headers, "x-ratelimit-reset"), (unix(t0()) + 1).to_string());
    assert!(
        headers.get("ratelimit").is_none(),
        "IETF fields are off by default"
    );

    // When the hour has fewer left, the hour is reported.
    let hourly = create(
        &gate,
        NewKey::new("acct", "hourly")
            .scopes(["read"])
            .rate_limits([RateLimit::per_minute(100), RateLimit::per_hour(3)]),
    )
    .await;
    let admission = admit(&gate, &hourly, &read()).await;
    let headers = &admission.headers();
    assert_eq!(header(headers, "x-ratelimit-limit"), "3");
    assert_eq!(header(headers, "x-ratelimit-remaining"), "2");
    assert_eq!(
        header(headers, "x-ratelimit-reset"),
        (unix(t0()) + 1200).to_string()
    );
}

#[tokio::test]
async fn ietf_rate_limit_fields_are_sent_when_switched_on() {
    let clock = ManualClock::new(t0());
    let gate = gate_with(&clock, |b| b.ietf_rate_limit_headers(true));
    let key = create(
        &gate,
        NewKey::new("acct", "ietf")
            .scopes(["read"])
            .rate_limits([RateLimit::per_minute(10)]),
    )
    .await;
    let admission = admit(&gate, &key, &read()).await;
    assert_eq!(
        header(&admission.headers(), "ratelimit"),
        "limit=10, remaining=9, reset=6"
    );
    assert_eq!(header(&admission.headers(), "ratelimit-policy"), "10;w=60");
    assert_eq!(header(&admission.headers(), "x-ratelimit-limit"), "10");
}

#[tokio::test]
async fn a_new_month_resets_spend() {
    let clock = ManualClock::new("2026-11-30T23:59:30Z".parse().unwrap());
    let gate = gate(&clock);
    let key = create(
        &gate,
        NewKey::new("acct", "capped").scopes(["write"]).spend_cap(2000),
    )
    .await;
    let chat = RoutePolicy::new().require(["write"]).cost(1000);

    for _ in 0..2 {
        let admission = admit(&gate, &key, &chat).await;
        gate.settle(&admission, None).await;
    }
    let rejection = refuse(&gate, &key, &chat, StatusCode::PAYMENT_REQUIRED).await;
    let body = body(&rejection);
    assert_eq!(body["error"]["code"], "INSUFFICIENT_QUOTA");
    assert_eq!(body["error"]["details"]["resets_at"], "2026-12-01T00:00:00Z");
    assert!(rejection.headers().get(RETRY_AFTER).is_none());

    clock.advance(Duration::from_secs(29));
    refuse(&gate, &key, &chat, StatusCode::PAYMENT_REQUIRED).await;
    clock.advance(Duration::from_secs(1));
    admit(&gate, &key, &chat).await;
}

#[tokio::test]
async fn a_refusal_for_spend_consumes_no_rate_quota() {
    let clock = ManualClock::new(t0());
    let limiter = MemoryRateLimiter::new();
    let gate = gate_with(&clock, |b| {
        b.rate_limiter(limiter.clone(), [RateLimit::per_minute(100)])
    });
    let key = create(
        &gate,
        NewKey::new("acct", "capped")
            .scopes(["read"])
            .spend_cap(10)
            .rate_limits([RateLimit::per_minute(2)]),
    )
    .await;
    let admission = admit(&gate, &key, &read()).await;
    gate.settle(&admission, Some(Cost(10))).await;
    for _ in 0..5 {
        refuse(&gate, &key, &read(), StatusCode::PAYMENT_REQUIRED).await;
    }
    // The gate's limiter counted the one admitted request only: one left this minute.
    let minute = [Bucket {
        service: None,
        limit: RateLimit::per_minute(2),
        account: None,
    }];
    let decision = limiter.try_acquire(&key.record.key_id, &minute, clock.now());
    assert!(decision.allowed);
    assert_eq!(decision.tightest.remaining, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_add_up_exactly() {
    let clock = ManualClock::new(t0());
    let meter = MemorySpendMeter::new();
    let gate = gate_with(&clock, |b| b.spend_meter(meter.clone()));
    let key = create(
        &gate,
        NewKey::new("acct", "metered")
            .scopes(["read"])
            .spend_cap(1_000_000),
    )
    .await;
    let admission = admit(&gate, &key, &read()).await;
    let settles: Vec<_> = (0..200)
        .map(|_| {
            let (gate, admission) = (gate.clone(), admission.clone());
            tokio::spawn(async move { gate.settle(&admission, Some(Cost(7))).await })
        })
        .collect();
    for settle in settles {
        settle.await.unwrap();
    }
    let key_id: &KeyId = &key.record.key_id;
    assert_eq!(meter.spent_now(key_id, Month::of(t0())), 1400);
    assert_eq!(meter.spent_now(key_id, Month::of(t0()).next()), 0);
}

#[tokio::test]
async fn admin_grants_every_scope_unless_turned_off() {
    let clock = ManualClock::new(t0());
    let write = RoutePolicy::new().require(["write", "webhook"]);

    let gate_on = gate(&clock);
    let admin = create(&gate_on, NewKey::new("acct", "admin").scopes(["admin"])).await;
    admit(&gate_on, &admin, &write).await;

    let gate_off = gate_with(&clock, |b| b.admin_grants_all(false));
    let admin = create(&gate_off, NewKey::new("acct", "admin").scopes(["admin"])).await;
    refuse(&gate_off, &admin, &write, StatusCode::FORBIDDEN).await;
    admit(&gate_off, &admin, &RoutePolicy::new().require(["admin"])).await;
}

#[tokio::test]
async fn a_403_names_the_required_scopes() {
    let clock = ManualClock::new(t0());
    let gate = gate(&clock);
    let key = create(&gate, NewKey::new("acct", "reader").scopes(["read"])).await;
    let route = RoutePolicy::new().require(["write", "read"]);
    let rejection = refuse(&gate, &key, &route, StatusCode::FORBIDDEN).await;
    let body = body(&rejection);
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "INSUFFICIENT_PERMISSIONS");
    assert_eq!(body["error"]["details"], json!({"required": ["read", "write"]}));
    assert_eq!(
        rejection.headers().get(WWW_AUTHENTICATE),
        Some(&HeaderValue::from_static(
            r#"Bearer realm="api", error="insufficient_scope", scope="read write""#
        ))
    );
}

#[tokio::test]
async fn the_error_format_is_chosen_by_name() {
    let clock = ManualClock::new(t0());
    let cases = [
        (
            "openai",
            "application/json",
            json!({"error": {
                "message": "You exceeded your current quota, please check your plan and billing details. \
                            The quota resets at 2026-04-01T00:00:00Z.",
                "type": "insufficient_quota",
                "param": null,
                "code": "insufficient_quota",
            }}),
        ),
        (
            "problem",
            "application/problem+json",
            json!({
                "type": "about:blank",
                "title": "Payment Required",
                "status": 402,
                "detail": "The API key's monthly spend cap is exhausted until 2026-04-01T00:00:00Z.",
                "code": "INSUFFICIENT_QUOTA",
                "resets_at": "2026-04-01T00:00:00Z",
            }),
        ),
    ];
    for (name, content_type, expected) in cases {
        let kind: ErrorFormatKind = name.parse().unwrap();
        let gate = gate_with(&clock, |b| b.error_format(kind));
        let key = create(&gate, NewKey::new("acct", "capped").scopes(["read"]).spend_cap(1)).await;
        let admission = admit(&gate, &key, &read()).await;
        gate.settle(&admission, Some(Cost(1))).await;
        let rejection = refuse(&gate, &key, &read(), StatusCode::PAYMENT_REQUIRED).await;
        assert_eq!(header(rejection.headers(), "content-type"), content_type);
        assert_eq!(body(&rejection), expected, "{name}");
    }
}

#[tokio::test]
async fn the_principal_always_moves_and_only_a_metering_gate_has_work_after_the_handler() {
    let clock = ManualClock::new(t0());
    let metering = gate(&clock);
    let plain = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .clock(clock.clone())
        .build();
    for (gate, keeps) in [(metering, true), (plain, false)] {
        let key = create(&gate, NewKey::new("acct", "k").scopes(["read"])).await;
        let admission = admit(&gate, &key, &read()).await;
        let (handed, after) = admission.into_parts();
        assert_eq!(handed.expect("a principal").key_id(), &key.record.key_id);
        // A metering gate still has the request to charge after the handler.
        assert_eq!(!after.is_empty(), keeps);
    }
}

#[tokio::test]
async fn a_request_admitted_before_midnight_is_charged_to_the_month_it_was_admitted_in() {
    let clock = ManualClock::new("2026-11-30T23:59:59Z".parse().unwrap());
    let meter = MemorySpendMeter::new();
    let gate = gate_with(&clock, |b| b.spend_meter(meter.clone()));
    let key = create(&gate, NewKey::new("acct", "late").scopes(["write"])).await;
    let chat = RoutePolicy::new().require(["write"]).cost(1000);
    let admission = admit(&gate, &key, &chat).await;
    // The handler answers after midnight.
    clock.advance(Duration::from_secs(2));
    gate.settle(&admission, None).await;
    let november = Month {
        year: 2026,
        month: 11,
    };
    assert_eq!(meter.spent_now(&key.record.key_id, november), 1000);
    assert_eq!(meter.spent_now(&key.record.key_id, november.next()), 0);
}

#[tokio::test]
async fn a_gate_refuses_keys_of_an_environment_it_does_not_accept() {
    let clock = ManualClock::new(t0());
    let gate = gate_with(&clock, |b| b.environments([Environment::Live]));
    let live = create(&gate, NewKey::new("acct", "live").scopes(["read"])).await;
    let test = create(
        &gate,
        NewKey::new("acct", "test")
            .scopes(["read"])
            .environment(Environment::Test),
    )
    .await;
    admit(&gate, &live, &read()).await;
    // Refused at once, before any store read or hash: the brand names its environment.
    let Decision::Now(Err(refused)) = gate.decide(&headers_of(&test), &read()) else {
        panic!("a test key is refused from memory on a live-only gate");
    };
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(&refused)["error"]["code"], "INVALID_API_KEY");
    assert_eq!(
        body(&refused)["error"]["details"]["key_id"],
        test.record.key_id.as_str()
    );
    // A gate that accepts both (the default) admits either.
    let both = gate_with(&clock, |b| b);
    let test = create(
        &both,
        NewKey::new("acct", "test")
            .scopes(["read"])
            .environment(Environment::Test),
    )
    .await;
    admit(&both, &test, &read()).await;
}
