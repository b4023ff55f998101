//! One rate-limit check of three windows (two of the key's, one of a service's), as a
//! request costs it: `RedisRateLimiter` (one `EVALSHA` round trip) against
//! `MemoryRateLimiter`. The Redis half needs `KEYGATE_BENCH_REDIS_URL`
//! (`KEYGATE_BENCH_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p keygate-bench --bench
//! redis_check`) and is left out without it. Each run counts under a new key id, so its
//! counters meet no one else's on a shared Redis. Informative: the budget's figures come
//! from the `redis_latency` binary (`docs/ARCHITECTURE.md`, section 7).

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use keygate_core::rate::{Bucket, MemoryRateLimiter, RateLimiter};
use keygate_core::{KeyId, RateLimit};
use keygate_redis::RedisRateLimiter;

fn buckets() -> [Bucket; 3] {
    // Windows the script counts exactly, never refusing.
    [
        Bucket::key(RateLimit::per_minute(60_000_000)),
        Bucket::key(RateLimit::per_hour(3_600_000_000)),
        Bucket::service("ping", RateLimit::per_minute(60_000_000)),
    ]
}

fn redis_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let key = KeyId::from(format!("kg_live_bench{nanos:x}").as_str());
    let buckets = buckets();
    let mut group = c.benchmark_group("rate_check");

    let memory = MemoryRateLimiter::new();
    group.bench_function("memory", |b| {
        b.to_async(&rt).iter(|| async {
            let decision = memory.acquire(&key, &buckets, SystemTime::now().into()).await;
            assert!(decision.is_ok_and(|d| d.allowed), "refused in memory");
        })
    });

    match keygate_bench::redis_url() {
        None => println!("rate_check/redis left out: set KEYGATE_BENCH_REDIS_URL"),
        Some(url) => {
            let redis = rt
                .block_on(RedisRateLimiter::connect(&url))
                .expect("connect to KEYGATE_BENCH_REDIS_URL");
            group.bench_function("redis", |b| {
                b.to_async(&rt).iter(|| async {
                    let decision = redis.acquire(&key, &buckets, SystemTime::now().into()).await;
                    assert!(decision.is_ok_and(|d| d.allowed), "refused by Redis");
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, redis_check);
criterion_main!(benches);
