//! [`VerifierConfig`]: the cache, hash pool, lockout and store settings of the verifier.

use std::time::Duration;

/// Settings of the verifier.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// How long a verified key stays cached: the bound on how long another instance
    /// may honour a key revoked elsewhere, when no feed reaches it. Counted on the
    /// gate's clock (a [`ManualClock`](crate::clock::ManualClock) moves it too); a clock
    /// stepped back ends an entry rather than lengthening it.
    pub cache_ttl: Duration,
    /// Most keys cached.
    pub cache_capacity: u64,
    /// How long a failed key is remembered.
    pub negative_ttl: Duration,
    /// Most failed keys remembered.
    pub negative_capacity: u64,
    /// argon2 calls running at once (the blocking pool's width), for verification and
    /// key creation together.
    pub hash_workers: usize,
    /// Cold verifications allowed to wait for a worker; past it they are shed.
    pub hash_queue: usize,
    /// Key creations and rotations holding or waiting for a worker at once (1 to
    /// `hash_workers`): half the cores by default, so that a burst of creations leaves
    /// workers to cold verifications.
    pub create_workers: usize,
    /// Creations allowed to wait for their turn; past it a creation fails at once with
    /// [`ManageError::Busy`](crate::manage::ManageError::Busy) (503 in self-service).
    pub create_queue: usize,
    /// Failed attempts (wrong secrets, unknown ids) tolerated per key id within
    /// `failure_window` before further cold attempts on that id are refused without
    /// hashing (503 with `Retry-After`).
    pub failure_limit: u32,
    /// The window of `failure_limit`, counted from the first failure on the gate's clock.
    pub failure_window: Duration,
    /// How long a key whose secret was proven is spared by `failure_limit`, and re-read
    /// from the store without argon2 once its cache entry has expired (while the stored
    /// hash is unchanged). At most `cache_capacity` proofs are kept.
    pub proven_ttl: Duration,
    /// How long a cold verification waits for each store read (the key's record, its
    /// owner's limits) before it answers 503 with `Retry-After`; a few timeouts or
    /// failures in a row open a circuit breaker, and until a probe finds the store back
    /// (at most one a second) cold keys get their 503 at once, without a store call.
    /// Cached keys never wait on the store. [`DEFAULT_TIMEOUT`](crate::backend::DEFAULT_TIMEOUT)
    /// (50 ms) by default: raise it for a store whose round trip is longer.
    pub store_timeout: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            cache_ttl: Duration::from_secs(300),
            cache_capacity: 100_000,
            negative_ttl: Duration::from_secs(10),
            negative_capacity: 10_000,
            hash_workers: cores,
            hash_queue: cores * 16,
            create_workers: (cores / 2).max(1),
            create_queue: cores * 16,
            failure_limit: 20,
            failure_window: Duration::from_secs(60),
            proven_ttl: Duration::from_secs(24 * 3600),
            store_timeout: crate::backend::DEFAULT_TIMEOUT,
        }
    }
}
