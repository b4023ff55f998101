//! [`Lockout`]: failed attempts counted per key id, and the keys proven lately, which the
//! count never locks out.
//!
//! - Every failed cold attempt counts against its key id: a wrong secret, and an id the
//!   store does not hold (so that guesses get the same answers whether the id exists or
//!   not). Past `failure_limit` within `failure_window` (the gate's time, from the first
//!   failure), further cold attempts on the id are refused without hashing: 503 with
//!   `Retry-After`, the rest of the window. Not 401: clients read that as "revoked".
//! - A presented key whose secret was proven within `proven_ttl` (24 h) is spared: its
//!   digest (the SHA-256 of the whole key, never the plaintext) is kept with a
//!   fingerprint (half its SHA-256) of the stored hash it was proven against. While the stored
//!   hash is unchanged, such a key is admitted on a store read, without argon2, however
//!   many guesses its id draws, after its cache entry expires too. Only the secret's
//!   holder can add to this set.
//! - Memory stays bounded under attacker-chosen ids: the counters are a bounded cache
//!   (`negative_capacity`, at least 10 000) that lives for the window; the proofs, a
//!   bounded map of `cache_capacity` entries that only proven keys enter.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::cache::{digest, Digest, HotCache};
use super::VerifierConfig;
use crate::hash::SecretHash;
use crate::key::KeyId;

const NANOS_PER_SEC: i64 = 1_000_000_000;

pub(crate) struct Lockout {
    /// Key id -> failed attempts in its current window.
    attempts: Cache<KeyId, Arc<Attempts>>,
    limit: u32,
    /// `failure_window` in nanoseconds.
    window: i64,
    /// Digest of a presented key -> fingerprint of the stored hash it was proven against.
    proofs: HotCache<Fingerprint>,
}

/// The first half of the SHA-256 of a stored hash (its PHC string): enough to tell that
/// the stored hash changed, in half the memory.
type Fingerprint = [u8; 16];

struct Attempts {
    failures: AtomicU32,
    /// When the window began, in nanoseconds since the epoch (gate time).
    since: AtomicI64,
}

impl Lockout {
    pub(crate) fn new(config: &VerifierConfig) -> Self {
        Self {
            attempts: Cache::builder()
                .max_capacity(config.negative_capacity.max(10_000))
                // Only a bound on memory: the window itself is kept in the gate's time.
                .time_to_live(config.failure_window.max(Duration::from_secs(1)))
                .build(),
            limit: config.failure_limit.max(1),
            window: nanos(config.failure_window).max(1),
            proofs: HotCache::new(config.cache_capacity, config.proven_ttl),
        }
    }

    /// Whether the window that began at `since` is over at `now` (or the clock went back
    /// past its start, which would otherwise make it last as long).
    fn over(&self, since: i64, now: i64) -> bool {
        now < since || now - since >= self.window
    }

    /// Whole seconds until cold attempts on `key_id` are heard again, when they are
    /// refused at `now`.
    pub(crate) fn throttled(&self, key_id: &str, now: i64) -> Option<u64> {
        let attempts = self.attempts.get(key_id)?;
        let since = attempts.since.load(Ordering::Acquire);
        if attempts.failures.load(Ordering::Acquire) < self.limit || self.over(since, now) {
            return None;
        }
        let left = since.saturating_add(self.window).saturating_sub(now);
        let secs = left.div_euclid(NANOS_PER_SEC) + i64::from(left.rem_euclid(NANOS_PER_SEC) > 0);
        Some(u64::try_from(secs).unwrap_or(1).max(1))
    }

    /// [`throttled`](Self::throttled), unless the key presented (`digest`) was proven
    /// lately: the answer to give at once, before any store read.
    pub(crate) fn refuses(&self, digest: &Digest, key_id: &str, now: i64) -> Option<u64> {
        let retry_after = self.throttled(key_id, now)?;
        let proven = self.proofs.get_with(digest, now, |_| Some(())).is_some();
        (!proven).then_some(retry_after)
    }

    /// Counts a failed attempt on `key_id` at `now`; `true` for the one that reaches the
    /// limit.
    pub(crate) fn failed(&self, key_id: &KeyId, now: i64) -> bool {
        let attempts = self.attempts.get_with(key_id.clone(), || {
            Arc::new(Attempts {
                failures: AtomicU32::new(0),
                since: AtomicI64::new(now),
            })
        });
        let since = attempts.since.load(Ordering::Acquire);
        // A new window; of two failures that both see the old one over, one restarts it.
        if self.over(since, now)
            && attempts
                .since
                .compare_exchange(since, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            attempts.failures.store(0, Ordering::Release);
        }
        attempts.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1) == self.limit
    }

    /// Whether `digest` was proven at most `proven_ttl` before `now` against `stored`.
    pub(crate) fn proven(&self, digest: &Digest, stored: &SecretHash, now: i64) -> bool {
        self.proofs
            .get(digest, now)
            .is_some_and(|fingerprint| fingerprint == self::fingerprint(stored))
    }

    /// Records that `digest` was proven at `now` against `stored`.
    pub(crate) fn prove(&self, digest: Digest, stored: &SecretHash, now: i64) {
        self.proofs.insert(digest, fingerprint(stored), now);
    }
}

fn fingerprint(stored: &SecretHash) -> Fingerprint {
    let full = digest(stored.as_str().as_bytes());
    let mut half = [0u8; 16];
    half.copy_from_slice(&full[..16]);
    half
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = NANOS_PER_SEC;

    fn lockout(limit: u32, capacity: u64) -> Lockout {
        Lockout::new(&VerifierConfig {
            failure_limit: limit,
            failure_window: Duration::from_secs(60),
            negative_capacity: capacity,
            cache_capacity: capacity,
            ..VerifierConfig::default()
        })
    }

    #[test]
    fn failures_past_the_limit_throttle_an_id_for_the_rest_of_its_window() {
        let lockout = lockout(3, 100);
        let id = KeyId::new("kg_live_a1b2c3d4");
        assert!(!lockout.failed(&id, 100 * SEC));
        assert!(!lockout.failed(&id, 101 * SEC));
        assert_eq!(lockout.throttled(id.as_str(), 101 * SEC), None);
        assert!(lockout.failed(&id, 102 * SEC), "the third reaches the limit");
        assert_eq!(lockout.throttled(id.as_str(), 102 * SEC), Some(58));
        assert_eq!(lockout.throttled(id.as_str(), 159 * SEC + 1), Some(1));
        assert_eq!(
            lockout.throttled(id.as_str(), 160 * SEC),
            None,
            "the window is over"
        );
        assert!(!lockout.failed(&id, 160 * SEC), "a new window");
        assert_eq!(lockout.throttled("kg_live_other000", 102 * SEC), None);
    }

    #[test]
    fn a_proof_spares_its_key_while_the_stored_hash_is_unchanged_and_for_a_day() {
        let lockout = lockout(1, 100);
        let id = KeyId::new("kg_live_a1b2c3d4");
        let (key, guess) = (digest(b"the key"), digest(b"a guess"));
        let stored = SecretHash::new("$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA");
        lockout.prove(key, &stored, 0);
        lockout.failed(&id, SEC);
        assert_eq!(lockout.refuses(&guess, id.as_str(), SEC), Some(60));
        assert_eq!(lockout.refuses(&key, id.as_str(), SEC), None, "proven: spared");
        assert!(lockout.proven(&key, &stored, SEC));
        assert!(!lockout.proven(&key, &SecretHash::new("$argon2id$other"), SEC));
        assert!(!lockout.proven(&guess, &stored, SEC));
        assert!(!lockout.proven(&key, &stored, 24 * 3600 * SEC), "a day later");
    }

    #[test]
    fn attacker_chosen_ids_keep_the_counters_bounded() {
        let lockout = lockout(20, 1_000);
        for n in 0..50_000 {
            lockout.failed(&KeyId::new(format!("kg_live_{n:08}")), SEC);
        }
        lockout.attempts.run_pending_tasks();
        // The floor of the counters' capacity is 10 000.
        assert!(
            lockout.attempts.entry_count() <= 10_000,
            "{}",
            lockout.attempts.entry_count()
        );
        assert_eq!(lockout.proofs.len(), 0, "failures prove nothing");
    }
}
