//! The in-memory rate limiter's check, the per-request cost of rate limiting:
//! `cargo bench -p keygate-core --bench limiter`.
//!
//! - `hot_key/admitted`: one key, two windows (the key's own and a service's) with limits
//!   high enough that every call is admitted: the common case.
//! - `hot_key/refused`: one key whose minute is used up.
//! - `many_keys/admitted`: 1 000 and 100 000 keys in turn; with many, the lookups miss
//!   the CPU caches.
//! - `contended/2_threads`: two threads on one key, the per-key mutex under contention.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keygate_core::rate::{Bucket, MemoryRateLimiter};
use keygate_core::{KeyId, RateLimit};

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).expect("a valid instant")
}

/// Two windows that admit one call every 10 ms indefinitely (and bursts of 100 000).
fn roomy() -> [Bucket; 2] {
    [
        Bucket {
            service: None,
            limit: RateLimit::per_minute(100_000),
            account: None,
        },
        Bucket {
            service: Some(Arc::from("chat")),
            limit: RateLimit::per_hour(1_000_000),
            account: None,
        },
    ]
}

/// The time of the `tick`th call: 10 ms apart.
fn tick(tick: u64) -> DateTime<Utc> {
    start() + chrono::Duration::milliseconds(10 * tick as i64)
}

fn hot_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot_key");
    group.throughput(Throughput::Elements(1));
    let limiter = MemoryRateLimiter::new();
    let key = KeyId::from("kg_live_hot00000");
    let buckets = roomy();
    // Each call moves time on, as real traffic would.
    let mut calls = 0;
    group.bench_function("admitted", |b| {
        b.iter(|| {
            calls += 1;
            let decision = limiter.try_acquire(black_box(&key), black_box(&buckets), tick(calls));
            assert!(decision.allowed);
            decision
        })
    });

    let full = [Bucket {
        service: None,
        limit: RateLimit::per_minute(100),
        account: None,
    }];
    let now = start();
    let key = KeyId::from("kg_live_full0000");
    for _ in 0..100 {
        limiter.try_acquire(&key, &full, now);
    }
    group.bench_function("refused", |b| {
        b.iter(|| {
            let decision = limiter.try_acquire(black_box(&key), black_box(&full), now);
            assert!(!decision.allowed);
            decision
        })
    });
    group.finish();
}

fn many_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("many_keys");
    group.throughput(Throughput::Elements(1));
    for count in [1_000_usize, 100_000] {
        let limiter = MemoryRateLimiter::new().max_keys(count as u64 * 2);
        let keys: Vec<KeyId> = (0..count)
            .map(|i| KeyId::new(format!("kg_live_{i:08x}")))
            .collect();
        let buckets = roomy();
        let now = start();
        for key in &keys {
            limiter.try_acquire(key, &buckets, now);
        }
        let mut next = 0;
        group.bench_with_input(BenchmarkId::new("admitted", count), &count, |b, _| {
            b.iter(|| {
                next = (next + 1) % keys.len();
                let decision = limiter.try_acquire(black_box(&keys[next]), black_box(&buckets), now);
                assert!(decision.allowed);
                decision
            })
        });
    }
    group.finish();
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended");
    group.throughput(Throughput::Elements(2));
    let limiter = MemoryRateLimiter::new();
    let key = KeyId::from("kg_live_hot00000");
    let buckets = roomy();
    let calls = AtomicU64::new(0);
    group.bench_function("2_threads", |b| {
        b.iter_custom(|iters| {
            let begin = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            let now = tick(calls.fetch_add(1, Ordering::Relaxed));
                            black_box(limiter.try_acquire(&key, &buckets, now));
                        }
                    });
                }
            });
            begin.elapsed()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = hot_key, many_keys, contended
}
criterion_main!(benches);
