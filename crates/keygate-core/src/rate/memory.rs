//! [`MemoryRateLimiter`]: the in-process [`RateLimiter`], for one instance: a sharded
//! map of each key's GCRA counters ([`gcra`](super::gcra) decides on them).
//!
//! Its user guide (the algorithm, its error bound, memory and cost) is the documentation
//! of [`MemoryRateLimiter`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::gcra::{decide, Counter, Now};
use super::{Bucket, RateDecision, RateLimiter, WindowState};
use crate::account::Holder;
use crate::backend::BackendError;
use crate::clock::Timestamp;
use crate::key::KeyId;
use crate::record::OwnerId;

/// Keys held by default before the least valuable entries are evicted.
const DEFAULT_MAX_KEYS: u64 = 100_000;

/// An in-memory [`RateLimiter`] using GCRA, for one instance. Cheap to clone; clones
/// share counters.
///
/// # Example
/// ```
/// use keygate_core::rate::{Bucket, MemoryRateLimiter};
/// use keygate_core::{KeyId, RateLimit};
///
/// let limiter = MemoryRateLimiter::new();
/// let key = KeyId::from("kg_live_a1b2c3d4");
/// let buckets = [
///     Bucket { service: None, limit: RateLimit::per_minute(2), account: None },
///     Bucket { service: None, limit: RateLimit::per_hour(100), account: None },
/// ];
/// let now: chrono::DateTime<chrono::Utc> = "2026-03-10T12:00:00Z".parse().unwrap();
///
/// assert!(limiter.try_acquire(&key, &buckets, now).allowed);
/// let second = limiter.try_acquire(&key, &buckets, now);
/// assert!(second.allowed);
/// assert_eq!((second.tightest.limit, second.tightest.remaining), (2, 0));
///
/// let third = limiter.try_acquire(&key, &buckets, now);
/// assert!(!third.allowed);
/// assert_eq!(third.retry_after, 30); // one request's worth of the minute refills in 30 s
/// ```
///
/// # The algorithm: GCRA
///
/// Each window `limit / period` is a GCRA (generic cell rate algorithm) counter, which
/// is a token bucket stored as one number: the *theoretical arrival time* (TAT), the
/// instant at which the bucket would be full again. A request at `now` moves it to
/// `max(TAT, now) + period / limit` and is admitted if that is at most `now + period`.
///
/// What a client sees:
///
/// - **Bursts up to `limit`.** An idle key may send `limit` requests at once.
/// - **Steady refill.** Capacity comes back one request every `period / limit`
///   (100/min: one every 0.6 s), not all at once at the end of a fixed window.
/// - **`Retry-After` is exact.** A refused request will succeed at `now + retry_after`
///   (unless other requests take that capacity first), and not a whole second earlier:
///   the exact wait is rounded up, to at least 1.
/// - **`X-RateLimit-Reset`** is when the window would be full again.
///
/// ## Error bound
///
/// GCRA enforces its own definition exactly (there is no estimate, unlike the
/// sliding-window counter, which assumes the previous window's requests were spread
/// evenly). Against the other common reading of "100 per minute", the *sliding log*
/// ("at most `limit` requests in any interval of one `period`"), it differs like every
/// token bucket: a burst of `limit` followed by a period of steady refill admits up to
/// `2 × limit` requests in the worst interval of one `period`, and never more than
/// `limit × (1 + t / period)` in any interval of length `t`. The long-run rate is
/// exactly `limit / period`. A sliding log would be exact in every interval but costs
/// memory per request; the sliding-window counter costs the same as GCRA but can err by
/// a similar amount in its worst case, and its `Retry-After` is only an estimate.
///
/// ## Semantics
///
/// - [`acquire`](RateLimiter::acquire) checks every bucket and counts the request in
///   each only if all admit: all or nothing, under one per-key lock, so `N` concurrent
///   calls against a limit `L` admit exactly `min(N, L)`. A refused request is counted
///   nowhere.
/// - A counter is identified by (key id, service, period). A key's override of
///   `100/min` by `200/min` therefore continues the same counter, keeping the fraction
///   of the window already used. Two buckets of one call with the same identity count
///   once, against the smaller limit.
/// - Only the `now` passed in is read, never the system clock, so tests move time
///   with a [`ManualClock`](crate::clock::ManualClock) instead of sleeping. Calls may arrive
///   with `now` slightly out of order (concurrent requests read the clock before they
///   take the lock); GCRA simply treats an earlier `now` a little more strictly.
/// - A limit of 0 refuses everything; a zero period counts as one nanosecond.
///
/// ## Memory
///
/// Per key: one entry in a sharded map holding a small vector of 64-byte counters, one
/// per window (the key id itself is shared with the caller). An entry may be dropped
/// once it has been idle for its longest window, when every counter in it has refilled
/// and forgetting it changes no decision: idle entries are swept, in the limiter's own
/// time, whenever a shard admits new keys. The map holds at most
/// [`max_keys`](MemoryRateLimiter::max_keys) entries (100 000 by default); past that a
/// shard drops its least recently seen key. Only authenticated keys reach a limiter,
/// but it stays bounded regardless.
///
/// ## Cost
///
/// One read-locked map lookup in one of 16 shards that allocates nothing, one
/// uncontended mutex per key (never a lock shared by different keys) and a few integer
/// operations per window.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    keys: Arc<KeyMap>,
    /// Owners' account-wide counters, apart from the keys' so that a key's lock and its
    /// owner's never share a shard.
    accounts: Arc<KeyMap<OwnerId>>,
    max_keys: u64,
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("keys", &self.key_count())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

type Shard<K> = RwLock<HashMap<K, KeyState, IdHashing>>;

/// Keys and their counters, spread over shards so that different keys rarely share a
/// lock, and the hot path takes only a read lock.
struct KeyMap<K = KeyId> {
    shards: Box<[Shard<K>]>,
    hashing: IdHashing,
    max_per_shard: usize,
}

impl<K: Hash + Eq + Clone> KeyMap<K> {
    fn new(max_keys: u64) -> Self {
        let max_keys = usize::try_from(max_keys).unwrap_or(usize::MAX).max(1);
        let shards = max_keys.min(16);
        let hashing = IdHashing(RandomState::new().hash_one(0u8));
        Self {
            shards: (0..shards)
                .map(|_| RwLock::new(HashMap::with_hasher(hashing.clone())))
                .collect(),
            hashing,
            max_per_shard: max_keys / shards,
        }
    }

    fn shard(&self, key_id: &K) -> &Shard<K> {
        // The middle bits: the map itself uses the low ones, and the top seven.
        let index = (self.hashing.hash_one(key_id) >> 32) as usize % self.shards.len();
        &self.shards[index]
    }

    /// Runs `f` on the state of `key_id`, created if new. A known key costs a read lock
    /// and a probe: no reference count is taken. The state holds only integers, valid
    /// after any panic, so lock poisoning is ignored.
    fn with_state<R>(&self, key_id: &K, now: i64, windows: usize, f: impl FnOnce(&KeyState) -> R) -> R {
        let shard = self.shard(key_id);
        if let Some(state) = shard.read().unwrap_or_else(|p| p.into_inner()).get(key_id) {
            return f(state);
        }
        self.insert_with(shard, key_id, now, windows, f)
    }

    /// [`with_state`](Self::with_state) for a key not seen yet, under the write lock.
    #[cold]
    fn insert_with<R>(
        &self,
        shard: &Shard<K>,
        key_id: &K,
        now: i64,
        windows: usize,
        f: impl FnOnce(&KeyState) -> R,
    ) -> R {
        let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = map.get(key_id) {
            return f(state);
        }
        if map.len() % 64 == 63 || map.len() >= self.max_per_shard {
            sweep(&mut map, now);
        }
        if map.len() >= self.max_per_shard {
            let oldest = map
                .iter()
                .min_by_key(|(_, state)| state.last_seen.load(Ordering::Relaxed))
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        // Idle for no time until `f` creates its counters (see `decide_in`).
        let state = map.entry(key_id.clone()).or_insert_with(|| KeyState {
            idle_nanos: AtomicU64::new(0),
            last_seen: AtomicI64::new(now),
            counters: Mutex::new(Vec::with_capacity(windows)),
        });
        f(state)
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    fn sweep_all(&self, now: i64) {
        for shard in self.shards.iter() {
            sweep(&mut shard.write().unwrap_or_else(|p| p.into_inner()), now);
        }
    }
}

/// Drops the keys idle for at least their longest window at `now`.
fn sweep<K>(map: &mut HashMap<K, KeyState, IdHashing>, now: i64) {
    map.retain(|_, state| {
        let idle = now.saturating_sub(state.last_seen.load(Ordering::Relaxed));
        u64::try_from(idle).unwrap_or(0) < state.idle_nanos.load(Ordering::Relaxed)
    });
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// The hashing of key ids: a multiply-rotate hash (as rustc's), seeded per limiter and
/// finished with a folded multiply. Much cheaper than SipHash on a short id; the ids
/// reaching a limiter are authenticated ones, not attacker-chosen strings.
#[derive(Clone)]
struct IdHashing(u64);

impl BuildHasher for IdHashing {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

struct IdHasher(u64);

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(ID_HASH_K);
    }
}

const ID_HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Whole words read as such, and the tail folded in byte by byte: copying each
        // chunk into a word cost a call to `memcpy` per chunk.
        let mut tail = bytes;
        while let Some((word, rest)) = tail.split_first_chunk::<8>() {
            self.mix(u64::from_le_bytes(*word));
            tail = rest;
        }
        if !tail.is_empty() {
            self.mix(tail.iter().fold(0, |word, &b| (word << 8) | u64::from(b)));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        let folded = u128::from(self.0) * u128::from(ID_HASH_K);
        (folded as u64) ^ ((folded >> 64) as u64)
    }
}

/// The counters of one key.
struct KeyState {
    /// How long the entry may stay idle: the longest window of its counters (any it
    /// ever had), in nanoseconds.
    idle_nanos: AtomicU64,
    /// When the key was last checked, in nanoseconds since the epoch (limiter time).
    last_seen: AtomicI64,
    counters: Mutex<Vec<Counter>>,
}

/// Decides on the locked `counters` of `state`. Every window of a call has a counter
/// once it is decided (a new one is created, even by a refusal), so the counters the
/// call created are the only windows that can lengthen the entry's idle time: the usual
/// call, on known counters, reads no period for it.
fn decide_in(state: &KeyState, counters: &mut Vec<Counter>, buckets: &[Bucket], now: &Now) -> RateDecision {
    let known = counters.len();
    let decided = decide(counters, buckets, now);
    if let Some(created) = counters.get(known..).filter(|created| !created.is_empty()) {
        state.extend_idle(created);
    }
    decided
}

impl MemoryRateLimiter {
    /// A limiter holding at most 100 000 keys.
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// Sets how many keys are held at most. Beyond that, the least valuable entries are
    /// evicted (their counters restart), so size it above the number of keys in use.
    pub fn max_keys(self, max_keys: u64) -> Self {
        Self::with_max_keys(max_keys)
    }

    fn with_max_keys(max_keys: u64) -> Self {
        Self {
            keys: Arc::new(KeyMap::new(max_keys)),
            accounts: Arc::new(KeyMap::new(max_keys)),
            max_keys,
        }
    }

    /// Keys currently held.
    pub fn key_count(&self) -> u64 {
        self.keys.len() as u64
    }

    /// Drops every key idle for at least its longest window at `now` (this also happens
    /// on its own as new keys arrive).
    pub fn evict_idle(&self, now: impl Into<Timestamp>) {
        let now = now.into().unix_nanos();
        self.keys.sweep_all(now);
        self.accounts.sweep_all(now);
    }

    /// The synchronous form of [`RateLimiter::acquire`]: checks every bucket for
    /// `key_id` at `now` and counts the request in each only if all admit. Account
    /// buckets ([`Bucket::account`]) count in their owner's counters, shared by all its
    /// keys, in the same all-or-nothing step.
    pub fn try_acquire(&self, key_id: &KeyId, buckets: &[Bucket], now: impl Into<Timestamp>) -> RateDecision {
        let at = now.into();
        let now = Now::new(at);
        if buckets.iter().any(|b| b.account.is_some()) {
            return self.acquire_with_account(key_id, buckets, &now, at);
        }
        if buckets.is_empty() {
            return RateDecision {
                allowed: true,
                tightest: WindowState {
                    limit: u32::MAX,
                    period_secs: 0,
                    remaining: u32::MAX,
                    reset_at: u64::try_from(now.secs().max(0)).unwrap_or(0),
                },
                retry_after: 0,
                holder: Holder::Key,
            };
        }
        let seen = at.unix_nanos();
        self.keys.with_state(key_id, seen, buckets.len(), |state| {
            decide_in(state, &mut state.lock(seen), buckets, &now)
        })
    }

    /// A call with account buckets: the key's windows decided under the key's lock, then,
    /// still under it, the owner's under the owner's; if the owner's refuse, the key's
    /// counters are put back as they were, so a refused request is counted nowhere.
    /// Locks are always taken key first, owner second (and owners live in a map of their
    /// own), so two keys of one owner never wait on each other in a cycle.
    #[cold]
    fn acquire_with_account(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: &Now,
        at: Timestamp,
    ) -> RateDecision {
        let seen = at.unix_nanos();
        let (account, own): (Vec<Bucket>, Vec<Bucket>) =
            buckets.iter().cloned().partition(|b| b.account.is_some());
        let Some(owner) = account.first().and_then(|b| b.account.clone()) else {
            return self.try_acquire(key_id, &own, at);
        };
        let decide_account = || {
            let decided = self.accounts.with_state(&owner, seen, account.len(), |state| {
                decide_in(state, &mut state.lock(seen), &account, now)
            });
            RateDecision {
                holder: Holder::Account,
                ..decided
            }
        };
        if own.is_empty() {
            return decide_account();
        }
        self.keys.with_state(key_id, seen, own.len(), |state| {
            let mut counters = state.lock(seen);
            let before = counters.clone();
            let mine = decide_in(state, &mut counters, &own, now);
            if !mine.allowed {
                return mine;
            }
            let theirs = decide_account();
            if !theirs.allowed {
                *counters = before;
                return theirs;
            }
            tighter(mine, theirs)
        })
    }
}

/// The tighter of two admitting decisions: the fewer requests left, then the later reset.
fn tighter(a: RateDecision, b: RateDecision) -> RateDecision {
    let (x, y) = (a.tightest, b.tightest);
    if y.remaining < x.remaining || (y.remaining == x.remaining && y.reset_at > x.reset_at) {
        b
    } else {
        a
    }
}

impl KeyState {
    /// The counters, locked, with the entry's last sighting brought up to this call. The
    /// counters are plain integers, valid after any panic: poisoning is ignored.
    fn lock(&self, seen: i64) -> std::sync::MutexGuard<'_, Vec<Counter>> {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        // Under the key's lock, so a plain load and store keep it monotonic.
        if self.last_seen.load(Ordering::Relaxed) < seen {
            self.last_seen.store(seen, Ordering::Relaxed);
        }
        counters
    }

    /// Lengthens the entry's idle time to the longest window of the `created` counters
    /// (a route with a longer window than the entry has seen). Under the key's lock.
    #[cold]
    fn extend_idle(&self, created: &[Counter]) {
        let longest = created.iter().map(|c| c.period).max().unwrap_or_default();
        let longest = u64::try_from(longest.as_nanos()).unwrap_or(u64::MAX);
        if self.idle_nanos.load(Ordering::Relaxed) < longest {
            self.idle_nanos.store(longest, Ordering::Relaxed);
        }
    }
}

impl RateLimiter for MemoryRateLimiter {
    fn acquire(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> impl std::future::Future<Output = Result<RateDecision, BackendError>> + Send {
        std::future::ready(Ok(self.try_acquire(key_id, buckets, now)))
    }

    fn acquire_now(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> Option<Result<RateDecision, BackendError>> {
        Some(Ok(self.try_acquire(key_id, buckets, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RateLimit;
    use chrono::{DateTime, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn key(name: &str) -> KeyId {
        KeyId::from(name)
    }

    fn bucket(limit: RateLimit) -> Bucket {
        Bucket {
            service: None,
            limit,
            account: None,
        }
    }

    #[test]
    fn no_buckets_admit_without_counting() {
        let limiter = MemoryRateLimiter::new();
        let d = limiter.try_acquire(&key("a"), &[], at("2026-03-10T12:00:00Z"));
        assert!(d.allowed);
        assert_eq!(d.tightest.remaining, u32::MAX);
        assert_eq!(limiter.key_count(), 0);
    }

    #[test]
    fn an_idle_key_is_evicted_after_its_longest_window_and_not_before() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let (a, b) = (key("a"), key("b"));
        limiter.try_acquire(&a, &[bucket(RateLimit::per_minute(10))], now);
        // A route with a longer window extends b's idle time to a day.
        let service = Bucket {
            service: Some("reports".into()),
            limit: RateLimit::per_day(5),
            account: None,
        };
        limiter.try_acquire(&b, &[bucket(RateLimit::per_minute(10)), service], now);
        limiter.evict_idle(now + chrono::Duration::seconds(59));
        assert_eq!(limiter.key_count(), 2);
        limiter.evict_idle(now + chrono::Duration::seconds(60));
        assert_eq!(limiter.key_count(), 1, "a, idle for its minute, is gone");
        limiter.evict_idle(now + chrono::Duration::days(1));
        assert_eq!(limiter.key_count(), 0);
    }

    #[test]
    fn a_longer_window_on_a_later_route_keeps_the_key_as_long() {
        // The key is first seen with a minute, then on a route that adds a day (refused,
        // which still creates its counter): idle for a day, not a minute, before it goes.
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let a = key("a");
        let minute = bucket(RateLimit::per_minute(10));
        limiter.try_acquire(&a, std::slice::from_ref(&minute), now);
        let closed = bucket(RateLimit::per_day(0));
        assert!(!limiter.try_acquire(&a, &[minute, closed], now).allowed);
        limiter.evict_idle(now + chrono::Duration::hours(23));
        assert_eq!(limiter.key_count(), 1);
        limiter.evict_idle(now + chrono::Duration::days(1));
        assert_eq!(limiter.key_count(), 0);
    }

    #[test]
    fn clones_share_their_counters() {
        let limiter = MemoryRateLimiter::new();
        let clone = limiter.clone();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(1))];
        assert!(limiter.try_acquire(&key("a"), &buckets, now).allowed);
        assert!(!clone.try_acquire(&key("a"), &buckets, now).allowed);
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let limiter = MemoryRateLimiter::new().max_keys(100);
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_hour(10))];
        for i in 0..1000 {
            limiter.try_acquire(&KeyId::new(format!("kg_live_{i:08}")), &buckets, now);
        }
        assert!(limiter.key_count() <= 100, "{}", limiter.key_count());
        assert!(
            limiter.key_count() >= 90,
            "the cap is used: {}",
            limiter.key_count()
        );
    }
}
