//! Randomised checks of the bounds `MemoryRateLimiter` documents (GCRA): never more than
//! `limit × (1 + t / period)` admitted in any interval of length `t`, the long-run rate
//! is `limit / period`, and a refusal's `Retry-After` is honoured. Seeded, so a failure
//! reproduces; time is injected, so nothing sleeps.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keygate_core::rate::{Bucket, MemoryRateLimiter};
use keygate_core::{KeyId, RateLimit};

/// xorshift64*: small, deterministic, good enough to pick gaps between requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn start() -> DateTime<Utc> {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

/// Admitted request times (ns after `start`) for random traffic against one window.
fn admitted_times(seed: u64, limit: u32, period: Duration, requests: usize) -> Vec<i64> {
    let mut rng = Rng(seed);
    let limiter = MemoryRateLimiter::new();
    let key = KeyId::from("kg_live_property");
    let buckets = [Bucket {
        service: None,
        limit: RateLimit::new(limit, period),
    }];
    let period_ns = period.as_nanos() as u64;
    let mut t: i64 = 0;
    let mut admitted = Vec::new();
    for _ in 0..requests {
        // Mostly bursts (gaps far below the emission interval), sometimes long pauses.
        let gap = match rng.below(10) {
            0 => rng.below(period_ns * 2),
            1..=3 => rng.below(period_ns / u64::from(limit)),
            _ => rng.below(period_ns / u64::from(limit) / 8 + 1),
        };
        t += gap as i64;
        let now = start() + chrono::Duration::nanoseconds(t);
        if limiter.try_acquire(&key, &buckets, now).allowed {
            admitted.push(t);
        }
    }
    admitted
}

#[test]
fn no_interval_admits_more_than_the_documented_bound() {
    for seed in 1..=40u64 {
        let limit = 1 + (seed % 7) as u32 * 3;
        let period = Duration::from_secs(1 + seed % 5);
        let times = admitted_times(seed, limit, period, 3000);
        assert!(!times.is_empty());
        let period_ns = period.as_nanos() as f64;
        // Every interval [times[i], times[j]] holds j - i + 1 admissions.
        for i in 0..times.len() {
            for j in i..times.len().min(i + 4 * limit as usize) {
                let t = (times[j] - times[i]) as f64;
                let bound = f64::from(limit) * (1.0 + t / period_ns);
                let count = (j - i + 1) as f64;
                assert!(
                    count <= bound + 1e-9,
                    "seed {seed}: {count} admitted within {t} ns, bound {bound} (limit {limit}/{period:?})"
                );
            }
        }
    }
}

#[test]
fn under_constant_overload_the_long_run_rate_is_the_limit() {
    let limiter = MemoryRateLimiter::new();
    let key = KeyId::from("kg_live_longrun");
    let (limit, period) = (50u32, Duration::from_secs(60));
    let buckets = [Bucket {
        service: None,
        limit: RateLimit::new(limit, period),
    }];
    // Ten requests a second for an hour: far above 50 a minute.
    let mut admitted = 0u64;
    for tenth in 0..36_000i64 {
        let now = start() + chrono::Duration::milliseconds(tenth * 100);
        admitted += u64::from(limiter.try_acquire(&key, &buckets, now).allowed);
    }
    // One burst of `limit`, then exactly `limit` per period for the other 59 minutes.
    let expected = u64::from(limit) * 60;
    assert!(
        admitted >= expected && admitted <= expected + u64::from(limit),
        "admitted {admitted}, expected {expected}..={}",
        expected + u64::from(limit)
    );
}

#[test]
fn waiting_the_retry_after_is_enough_and_never_much_too_long() {
    let mut rng = Rng(7);
    for round in 0..200 {
        let limiter = MemoryRateLimiter::new();
        let key = KeyId::from("kg_live_retry");
        let limit = 1 + rng.below(20) as u32;
        let period = Duration::from_secs(1 + rng.below(120));
        let buckets = [Bucket {
            service: None,
            limit: RateLimit::new(limit, period),
        }];
        let mut now = start() + chrono::Duration::milliseconds(rng.below(1000) as i64);
        // Exhaust the window, then read the refusal.
        let refusal = loop {
            let decision = limiter.try_acquire(&key, &buckets, now);
            if !decision.allowed {
                break decision;
            }
            now += chrono::Duration::milliseconds(rng.below(50) as i64);
        };
        assert!(
            refusal.retry_after >= 1,
            "round {round}: Retry-After is at least 1"
        );
        assert_eq!(refusal.tightest.remaining, 0, "round {round}");
        let after = now + chrono::Duration::seconds(refusal.retry_after as i64);
        assert!(
            limiter.try_acquire(&key, &buckets, after).allowed,
            "round {round}: refused again after waiting Retry-After ({}s)",
            refusal.retry_after
        );
        // Rounded up to whole seconds, never more than one second past the emission
        // interval (period / limit).
        let interval = period.as_secs_f64() / f64::from(limit);
        assert!(
            (refusal.retry_after as f64) <= interval.ceil() + 1.0,
            "round {round}: Retry-After {}s for an interval of {interval}s",
            refusal.retry_after
        );
    }
}
