//! The verifier: steps 3 and 4 of the pipeline (cache, store lookup, argon2).
//!
//! - A hit costs a SHA-256 of the key and a map lookup in the hot cache (`verify/cache.rs`), a sharded map
//!   that allocates nothing and takes the request's time from the caller.
//! - Misses are coalesced: the first request for a key spawns one task that does the
//!   store lookup and the argon2 verify; every request for the same key waits on that
//!   task. Because the work is a task of its own, a waiter that goes away (a client
//!   disconnecting) neither stalls nor fails the others, and the work is not repeated.
//! - argon2 runs on the gate's bounded pool (`verify/pool.rs`), shared with key creation:
//!   a semaphore sized to the cores, and budgets past which new cold keys are shed (503)
//!   at once, while cached keys never touch the pool.
//! - Failures go to a small negative cache with a short TTL.
//! - Failed attempts are counted per key id (`verify/lockout.rs`): past `failure_limit`
//!   in `failure_window`, further cold attempts on that id are refused without hashing,
//!   503 with `Retry-After`, so a flood of guesses against known ids costs a store lookup
//!   at most, not an argon2 verify. A key proven within the last 24 hours is spared, and
//!   a key in the cache is not affected.
//! - Invalidation (revocation, rotation, the revocation feed) bumps an epoch and marks
//!   the key id stale; a cached entry loaded before the mark is re-read from the store
//!   on its next hit. The check costs one atomic load per hit. A verification in flight
//!   across an invalidation of its key answers none of its requests: each verifies again,
//!   on a fresh read of the record.
//! - Warnings a flood could repeat per request (shed, throttled, store down) are logged
//!   at most once a second, with the count of those held back (`verify/quiet.rs`).
//!
//! # What an answer reveals about a key id
//!
//! The bytes never tell an unknown id from a known one: a revoked key, an unknown id
//! and a wrong secret all answer the same 401, and past the failure limit, guesses at an
//! unknown id get the same 503 as guesses at a known one (the two are counted alike).
//! The time does: an unknown id is answered after one store lookup, a known one after
//! the lookup and an argon2 verify (tens of milliseconds with the default parameters),
//! so a client that times its requests can tell whether an id exists. That is all it
//! learns: not the owner, the scopes, nor whether the key is revoked or expired (those
//! are checked after the secret, whose verify costs the same either way). Key ids are
//! public (they are in every key, every 401 body and the logs), and the secret behind one
//! has 128 bits or more, so knowing that an id exists does not help to forge its key.
//! Making the two alike in time would cost an argon2 verify per unknown id: the
//! cheapest flood there is (fresh random ids) would become the most expensive one, on
//! the same cores that serve valid keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::sync::Cache;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::Instrument;

use crate::account::{spend_subject, OwnerLimits};
use crate::background::UsageCell;
use crate::rate::Bucket;
mod cache;
mod config;
mod lockout;
mod pool;
mod quiet;
mod suspects;

use crate::backend::Budget;
use crate::clock::{Clock, Timestamp};
use crate::hash::{HashError, KeyHasher, SecretHash};
use crate::key::KeyId;
use crate::observe::{cold_verification, Counters};
use crate::principal::Principal;
use crate::store::{detached, DynKeyStore, StoreError};
use cache::HotCache;
#[cfg(test)]
pub(crate) use cache::HASHED;
pub(crate) use cache::{digest, Digest};
pub use config::VerifierConfig;
use lockout::Lockout;
pub(crate) use pool::{HashPool, PoolError};
use quiet::Hushed;
use suspects::Suspects;
pub use suspects::WrongSecrets;

/// A key whose secret has been proven, with the state needed on every request.
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    /// The owner's account-wide limits, when it has any, read with the key.
    pub(crate) account: Option<Account>,
    pub(crate) revoked: bool,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// `expires_at` as the request path compares it.
    pub(crate) expiry: Option<Timestamp>,
    secret_hash: SecretHash,
    /// The epoch when the store read behind this entry began.
    loaded_epoch: u64,
    /// The latest epoch at which this entry was found not stale.
    checked_epoch: AtomicU64,
    /// Requests counted for this key since the last usage flush.
    pub(crate) usage: Arc<UsageCell>,
}

/// An owner's limits as the request path uses them: the limits, the account buckets
/// made once, and the id its spend is metered under.
pub(crate) struct Account {
    pub(crate) spend_cap: Option<u64>,
    pub(crate) buckets: Box<[Bucket]>,
    pub(crate) subject: KeyId,
}

impl Account {
    fn new(limits: OwnerLimits) -> Self {
        Self {
            spend_cap: limits.spend_cap,
            buckets: limits
                .rate_limits
                .iter()
                .map(|limit| Bucket::account(limits.owner.clone(), *limit))
                .collect(),
            subject: spend_subject(&limits.owner),
        }
    }
}

/// Why verification failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Unknown id, wrong secret, or a corrupt stored hash.
    Invalid,
    /// Shed, or the store is down: retry later. Never cached.
    Unavailable,
    /// Too many failed attempts on this key id lately, and this key was not proven
    /// lately: refused without hashing, and not cached, so the right secret works again
    /// once the window has passed.
    Throttled {
        /// Whole seconds until the window is over, at least 1.
        retry_after: u64,
    },
}

type Outcome = Result<Arc<Verified>, Failure>;

/// A waiting request's view of one cold verification.
type Flight = watch::Receiver<Option<Outcome>>;

pub(crate) struct Verifier {
    store: Arc<dyn DynKeyStore>,
    hasher: Arc<dyn KeyHasher>,
    /// The gate's clock: cache entries live in its time.
    clock: Arc<dyn Clock>,
    cache: HotCache<Arc<Verified>>,
    negative: Cache<Digest, ()>,
    inflight: Mutex<HashMap<Digest, Flight>>,
    /// Key id -> the epoch at which it was invalidated.
    stale: Cache<KeyId, u64>,
    /// Failed attempts per key id, and the keys proven lately.
    lockout: Lockout,
    epoch: AtomicU64,
    /// The epoch of the last [`invalidate_all`](Self::invalidate_all): entries loaded
    /// before it are stale.
    cleared: AtomicU64,
    /// Where argon2 runs; shared with the gate's key manager.
    pool: Arc<HashPool>,
    shed_log: Hushed,
    throttle_log: Hushed,
    store_log: Hushed,
    /// Each store read of a cold verification, within its timeout and behind a breaker.
    store_budget: Budget,
    /// The gate's counters (`observe.rs`), here where most of them are counted.
    pub(crate) counters: Counters,
    /// Ids that received wrong secrets lately (`verify/suspects.rs`).
    suspects: Suspects,
}

impl Verifier {
    pub(crate) fn new(
        store: Arc<dyn DynKeyStore>,
        hasher: Arc<dyn KeyHasher>,
        clock: Arc<dyn Clock>,
        pool: Arc<HashPool>,
        config: &VerifierConfig,
    ) -> Self {
        Self {
            store,
            hasher,
            clock,
            cache: HotCache::new(config.cache_capacity, config.cache_ttl),
            negative: Cache::builder()
                .max_capacity(config.negative_capacity)
                .time_to_live(config.negative_ttl)
                .build(),
            inflight: Mutex::new(HashMap::new()),
            // Marks must outlive every entry they could apply to, and none may be dropped
            // for room: a bounded cache refuses new entries once full, which lost the
            // revocation of a key after a mass revocation. They are bounded by time
            // instead: as many as keys are revoked or rotated within a cache lifetime.
            stale: Cache::builder()
                .time_to_live(config.cache_ttl + Duration::from_secs(60))
                .build(),
            lockout: Lockout::new(config),
            epoch: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            pool,
            shed_log: Hushed::new(),
            throttle_log: Hushed::new(),
            store_log: Hushed::new(),
            store_budget: Budget::new(config.store_timeout),
            counters: Counters::default(),
            suspects: Suspects::new(),
        }
    }

    /// Forgets what the cache knows of `key_id`: the next request with it re-reads
    /// the store.
    pub(crate) fn invalidate(&self, key_id: &KeyId) {
        // The mark goes in before the epoch moves: a hit that reads the new epoch then
        // finds the mark. The other order let a hit between the two record itself as
        // checked at the new epoch without the mark, and trust the entry from then on.
        // The mark is above every entry loaded so far, so it condemns each of them.
        let mark = self.epoch.load(Ordering::Acquire) + 1;
        self.stale.insert(key_id.clone(), mark);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets every cached key (after a lost revocation feed, for example).
    pub(crate) fn invalidate_all(&self) {
        // As `invalidate`, for every key at once: entries loaded before this point are
        // condemned on their next hit, including one that a verification under way
        // inserts after the clear below.
        let mark = self.epoch.load(Ordering::Acquire) + 1;
        self.cleared.fetch_max(mark, Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.clear();
        self.negative.invalidate_all();
    }

    /// Entries held by the positive cache (approximate; for tests and metrics).
    pub(crate) fn cached_len(&self) -> u64 {
        self.cache.len() as u64
    }

    fn fresh_hit(&self, digest: &Digest, now: i64) -> Option<Arc<Verified>> {
        self.cache.get(digest, now).filter(|hit| self.fresh(hit))
    }

    /// Whether a cached entry still stands: no invalidation since it was last checked,
    /// or none that concerns its key.
    fn fresh(&self, hit: &Verified) -> bool {
        let epoch = self.epoch.load(Ordering::Acquire);
        if hit.checked_epoch.load(Ordering::Acquire) >= epoch {
            return true;
        }
        if self.cleared.load(Ordering::Acquire) > hit.loaded_epoch {
            return false;
        }
        match self.stale.get(hit.principal.key_id()) {
            Some(marked) if marked > hit.loaded_epoch => false,
            _ => {
                hit.checked_epoch.fetch_max(epoch, Ordering::AcqRel);
                true
            }
        }
    }

    /// `f` of the fresh cached entry for `digest` at `now` (the request's time), read
    /// in place under the cache's read lock; `None` when there is none. `f` must not
    /// use this verifier.
    pub(crate) fn with_fresh<R>(
        &self,
        digest: &Digest,
        now: Timestamp,
        f: impl FnOnce(&Verified) -> R,
    ) -> Option<R> {
        self.cache
            .get_with(digest, now.unix_nanos(), |hit| self.fresh(hit).then(|| f(hit)))
    }

    /// The failure to answer at once for a key that is not cached: its id is throttled,
    /// the key was not proven lately and no verification of this very key is under way
    /// (one that is would be joined, as before the throttle); or it failed lately (the
    /// negative cache).
    /// Wrong secrets this verifier saw lately for `key_id`, if any.
    pub(crate) fn wrong_secrets(&self, key_id: &KeyId) -> Option<WrongSecrets> {
        self.suspects.of(key_id)
    }

    pub(crate) fn refused_at_once(&self, digest: &Digest, key_id: &str, now: Timestamp) -> Option<Failure> {
        if let Some(retry_after) = self.lockout.refuses(digest, key_id, now.unix_nanos()) {
            self.suspects.guessed_again(key_id, now.unix_nanos());
            let in_flight = self
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(digest);
            if !in_flight {
                return Some(Failure::Throttled { retry_after });
            }
        }
        self.negative.contains_key(digest).then_some(Failure::Invalid)
    }

    /// Verifies `key` (already parsed and well-formed) whose id is `key_id`.
    pub(crate) async fn verify(
        self: &Arc<Self>,
        digest: Digest,
        key_id: &str,
        secret: &str,
        now: Timestamp,
    ) -> Outcome {
        // A verification joined (or started) before an invalidation of its key may have
        // read the record before the change: its answer is stale, and admits no one.
        // Verify again, on a fresh read (the secret is not hashed again: its proof
        // stands). Bounded, for a key invalidated again and again meanwhile.
        let mut now = now;
        for _ in 0..3 {
            let verified = self.verify_once(digest, key_id, secret, now).await?;
            if self.fresh(&verified) {
                return Ok(verified);
            }
            tracing::debug!("verification overtaken by an invalidation; verifying again");
            // The stale entry was cached after the request's time: read it at ours.
            now = self.clock.timestamp();
        }
        Err(Failure::Unavailable)
    }

    async fn verify_once(
        self: &Arc<Self>,
        digest: Digest,
        key_id: &str,
        secret: &str,
        now: Timestamp,
    ) -> Outcome {
        if let Some(hit) = self.fresh_hit(&digest, now.unix_nanos()) {
            return Ok(hit);
        }
        if self.negative.contains_key(&digest) {
            return Err(Failure::Invalid);
        }
        let mut flight = match self.join_or_start(digest, key_id, secret, now.unix_nanos()) {
            Ok(flight) => flight,
            Err(failure) => return Err(failure),
        };
        let outcome = match flight.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Err(Failure::Unavailable)),
            // The task ended without an answer (it panicked): answer 503, not a hang.
            Err(_) => Err(Failure::Unavailable),
        };
        outcome
    }

    fn join_or_start(
        self: &Arc<Self>,
        digest: Digest,
        key_id: &str,
        secret: &str,
        now: i64,
    ) -> Result<Flight, Failure> {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = inflight.get(&digest) {
            return Ok(flight.clone());
        }
        // The task inserts into the caches before it leaves `inflight`, so a second
        // look under the lock cannot miss a verification that just finished.
        let previous = self.cache.get(&digest, now);
        if let Some(hit) = previous
            .as_ref()
            .filter(|_| self.fresh_hit(&digest, now).is_some())
        {
            return Ok(watch::channel(Some(Ok(hit.clone()))).1);
        }
        if self.negative.contains_key(&digest) {
            return Err(Failure::Invalid);
        }
        // A throttled id is refused before any work: no task, no store read. Unless this
        // key was proven: lately, or it has a (stale) cache entry.
        if previous.is_none() {
            if let Some(retry_after) = self.lockout.refuses(&digest, key_id, now) {
                return Err(Failure::Throttled { retry_after });
            }
        }
        let Some(permit) = self.pool.admit_verification() else {
            Counters::bump(&self.counters.shed);
            if let Some(suppressed) = self.shed_log.admit(now) {
                tracing::warn!(
                    key_id,
                    suppressed,
                    "cold verification shed: the hash pool is saturated"
                );
            }
            return Err(Failure::Unavailable);
        };
        let (tx, rx) = watch::channel(None);
        inflight.insert(digest, rx.clone());
        drop(inflight);

        let this = Arc::clone(self);
        let ours = rx.clone();
        let key_id = KeyId::from(key_id);
        let secret = SecretString::from(secret.to_owned());
        let span = tracing::debug_span!("keygate.verify", key_id = %key_id);
        tokio::spawn(
            async move {
                // Leaves `inflight` even if this task panics, so no waiter hangs.
                let guard = FlightGuard {
                    verifier: &this,
                    digest,
                    flight: ours,
                };
                let outcome = this.cold_verify(digest, &key_id, secret, previous, permit).await;
                match &outcome {
                    Ok(verified) => {
                        this.cache
                            .insert(digest, verified.clone(), this.clock.timestamp().unix_nanos())
                    }
                    Err(Failure::Invalid) => this.negative.insert(digest, ()),
                    Err(Failure::Unavailable | Failure::Throttled { .. }) => {}
                }
                // Leave before answering: a request arriving after an invalidation must
                // start a fresh flight, not join this finished one.
                drop(guard);
                let _ = tx.send(Some(outcome));
            }
            .instrument(span),
        );
        Ok(rx)
    }

    async fn cold_verify(
        &self,
        digest: Digest,
        key_id: &KeyId,
        secret: SecretString,
        previous: Option<Arc<Verified>>,
        _admitted: OwnedSemaphorePermit,
    ) -> Outcome {
        let loaded_epoch = self.epoch.load(Ordering::Acquire);
        let (store, id) = (Arc::clone(&self.store), key_id.clone());
        let find = detached(async move { store.find(&id).await });
        let found = self.store_budget.call(find, StoreError::is_outage).await;
        let now = self.clock.timestamp().unix_nanos();
        let record = match found {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::debug!("unknown key id");
                // Counted like a wrong secret: guesses at an id get the same answers
                // whether it exists or not.
                Counters::bump(&self.counters.wrong_secrets);
                self.lockout.failed(key_id, now);
                return Err(Failure::Invalid);
            }
            Err(error) => {
                Counters::bump(&self.counters.store_errors);
                if let Some(suppressed) = self.store_log.admit(now) {
                    tracing::error!(%error, suppressed, "key store lookup failed");
                }
                return Err(Failure::Unavailable);
            }
        };
        // Proven already (a stale entry, or a proof of the last 24 h) against this very
        // hash: re-read, not re-hashed, and spared by the throttle.
        let proven = previous.is_some_and(|p| p.secret_hash == record.secret_hash)
            || self.lockout.proven(&digest, &record.secret_hash, now);
        if !proven {
            if let Some(retry_after) = self.lockout.throttled(key_id.as_str(), now) {
                self.suspects.guessed_again(key_id.as_str(), now);
                if let Some(suppressed) = self.throttle_log.admit(now) {
                    tracing::warn!(
                        suppressed,
                        "too many failed attempts for this key id; refused without hashing"
                    );
                }
                return Err(Failure::Throttled { retry_after });
            }
            let started = std::time::Instant::now();
            let matches = self.check_secret(secret, record.secret_hash.clone()).await;
            cold_verification(started.elapsed().as_secs_f64());
            if !matches? {
                tracing::debug!("wrong secret");
                Counters::bump(&self.counters.wrong_secrets);
                self.suspects.wrong_secret(key_id, now);
                if self.lockout.failed(key_id, now) {
                    if let Some(suppressed) = self.throttle_log.admit(now) {
                        tracing::warn!(
                            suppressed,
                            "too many failed attempts for this key id: further ones are refused without hashing"
                        );
                    }
                }
                return Err(Failure::Invalid);
            }
        }
        self.lockout.prove(digest, &record.secret_hash, now);
        let (store, owner) = (Arc::clone(&self.store), record.owner.clone());
        let limits = detached(async move { store.owner_limits(&owner).await });
        let account = match self.store_budget.call(limits, StoreError::is_outage).await {
            Ok(limits) => limits.filter(|l| !l.is_empty()).map(Account::new),
            Err(error) => {
                Counters::bump(&self.counters.store_errors);
                if let Some(suppressed) = self.store_log.admit(now) {
                    tracing::error!(%error, suppressed, "owner limits lookup failed");
                }
                return Err(Failure::Unavailable);
            }
        };
        Ok(Arc::new(Verified {
            account,
            usage: Arc::new(UsageCell::new(record.key_id.clone())),
            principal: Principal::from_record(&record),
            revoked: record.revoked_at.is_some(),
            expires_at: record.expires_at,
            expiry: record.expires_at.map(Timestamp::from),
            secret_hash: record.secret_hash,
            loaded_epoch,
            checked_epoch: AtomicU64::new(loaded_epoch),
        }))
    }

    async fn check_secret(&self, secret: SecretString, stored: SecretHash) -> Result<bool, Failure> {
        let hasher = self.hasher.clone();
        let verdict = self
            .pool
            .run(move || hasher.verify(secret.expose_secret().as_bytes(), &stored))
            .await
            .map_err(|_| Failure::Unavailable)?;
        match verdict {
            Ok(matches) => Ok(matches),
            Err(HashError::Corrupt(why)) => {
                tracing::error!(why, "stored hash refused as corrupt");
                Err(Failure::Invalid)
            }
            Err(HashError::Failed(error)) => {
                tracing::error!(%error, "hash verification failed");
                Err(Failure::Unavailable)
            }
        }
    }
}

struct FlightGuard<'a> {
    verifier: &'a Verifier,
    digest: Digest,
    flight: Flight,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut inflight = self.verifier.inflight.lock().unwrap_or_else(|p| p.into_inner());
        // Only this flight's entry: a newer flight for the same key may have replaced it.
        if inflight
            .get(&self.digest)
            .is_some_and(|f| f.same_channel(&self.flight))
        {
            inflight.remove(&self.digest);
        }
    }
}
