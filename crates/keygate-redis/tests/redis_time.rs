//! `RedisRateLimiter` on Redis' own `TIME` (the default): the `now` passed in is
//! ignored, counters are hash-tagged and expire. Needs `KEYGATE_TEST_REDIS_URL`.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use keygate_core::rate::{Bucket, RateLimiter};
use keygate_core::{KeyId, RateLimit};
use keygate_redis::redis::{self, AsyncCommands};
use keygate_redis::RedisRateLimiter;

fn key(case: &str) -> KeyId {
    KeyId::new(format!("kg_test_{case}_{:016x}", rand::random::<u64>()))
}

fn own(limit: RateLimit) -> Bucket {
    Bucket {
        service: None,
        limit,
        account: None,
    }
}

/// 1990: far from Redis' clock, so a decision that used it would show.
fn long_ago() -> DateTime<Utc> {
    "1990-01-01T00:00:00Z".parse().unwrap()
}

async fn limiter(url: &str) -> RedisRateLimiter {
    RedisRateLimiter::connect(url)
        .await
        .expect("the test Redis answers")
        .timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn redis_time_decides_and_the_passed_now_is_ignored() {
    let Some(url) = common::redis_url() else { return };
    let limiter = limiter(&url).await;
    let k = key("time");
    let buckets = [own(RateLimit::per_hour(3))];
    let before = u64::try_from(Utc::now().timestamp()).unwrap();
    for left in (0..3).rev() {
        let d = limiter.acquire(&k, &buckets, long_ago().into()).await.unwrap();
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.tightest.remaining, left, "{d:?}");
        // Redis' clock and this machine's are the same one here; a generous margin.
        assert!(
            d.tightest.reset_at > before && d.tightest.reset_at <= before + 3600 + 60,
            "reset_at in Redis' time: {d:?}"
        );
    }
    let refused = limiter.acquire(&k, &buckets, long_ago().into()).await.unwrap();
    assert!(!refused.allowed);
    // One request of the hour refills every 20 minutes, less the little time elapsed.
    assert!((1199..=1200).contains(&refused.retry_after), "{refused:?}");
}

#[tokio::test]
async fn counters_are_hash_tagged_and_expire_when_whole_again() {
    let Some(url) = common::redis_url() else { return };
    let limiter = limiter(&url).await;
    let k = key("expiry");
    let chat = Bucket {
        service: Some("chat".into()),
        limit: RateLimit::per_hour(10),
        account: None,
    };
    let buckets = [own(RateLimit::per_minute(10)), chat];
    assert!(
        limiter
            .acquire(&k, &buckets, Utc::now().into())
            .await
            .unwrap()
            .allowed
    );

    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let minute: i64 = redis
        .pttl(format!("{{{}}}:rl:60000000:-", k.as_str()))
        .await
        .unwrap();
    let hour: i64 = redis
        .pttl(format!("{{{}}}:rl:3600000000:s:chat", k.as_str()))
        .await
        .unwrap();
    // One request of 10/min is whole again in 6 s; of 10/h, in 6 min.
    assert!(minute > 0 && minute <= 6_000, "minute counter's TTL: {minute} ms");
    assert!(hour > 6_000 && hour <= 360_000, "hour counter's TTL: {hour} ms");
}

#[tokio::test]
async fn a_window_beyond_the_bounds_is_a_backend_error() {
    let Some(url) = common::redis_url() else { return };
    let limiter = limiter(&url).await;
    let huge = RateLimit::new(4_294_967_291, Duration::from_secs(365 * 86_400));
    let result = limiter
        .acquire(&key("bounds"), &[own(huge)], Utc::now().into())
        .await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn a_large_prime_limit_is_counted_exactly() {
    let Some(url) = common::redis_url() else { return };
    let limiter = limiter(&url).await.with_caller_time();
    let k = key("large");
    // 7 000 003 is prime: the fraction's denominator is the whole limit.
    let buckets = [own(RateLimit::per_second(7_000_003))];
    let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    let d = limiter.acquire(&k, &buckets, now.into()).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.tightest.remaining, 7_000_002);
    let later = now + chrono::Duration::microseconds(1);
    let d = limiter.acquire(&k, &buckets, later.into()).await.unwrap();
    // 1 µs refills 7 requests: the window is whole again but for this one.
    assert_eq!(d.tightest.remaining, 7_000_002, "{d:?}");
}
