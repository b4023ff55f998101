//! `RedisRateLimiter` against `MemoryRateLimiter`: the same random calls, the same
//! decisions, field for field. Needs `KEYGATE_TEST_REDIS_URL`.
//!
//! Time moves in whole milliseconds, forwards and sometimes back. Where a key's limit
//! changes, limits divide their period in milliseconds, so both limiters' counters
//! stay on whole microseconds (they round differently below one: nanoseconds in
//! memory, microseconds in Redis); elsewhere limits are primes, kept fixed.
//!
//! A changing limit stays within a factor of 2 and above 0: `MemoryRateLimiter`
//! overflows when a counter created by a refused call is rescaled by 2 or more (a key
//! at limit 0 raised to 100/min: a panic in debug builds, refused for ever in release),
//! a bug of keygate-core's `gcra.rs` that `RedisRateLimiter` does not share.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keygate_core::rate::{Bucket, MemoryRateLimiter, RateLimiter};
use keygate_core::{KeyId, RateLimit};
use keygate_redis::RedisRateLimiter;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (service, period in seconds, the limits it may have).
type Identity = (Option<&'static str>, u64, &'static [u32]);

const CHANGING: &[Identity] = &[
    (None, 1, &[4, 5]),
    (None, 60, &[3, 4, 5]),
    (Some("chat"), 60, &[6, 10]),
    (None, 3600, &[8, 9, 12]),
];

const FIXED: &[Identity] = &[
    (None, 1, &[3]),
    (None, 60, &[7]),
    (Some("chat"), 60, &[11]),
    (Some("translation"), 3600, &[13]),
    (Some("blocked"), 60, &[0]),
];

fn bucket(rng: &mut StdRng, (service, period, limits): Identity) -> Bucket {
    Bucket {
        service: service.map(Arc::from),
        limit: RateLimit::new(
            limits[rng.gen_range(0..limits.len())],
            Duration::from_secs(period),
        ),
        account: None,
    }
}

async fn run(url: &str, identities: &[Identity], seed: u64) {
    let redis = RedisRateLimiter::connect(url)
        .await
        .expect("the test Redis answers")
        .timeout(Duration::from_secs(5))
        .with_caller_time();
    let memory = MemoryRateLimiter::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let key = KeyId::new(format!("kg_test_diff_{:016x}", rand::random::<u64>()));
    let mut now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    let mut admitted = 0;
    for call in 0..400 {
        let step = match rng.gen_range(0..10) {
            0..=4 => 0,
            5..=7 => rng.gen_range(1..2_000),
            8 => rng.gen_range(2_000..120_000),
            _ => -rng.gen_range(1..1_000),
        };
        now += chrono::Duration::milliseconds(step);
        let buckets: Vec<Bucket> = (0..rng.gen_range(1..=4))
            .map(|_| {
                let identity = identities[rng.gen_range(0..identities.len())];
                bucket(&mut rng, identity)
            })
            .collect();
        let expected = memory.try_acquire(&key, &buckets, now);
        let got = redis
            .acquire(&key, &buckets, now.into())
            .await
            .expect("Redis answers");
        assert_eq!(got, expected, "seed {seed}, call {call} at {now}: {buckets:?}");
        admitted += usize::from(got.allowed);
    }
    // Both answers were compared often enough to mean something.
    assert!(
        (40..=360).contains(&admitted),
        "seed {seed}: {admitted} of 400 admitted"
    );
}

#[tokio::test]
async fn changing_limits_decide_as_in_memory() {
    let Some(url) = common::redis_url() else { return };
    for seed in 0..3 {
        run(&url, CHANGING, seed).await;
    }
}

#[tokio::test]
async fn fixed_prime_limits_decide_as_in_memory() {
    let Some(url) = common::redis_url() else { return };
    for seed in 10..13 {
        run(&url, FIXED, seed).await;
    }
}

/// Two instances (two connections) racing on one key admit the limit exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_limit() {
    let Some(url) = common::redis_url() else { return };
    let connect = || async {
        RedisRateLimiter::connect(&url)
            .await
            .expect("the test Redis answers")
            .timeout(Duration::from_secs(5))
    };
    let instances = [Arc::new(connect().await), Arc::new(connect().await)];
    let key = KeyId::new(format!("kg_test_two_{:016x}", rand::random::<u64>()));
    let buckets: Arc<[Bucket]> = Arc::from([Bucket {
        service: None,
        limit: RateLimit::per_hour(10),
        account: None,
    }]);
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let (limiter, key, buckets) = (instances[i % 2].clone(), key.clone(), buckets.clone());
            tokio::spawn(async move { limiter.acquire(&key, &buckets, Utc::now().into()).await })
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        admitted += usize::from(call.await.unwrap().unwrap().allowed);
    }
    assert_eq!(admitted, 10);
}

/// A window at the bounds (period in µs × limit = 2^20 × the largest 32-bit prime,
/// just under 2^52), with time jumping back and forth by up to a period, so the
/// script's values come close to 2^52: still the in-memory answers, exactly.
#[tokio::test]
async fn a_window_at_the_bounds_decides_as_in_memory() {
    let Some(url) = common::redis_url() else { return };
    let redis = RedisRateLimiter::connect(&url)
        .await
        .expect("the test Redis answers")
        .timeout(Duration::from_secs(5))
        .with_caller_time();
    let memory = MemoryRateLimiter::new();
    let mut rng = StdRng::seed_from_u64(42);
    let key = KeyId::new(format!("kg_test_bounds_{:016x}", rand::random::<u64>()));
    let buckets = [
        Bucket {
            service: None,
            limit: RateLimit::new(4_294_967_291, Duration::from_micros(1 << 20)),
            account: None,
        },
        Bucket {
            service: None,
            limit: RateLimit::new(3, Duration::from_secs(1)),
            account: None,
        },
    ];
    let start: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    for call in 0..300 {
        let now = start + chrono::Duration::microseconds(rng.gen_range(-1_048_576..1_048_576));
        let expected = memory.try_acquire(&key, &buckets, now);
        let got = redis
            .acquire(&key, &buckets, now.into())
            .await
            .expect("Redis answers");
        assert_eq!(got, expected, "call {call} at {now}");
    }
}
