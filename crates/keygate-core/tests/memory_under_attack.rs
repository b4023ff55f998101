//! Memory under attack: distinct well-formed keys that no store holds and distinct
//! garbage credentials, as many of each, through one gate; the process's memory stays
//! bounded by the gate's configured capacities, not by the number of requests.
//!
//! What attacker-chosen credentials can make the gate remember, and what bounds it:
//!
//! - the negative cache (one entry per failed digest): `negative_capacity`;
//! - the failure counters per key id (`verify/lockout.rs`): `negative_capacity`, at
//!   least 10 000;
//! - the in-flight map: one entry per cold verification under way, at most the hash
//!   pool's queue (`hash_queue`);
//! - the limiter: only admitted keys reach it (`max_keys`);
//! - the stale marks and the proofs: only revocations and proven secrets add to them,
//!   never a failure.
//!
//! The TTLs are set to an hour so that only the capacities bound the maps during the
//! run (with short TTLs, time would bound them too, and hide a missing capacity).
//! Memory is read from `/proc/self/status` (Linux): `VmRSS` once the maps are full,
//! after the first tenth of the requests (at least 50 000 of each kind, five times the
//! capacities), then `VmHWM` (the peak) at the end. The rest may add no more than the
//! memory of the full maps again, at a generous 1 KiB an entry: several times less
//! than any map that grew per request would take.
//!
//! 1,000,000 of each kind by default: 44 s unoptimised on the shared two-core machine
//! (7 s in release mode). `KEYGATE_ATTACK_REQUESTS` sets another count (at least
//! 100 000), for a quicker run or a longer one.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use keygate_core::gate::Decision;
use keygate_core::hash::Argon2Hasher;
use keygate_core::key::KeyFormat;
use keygate_core::rate::MemoryRateLimiter;
use keygate_core::verify::VerifierConfig;
use keygate_core::{Gate, MemoryStore, NewKey, RateLimit, Rejection, RoutePolicy};
use tokio::task::JoinSet;

/// Requests of each kind by default.
const REQUESTS: u64 = 1_000_000;
/// The fewest requests of each kind sent before the first measurement: five times the
/// capacities, so that every map is full.
const MIN_WARM_UP: u64 = 50_000;
const NEGATIVE_CAPACITY: u64 = 1_000;
/// The failure counters' capacity: `negative_capacity`, at least 10 000 (`verify/lockout.rs`).
const COUNTER_CAPACITY: u64 = if NEGATIVE_CAPACITY > 10_000 {
    NEGATIVE_CAPACITY
} else {
    10_000
};
const LIMITER_KEYS: u64 = 1_000;
const HASH_QUEUE: usize = 64;
/// Cold verifications awaited at once: enough to fill the in-flight map to the queue.
const CONCURRENT: usize = 2 * HASH_QUEUE;
/// A generous bound on what one entry of any of those maps costs, bookkeeping included
/// (a moka entry for a 32-byte digest or a short key id is a few hundred bytes).
const BYTES_PER_ENTRY: u64 = 1024;

/// Kilobytes of `field` (`VmRSS`, `VmHWM`) in `/proc/self/status`.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// `n` in base 36, `len` digits: an id the key format accepts.
fn base36(mut n: u64, len: usize) -> String {
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap()
}

/// A secret of 32 base62 characters derived from `n` (xorshift): distinct per `n`.
fn secret(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..32)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[(x % 62) as usize] as char
        })
        .collect()
}

/// The `n`th well-formed key that no store holds: its own id, its own secret, a valid
/// checksum.
fn unknown(format: &KeyFormat, n: u64) -> HeaderMap {
    let key = format
        .compose(&format!("kg_live_{}", base36(n, 8)), &secret(n))
        .unwrap();
    headers(
        "authorization",
        format!("Bearer {}", key.expose_secret()).as_bytes(),
    )
}

/// The `n`th garbage credential, of five kinds in turn, each distinct.
fn garbage(n: u64) -> HeaderMap {
    let id = base36(n, 8);
    match n % 5 {
        // Branded, with a secret too short.
        0 => headers("x-api-key", format!("kg_live_{id}_short{n}").as_bytes()),
        // The right shape and length, and a wrong checksum.
        1 => headers(
            "x-api-key",
            format!("kg_test_{id}_{}zzzzzz", secret(n)).as_bytes(),
        ),
        // Longer than any key.
        2 => headers(
            "authorization",
            format!("Bearer {n}{}", "x".repeat(300)).as_bytes(),
        ),
        // Not UTF-8.
        3 => {
            let mut value = b"kg_live_\xff\xfe".to_vec();
            value.extend_from_slice(id.as_bytes());
            headers("x-api-key", &value)
        }
        // Two different credentials in one request.
        _ => {
            let mut map = headers("x-api-key", format!("kg_live_{id}").as_bytes());
            map.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {n}")).unwrap(),
            );
            map
        }
    }
}

fn headers(name: &'static str, value: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(name, HeaderValue::from_bytes(value).unwrap());
    map
}

#[derive(Default, Debug)]
struct Counts {
    unauthorized: u64,
    unavailable: u64,
}

impl Counts {
    fn count(&mut self, refused: Rejection) {
        match refused.status() {
            StatusCode::UNAUTHORIZED => self.unauthorized += 1,
            StatusCode::SERVICE_UNAVAILABLE => self.unavailable += 1,
            other => panic!("an attack request answered {other}"),
        }
    }
}

struct Attack {
    gate: Gate,
    policy: RoutePolicy,
    format: KeyFormat,
    cold: JoinSet<Result<(), Rejection>>,
    counts: Counts,
}

impl Attack {
    fn send(&mut self, headers: &HeaderMap) {
        match self.gate.decide(headers, &self.policy) {
            Decision::Now(Ok(_)) => panic!("an attack request was admitted"),
            Decision::Now(Err(refused)) => self.counts.count(refused),
            Decision::Later(cold) => {
                self.cold
                    .spawn(async move { cold.await.map(|_| panic!("an unknown key was admitted")) });
            }
        }
    }

    async fn settle(&mut self, below: usize) {
        while self.cold.len() > below {
            match self.cold.join_next().await {
                Some(Ok(Err(refused))) => self.counts.count(refused),
                Some(Ok(Ok(()))) => unreachable!(),
                Some(Err(panicked)) => std::panic::resume_unwind(panicked.into_panic()),
                None => break,
            }
        }
    }

    /// Requests `from..to` of each kind, interleaved.
    async fn run(&mut self, from: u64, to: u64) {
        for n in from..to {
            let unknown = unknown(&self.format, n);
            self.send(&unknown);
            self.send(&garbage(n));
            self.settle(CONCURRENT).await;
        }
        self.settle(0).await;
    }
}

#[test]
fn a_flood_of_unknown_keys_and_garbage_leaves_memory_bounded_by_the_capacities() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hour = Duration::from_secs(3600);
        let limiter = MemoryRateLimiter::new().max_keys(LIMITER_KEYS);
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .verifier(VerifierConfig {
                negative_capacity: NEGATIVE_CAPACITY,
                negative_ttl: hour,
                failure_window: hour,
                // The valid key must still be cached at the end, however long a loaded
                // machine takes over the flood (a debug run took 317 s once: past the
                // default 300 s, and the test failed on the clock, not on memory).
                cache_ttl: hour,
                hash_queue: HASH_QUEUE,
                ..VerifierConfig::default()
            })
            .rate_limiter(limiter.clone(), [RateLimit::per_minute(1_000_000)])
            .build();
        let valid = gate.keys().create(NewKey::new("acct_1", "valid")).await.unwrap();
        let valid = headers(
            "authorization",
            format!("Bearer {}", valid.key.expose_secret()).as_bytes(),
        );
        let policy = RoutePolicy::new();
        assert!(gate.admit(&valid, &policy).await.is_ok());
        let mut attack = Attack {
            format: KeyFormat::default(),
            gate: gate.clone(),
            policy: policy.clone(),
            cold: JoinSet::new(),
            counts: Counts::default(),
        };

        let requests = std::env::var("KEYGATE_ATTACK_REQUESTS")
            .map(|n| n.parse().expect("KEYGATE_ATTACK_REQUESTS is a number"))
            .unwrap_or(REQUESTS);
        let warm_up = (requests / 10).max(MIN_WARM_UP);
        assert!(requests >= 2 * warm_up, "at least {} requests", 2 * warm_up);
        let started = Instant::now();
        let empty_kib = status_kib("VmRSS");
        attack.run(0, warm_up).await;
        let full_kib = status_kib("VmRSS");
        let mut sent = warm_up;
        while sent < requests {
            let next = (sent + 50_000).min(requests);
            attack.run(sent, next).await;
            sent = next;
            // The key in use is still admitted, from the cache, under the flood.
            assert!(
                matches!(gate.decide(&valid, &policy), Decision::Now(Ok(_))),
                "the valid key after {sent} of each kind"
            );
            println!("VmRSS after {sent} of each: {} KiB", status_kib("VmRSS"));
        }
        let end_kib = status_kib("VmRSS");
        let peak_kib = status_kib("VmHWM");

        let entries = NEGATIVE_CAPACITY + COUNTER_CAPACITY + LIMITER_KEYS + CONCURRENT as u64;
        let allowed_kib = entries * BYTES_PER_ENTRY / 1024;
        let grown_kib = peak_kib.saturating_sub(full_kib);
        println!(
            "{requests} unknown keys and {requests} garbage credentials in {:.1?}: {:?}",
            started.elapsed(),
            attack.counts
        );
        println!(
            "VmRSS before: {empty_kib} KiB; after {warm_up} of each: {full_kib} KiB; at the end: \
             {end_kib} KiB; peak (VmHWM): {peak_kib} KiB; growth over the last {} of each: \
             {grown_kib} KiB (allowed: {allowed_kib} KiB for {entries} entries)",
            requests - warm_up
        );
        assert_eq!(
            attack.counts.unauthorized + attack.counts.unavailable,
            2 * requests,
            "every request refused"
        );
        assert!(
            limiter.key_count() <= 1,
            "only the valid key reaches the limiter: {}",
            limiter.key_count()
        );
        assert!(
            grown_kib < allowed_kib,
            "memory grew by {grown_kib} KiB over {} requests of each kind, more than the \
             {allowed_kib} KiB that the capacities allow",
            requests - warm_up
        );
        assert!(gate.admit(&valid, &policy).await.is_ok());
    });
}
