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
