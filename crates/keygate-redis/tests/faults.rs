//! `RedisRateLimiter` when Redis fails: each test starts a private `redis-server` (never
//! the shared one), breaks it, and checks the limiter answers `BackendError` in time.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use keygate_core::rate::{Bucket, RateLimiter};
use keygate_core::{KeyId, RateLimit};
use keygate_redis::redis;
use keygate_redis::RedisRateLimiter;

fn buckets() -> [Bucket; 1] {
    [Bucket {
        service: None,
        limit: RateLimit::per_minute(100),
        account: None,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_is_a_backend_error_within_the_budget() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let limiter = RedisRateLimiter::connect(&server.url()).await.unwrap();
    let k = KeyId::from("kg_test_killed");
    assert!(
        limiter
            .acquire(&k, &buckets(), Utc::now().into())
            .await
            .unwrap()
            .allowed
    );

    server.kill();
    for _ in 0..3 {
        let asked = Instant::now();
        let result = limiter.acquire(&k, &buckets(), Utc::now().into()).await;
        let took = asked.elapsed();
        assert!(result.is_err(), "Redis is gone: {result:?}");
        // The budget is 50 ms; the bound is generous for a loaded machine.
        assert!(took < Duration::from_secs(2), "answered in {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_a_backend_error_after_the_timeout() {
    let Some(server) = common::PrivateRedis::start() else {
        return;
    };
    let limiter = RedisRateLimiter::connect(&server.url())
        .await
        .unwrap()
        .timeout(Duration::from_millis(50));
    let k = KeyId::from("kg_test_paused");
    assert!(
        limiter
            .acquire(&k, &buckets(), Utc::now().into())
            .await
            .unwrap()
            .allowed
    );

    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "2000", "ALL"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let asked = Instant::now();
    let result = limiter.acquire(&k, &buckets(), Utc::now().into()).await;
    let took = asked.elapsed();
    assert!(result.is_err(), "Redis is paused: {result:?}");
    assert!(took < Duration::from_millis(1500), "answered in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_is_loaded_again() {
    let Some(server) = common::PrivateRedis::start() else {
        return;
    };
    let limiter = RedisRateLimiter::connect(&server.url())
        .await
        .unwrap()
        .timeout(Duration::from_secs(5));
    let k = KeyId::from("kg_test_noscript");
    let first = limiter.acquire(&k, &buckets(), Utc::now().into()).await.unwrap();
    assert_eq!(first.tightest.remaining, 99);

    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    // EVALSHA answers NOSCRIPT; the script is loaded and run again, counted once.
    let second = limiter.acquire(&k, &buckets(), Utc::now().into()).await.unwrap();
    assert!(second.allowed);
    assert_eq!(second.tightest.remaining, 98, "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_starts_while_redis_is_down_and_recovers_when_it_is_back() {
    let port = common::free_port();
    let limiter = RedisRateLimiter::connect_lazy(&format!("redis://127.0.0.1:{port}")).unwrap();
    let k = KeyId::from("kg_test_lazy");
    let result = limiter.acquire(&k, &buckets(), Utc::now().into()).await;
    assert!(result.is_err(), "nothing listens yet: {result:?}");

    let Some(_server) = common::PrivateRedis::start_on(port) else {
        return;
    };
    // The connection comes back by itself, within its retry delays.
    let started = Instant::now();
    let decision = loop {
        match limiter.acquire(&k, &buckets(), Utc::now().into()).await {
            Ok(decision) => break decision,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(20), "still failing: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(decision.allowed);
    assert_eq!(decision.tightest.remaining, 99);
}

#[test]
fn a_lazy_limiter_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(RedisRateLimiter::connect_lazy("redis://127.0.0.1:6379").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_is_a_backend_error_for_the_spend_meter_too() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let meter = keygate_redis::RedisSpendMeter::connect(&server.url())
        .await
        .unwrap();
    let k = KeyId::from("kg_test_spend_killed");
    let month = keygate_core::spend::Month::of(Utc::now());
    use keygate_core::spend::SpendMeter;
    assert_eq!(meter.charge(&k, month, 10).await.unwrap(), 10);

    server.kill();
    let asked = Instant::now();
    assert!(meter.charge(&k, month, 10).await.is_err());
    assert!(meter.spent(&k, month).await.is_err());
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "answered in {:?}",
        asked.elapsed()
    );
}
