//! The outage policy of `RedisRateLimiter`: a circuit breaker that stops calling a Redis
//! that fails, and `Local`, which enforces the limits from memory meanwhile. Each test
//! runs its own `redis-server`.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use keygate_core::rate::{Bucket, RateLimiter};
use keygate_core::{KeyId, RateLimit};
use keygate_redis::redis;
use keygate_redis::RedisRateLimiter;

fn buckets(limit: u32) -> [Bucket; 1] {
    [Bucket {
        service: None,
        limit: RateLimit::per_minute(limit),
        account: None,
    }]
}

fn key() -> KeyId {
    KeyId::new(format!("kg_test_outage_{:016x}", rand::random::<u64>()))
}

/// Whether Redis at `url` holds a counter of `key`.
async fn counted_in_redis(url: &str, key: &KeyId) -> bool {
    let client = redis::Client::open(url).unwrap();
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}}}*", key.as_str()))
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    !keys.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_sends_nothing_and_answers_at_once() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let limiter = RedisRateLimiter::connect(&server.url())
        .await
        .unwrap()
        .timeout(Duration::from_millis(50));
    let k = key();
    let now = || Utc::now().into();
    assert!(limiter.acquire(&k, &buckets(100), now()).await.unwrap().allowed);
    server.kill();
    let mut errors = Vec::new();
    for _ in 0..10 {
        errors.push(limiter.acquire(&k, &buckets(100), now()).await.unwrap_err().0);
    }
    // Three failures in a row open it; the calls after those are not sent.
    assert!(
        errors[..3].iter().all(|e| !e.contains("circuit breaker")),
        "{errors:?}"
    );
    assert!(
        errors[3..].iter().all(|e| e.contains("circuit breaker open")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_a_request_at_most_the_budget() {
    let Some(server) = common::PrivateRedis::start() else {
        return;
    };
    let budget = Duration::from_millis(50);
    let limiter = RedisRateLimiter::connect(&server.url())
        .await
        .unwrap()
        .timeout(budget);
    let k = key();
    assert!(
        limiter
            .acquire(&k, &buckets(100), Utc::now().into())
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
        .arg(&["PAUSE", "3000", "ALL"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        assert!(limiter
            .acquire(&k, &buckets(100), Utc::now().into())
            .await
            .is_err());
        slowest = slowest.max(asked.elapsed());
    }
    println!("slowest answer while Redis hung: {slowest:?} (budget {budget:?})");
    // The bound is the budget plus 20 ms; this one is generous for a loaded
    // machine, and still far below the 3 s the pause lasts.
    assert!(slowest < Duration::from_millis(1000), "{slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_local_a_killed_redis_is_replaced_by_limits_from_memory_until_it_is_back() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let url = server.url();
    let limiter = RedisRateLimiter::connect(&url)
        .await
        .unwrap()
        .timeout(Duration::from_millis(50))
        .local_fallback();
    let k = key();
    let now = || Utc::now().into();
    assert!(limiter.acquire(&k, &buckets(3), now()).await.unwrap().allowed);
    assert!(counted_in_redis(&url, &k).await);

    server.kill();
    // No error: this instance counts the limit itself, from a fresh window.
    let mut admitted = 0;
    for _ in 0..6 {
        if limiter.acquire(&k, &buckets(3), now()).await.unwrap().allowed {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "the limit, enforced from memory");

    // Back (empty, as our Redis keeps nothing): once the breaker lets a probe through,
    // calls are counted in Redis again.
    let _server = common::PrivateRedis::start_on(server.port).expect("redis-server restarts");
    let other = key();
    let started = Instant::now();
    loop {
        limiter.acquire(&other, &buckets(3), now()).await.unwrap();
        if counted_in_redis(&url, &other).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "Redis not used again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_local_spend_is_metered_through_an_outage_and_reconciled_when_redis_is_back() {
    use keygate_core::spend::{Month, SpendMeter};
    use keygate_core::{KeyStore, MemoryStore};
    use keygate_redis::RedisSpendMeter;

    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let url = server.url();
    let store = MemoryStore::new();
    let instance = || {
        RedisSpendMeter::connect_lazy(&url)
            .unwrap()
            .timeout(Duration::from_millis(200))
            .record_to(store.clone())
            .local_fallback()
    };
    let (a, b) = (instance(), instance());
    let (k, month) = (key(), Month::of(Utc::now()));
    assert_eq!(a.charge(&k, month, 1000).await.unwrap(), 1000);

    server.kill();
    // No error: each instance meters on its own, on top of what Redis last told it.
    assert_eq!(a.charge(&k, month, 500).await.unwrap(), 1500);
    assert_eq!(a.spent(&k, month).await.unwrap(), 1500);
    assert_eq!(
        b.charge(&k, month, 200).await.unwrap(),
        200,
        "b never saw the key"
    );
    a.flush().await;
    b.flush().await;
    assert_eq!(
        store.spent(&k, month).await.unwrap(),
        1700,
        "the record has every charge"
    );

    // Back, empty: the counter is reseeded from the record, and what is owed is charged
    // once, by the next flush or call of each instance.
    let _server = common::PrivateRedis::start_on(server.port).expect("redis-server restarts");
    let client = redis::Client::open(url.as_str()).unwrap();
    let counter = format!("{{{}}}:spend:{month}", k.as_str());
    let started = Instant::now();
    loop {
        a.flush().await;
        b.flush().await;
        let in_redis: Option<u64> = match client.get_multiplexed_async_connection().await {
            Ok(mut c) => redis::cmd("GET")
                .arg(&counter)
                .query_async(&mut c)
                .await
                .unwrap_or(None),
            Err(_) => None,
        };
        if in_redis == Some(1700) {
            break;
        }
        assert!(in_redis.is_none_or(|t| t < 1700), "counted twice: {in_redis:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not reconciled: {in_redis:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.spent(&k, month).await.unwrap(), 1700);
    assert_eq!(b.spent(&k, month).await.unwrap(), 1700);
    assert_eq!(b.charge(&k, month, 1).await.unwrap(), 1701);
    b.flush().await;
    assert_eq!(
        store.spent(&k, month).await.unwrap(),
        1701,
        "Redis and the record agree"
    );
}
