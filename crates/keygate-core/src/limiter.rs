//! [`MemoryRateLimiter`]: the in-process [`RateLimiter`], for one instance.
//!
//! Its user guide (the algorithm, its error bound, memory and cost) is the documentation
//! of [`MemoryRateLimiter`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::clock::Timestamp;
use crate::key::KeyId;
use crate::policy::{BackendError, Bucket, RateDecision, RateLimiter, WindowState};

/// Keys held by default before the least valuable entries are evicted.
const DEFAULT_MAX_KEYS: u64 = 100_000;
const NANOS_PER_SEC: i128 = 1_000_000_000;
/// Periods are capped at 1000 years so that `period × limit` in nanoseconds cannot
/// overflow an `i128`.
const MAX_PERIOD_NANOS: i128 = 1000 * 365 * 86_400 * NANOS_PER_SEC;

/// An in-memory [`RateLimiter`] using GCRA, for one instance. Cheap to clone; clones
/// share counters.
///
/// # Example
/// ```
/// use keygate_core::{Bucket, KeyId, MemoryRateLimiter, RateLimit};
///
/// let limiter = MemoryRateLimiter::new();
/// let key = KeyId::from("kg_live_a1b2c3d4");
/// let buckets = [
///     Bucket { service: None, limit: RateLimit::per_minute(2) },
///     Bucket { service: None, limit: RateLimit::per_hour(100) },
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
///   with a [`ManualClock`](crate::ManualClock) instead of sleeping. Calls may arrive
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

type Shard = RwLock<HashMap<KeyId, KeyState, IdHashing>>;

/// Keys and their counters, spread over shards so that different keys rarely share a
/// lock, and the hot path takes only a read lock.
struct KeyMap {
    shards: Box<[Shard]>,
    hashing: IdHashing,
    max_per_shard: usize,
}

impl KeyMap {
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

    fn shard(&self, key_id: &KeyId) -> &Shard {
        // The middle bits: the map itself uses the low ones, and the top seven.
        let index = (self.hashing.hash_one(key_id) >> 32) as usize % self.shards.len();
        &self.shards[index]
    }

    /// Runs `f` on the state of `key_id`, created if new. A known key costs a read lock
    /// and a probe: no reference count is taken. The state holds only integers, valid
    /// after any panic, so lock poisoning is ignored.
    fn with_state<R>(
        &self,
        key_id: &KeyId,
        now: i64,
        longest: u64,
        windows: usize,
        f: impl FnOnce(&KeyState) -> R,
    ) -> R {
        let shard = self.shard(key_id);
        if let Some(state) = shard.read().unwrap_or_else(|p| p.into_inner()).get(key_id) {
            return f(state);
        }
        self.insert_with(shard, key_id, now, longest, windows, f)
    }

    /// [`with_state`](Self::with_state) for a key not seen yet, under the write lock.
    #[cold]
    fn insert_with<R>(
        &self,
        shard: &Shard,
        key_id: &KeyId,
        now: i64,
        longest: u64,
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
        let state = map.entry(key_id.clone()).or_insert_with(|| KeyState {
            idle_nanos: AtomicU64::new(longest),
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
fn sweep(map: &mut HashMap<KeyId, KeyState, IdHashing>, now: i64) {
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

const ID_HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(ID_HASH_K);
        }
    }

    fn finish(&self) -> u64 {
        let folded = u128::from(self.0) * u128::from(ID_HASH_K);
        (folded as u64) ^ ((folded >> 64) as u64)
    }
}

/// The counters of one key.
struct KeyState {
    /// How long the entry may stay idle: its longest window, in nanoseconds.
    idle_nanos: AtomicU64,
    /// When the key was last checked, in nanoseconds since the epoch (limiter time).
    last_seen: AtomicI64,
    counters: Mutex<Vec<Counter>>,
}

/// One GCRA counter: (service, period) identifies it within a key.
struct Counter {
    service: Option<Arc<str>>,
    period: Duration,
    /// The limit `tat` is scaled by (at least 1).
    scale: u32,
    /// The theoretical arrival time in nanoseconds since the Unix epoch, times `scale`,
    /// so that `period / limit` is exact.
    tat: i128,
}

/// A window in scaled units: nanoseconds times the limit.
#[derive(Clone, Copy)]
struct Window {
    limit: u32,
    scale: i128,
    /// The period in nanoseconds: also the emission interval, scaled.
    period: i128,
}

enum Check {
    /// Admitted, with `used` of the window used before this request.
    Admit {
        used: i128,
    },
    Refuse {
        wait_nanos: i128,
        tat: i128,
    },
}

impl Window {
    fn new(limit: u32, period: Duration) -> Self {
        let period_nanos = (period.as_nanos() as i128).clamp(1, MAX_PERIOD_NANOS);
        Self {
            limit,
            scale: i128::from(limit.max(1)),
            period: period_nanos,
        }
    }

    /// How far the counter is ahead of `now`, scaled: 0 for an idle window, up to
    /// `period × scale` for a full one.
    fn used(&self, tat: i128, now: &Now) -> i128 {
        (tat - now.nanos * self.scale).max(0)
    }

    fn check(&self, tat: i128, now: &Now) -> Check {
        let used = self.used(tat, now);
        if self.limit == 0 {
            return Check::Refuse {
                wait_nanos: self.period,
                tat,
            };
        }
        let over = used + self.period - self.period * self.scale;
        if over <= 0 {
            Check::Admit { used }
        } else {
            Check::Refuse {
                wait_nanos: div_ceil(over, self.scale),
                tat,
            }
        }
    }

    /// Requests the window would still admit now, with `used` of it used:
    /// `floor((period × scale − used) / period)`, computed as `scale − ceil(used /
    /// period)` so that the division is by a small `used` (64-bit) in the usual case
    /// of a window far from full.
    fn remaining(&self, used: i128) -> u32 {
        if self.limit == 0 {
            return 0;
        }
        let taken = div_ceil(used.max(0), self.period);
        let left = (self.scale - taken).clamp(0, i128::from(self.limit));
        u32::try_from(left).unwrap_or(0)
    }

    /// The window's state with its counter at `tat`, for the headers.
    fn state(&self, tat: i128, now: &Now) -> WindowState {
        let used = self.used(tat, now);
        self.state_of(used, self.remaining(used), now)
    }

    /// The window's state with `used` of it used and `remaining` requests left.
    fn state_of(&self, used: i128, remaining: u32, now: &Now) -> WindowState {
        // Whole again `used / scale` nanoseconds from now, rounded up to a second.
        let full_in = now.subsec_nanos + div_ceil(used, self.scale);
        let reset_at = now.secs + div_ceil(full_in, NANOS_PER_SEC);
        WindowState {
            limit: self.limit,
            period_secs: u64::try_from(div_ceil(self.period, NANOS_PER_SEC)).unwrap_or(u64::MAX),
            remaining,
            reset_at: u64::try_from(reset_at.max(0)).unwrap_or(u64::MAX),
        }
    }
}

/// The instant of a call, in the forms the arithmetic needs.
struct Now {
    /// Nanoseconds since the Unix epoch.
    nanos: i128,
    secs: i128,
    subsec_nanos: i128,
}

impl Now {
    fn new(at: Timestamp) -> Self {
        Self {
            nanos: i128::from(at.unix_nanos()),
            secs: i128::from(at.unix_secs()),
            subsec_nanos: i128::from(at.subsec_nanos()),
        }
    }
}

/// `a / b` rounded up, for `a >= 0`, `b > 0`; in 64 bits when both fit, as they do but
/// for extreme limits and periods (128-bit division is several times slower).
fn div_ceil(a: i128, b: i128) -> i128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => i128::from(a.div_ceil(b)),
        _ => {
            let q = a / b;
            if q * b == a {
                q
            } else {
                q + 1
            }
        }
    }
}

/// `a / b` rounded up, for any `a` and `b > 0` (off the hot path).
fn div_ceil_signed(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if q * b == a {
        q
    } else {
        q + 1
    }
}

fn same_identity(a: &Bucket, service: &Option<Arc<str>>, period: Duration) -> bool {
    let same_service = match (&a.service, service) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    };
    same_service && a.limit.period == period
}

/// The limit bucket `i` is checked against, or `None` when an earlier bucket of the
/// same call has its identity (it was checked there, against the smaller limit).
fn effective_limit(buckets: &[Bucket], i: usize) -> Option<u32> {
    let bucket = &buckets[i];
    let same = |b: &Bucket| same_identity(b, &bucket.service, bucket.limit.period);
    if buckets[..i].iter().any(same) {
        return None;
    }
    Some(
        buckets[i..]
            .iter()
            .filter(|b| same(b))
            .map(|b| b.limit.limit)
            .min()
            .unwrap_or(bucket.limit.limit),
    )
}

fn find(counters: &[Counter], bucket: &Bucket) -> Option<usize> {
    counters
        .iter()
        .position(|c| same_identity(bucket, &c.service, c.period))
}

fn longest_period(buckets: &[Bucket]) -> u64 {
    let longest = buckets.iter().map(|b| b.limit.period).max().unwrap_or_default();
    u64::try_from(longest.as_nanos()).unwrap_or(u64::MAX)
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
        self.keys.sweep_all(now.into().unix_nanos());
    }

    /// The synchronous form of [`RateLimiter::acquire`]: checks every bucket for
    /// `key_id` at `now` and counts the request in each only if all admit.
    pub fn try_acquire(&self, key_id: &KeyId, buckets: &[Bucket], now: impl Into<Timestamp>) -> RateDecision {
        let at = now.into();
        let now = Now::new(at);
        if buckets.is_empty() {
            return RateDecision {
                allowed: true,
                tightest: WindowState {
                    limit: u32::MAX,
                    period_secs: 0,
                    remaining: u32::MAX,
                    reset_at: u64::try_from(now.secs.max(0)).unwrap_or(0),
                },
                retry_after: 0,
            };
        }
        let longest = longest_period(buckets);
        let seen = at.unix_nanos();
        self.keys
            .with_state(key_id, seen, longest, buckets.len(), |state| {
                // The counters are plain integers, valid after any panic: ignore poisoning.
                let mut counters = state.counters.lock().unwrap_or_else(|p| p.into_inner());
                // Under the key's lock, so plain loads and stores keep both monotonic.
                // A route with a longer window than the entry was created for extends its
                // idle time.
                if state.idle_nanos.load(Ordering::Relaxed) < longest {
                    state.idle_nanos.store(longest, Ordering::Relaxed);
                }
                if state.last_seen.load(Ordering::Relaxed) < seen {
                    state.last_seen.store(seen, Ordering::Relaxed);
                }
                decide(&mut counters, buckets, &now)
            })
    }
}

/// Checks every bucket, then counts in each only if all admitted.
fn decide(counters: &mut Vec<Counter>, buckets: &[Bucket], now: &Now) -> RateDecision {
    match admit_in_place(counters, buckets, now) {
        Some(decision) => decision,
        None => decide_general(counters, buckets, now),
    }
}

/// [`decide`] in every case: new or reordered buckets, a changed limit, a refusal.
fn decide_general(counters: &mut Vec<Counter>, buckets: &[Bucket], now: &Now) -> RateDecision {
    // Each bucket's counter and limit, found once: on the stack for the usual few
    // buckets (small entries, since the array is initialised on every call). `SKIP`
    // marks a bucket counted under an earlier one of the same identity. With them, what
    // the window has used before this request.
    const INLINE: usize = 8;
    const SKIP: usize = usize::MAX;
    let unplanned = (SKIP, 0u32, 0i128);
    let mut inline = [unplanned; INLINE];
    let mut spilled = Vec::new();
    let plan: &mut [(usize, u32, i128)] = if buckets.len() <= INLINE {
        &mut inline[..buckets.len()]
    } else {
        spilled.resize(buckets.len(), unplanned);
        &mut spilled
    };
    // Pass 1: find or create each counter, rescale it to its limit, and check it.
    // The refusing window with the longest wait: (wait, window, counter).
    let mut refused: Option<(i128, Window, i128)> = None;
    for (i, bucket) in buckets.iter().enumerate() {
        let Some(limit) = effective_limit(buckets, i) else {
            continue;
        };
        let window = Window::new(limit, bucket.limit.period);
        let index = match find(counters, bucket) {
            Some(index) => index,
            None => {
                counters.push(Counter {
                    service: bucket.service.clone(),
                    period: bucket.limit.period,
                    scale: limit.max(1),
                    tat: i128::MIN / 2,
                });
                counters.len() - 1
            }
        };
        let counter = &mut counters[index];
        if counter.scale != limit.max(1) {
            // The limit changed (a key's override): keep the counter's instant.
            let instant = div_ceil_signed(counter.tat, i128::from(counter.scale));
            counter.scale = limit.max(1);
            counter.tat = instant.saturating_mul(i128::from(counter.scale));
        }
        match window.check(counter.tat, now) {
            Check::Admit { used } => plan[i] = (index, limit, used),
            Check::Refuse { wait_nanos, tat } => {
                if refused.is_none_or(|(longest, _, _)| wait_nanos > longest) {
                    refused = Some((wait_nanos, window, tat));
                }
            }
        }
    }
    if let Some((wait_nanos, window, tat)) = refused {
        let secs = div_ceil(wait_nanos, NANOS_PER_SEC).max(1);
        return RateDecision {
            allowed: false,
            tightest: WindowState {
                remaining: 0,
                ..window.state(tat, now)
            },
            retry_after: u64::try_from(secs).unwrap_or(u64::MAX),
        };
    }
    // Pass 2: every bucket admitted; count the request in each.
    let mut tightest = None;
    let planned = plan
        .iter()
        .zip(buckets)
        .filter(|((index, _, _), _)| *index != SKIP);
    for (&(index, limit, used), bucket) in planned {
        let window = Window::new(limit, bucket.limit.period);
        // Counted: the window is `period` (one request, scaled) further along.
        let used = used + window.period;
        counters[index].tat = now.nanos * window.scale + used;
        keep_tightest(&mut tightest, window.remaining(used), used, window);
    }
    admitted(tightest, now)
}

/// The usual call, decided in two short passes in narrow integers: at most
/// [`IN_PLACE`] buckets of distinct identities, each with a counter at an unchanged,
/// non-zero limit, periods below 146 years, a time after 1970, and every window
/// admitting. Otherwise `None`, with nothing counted, and [`decide`] takes the general
/// path; both decide alike (a test compares them).
fn admit_in_place(counters: &mut [Counter], buckets: &[Bucket], now: &Now) -> Option<RateDecision> {
    let at = u64::try_from(now.nanos).ok()?;
    // Each bucket's counter: usually at the bucket's own position (the same route as
    // last time), else found by identity (another route of the same key).
    let mut found = [0usize; IN_PLACE];
    let found = found.get_mut(..buckets.len())?;
    for (i, bucket) in buckets.iter().enumerate() {
        let at_position = |index: usize| {
            counters
                .get(index)
                .is_some_and(|c| same_identity(bucket, &c.service, c.period))
        };
        let index = if at_position(i) {
            i
        } else {
            find(counters, bucket)?
        };
        let counter = &counters[index];
        let limit = bucket.limit.limit;
        // A second bucket on one counter is counted once, by the general path.
        if limit == 0 || counter.scale != limit || found[..i].contains(&index) {
            return None;
        }
        let (period, used) = narrow_state(counter, at)?;
        // Admitted when one more request fits: used + period <= period × limit.
        if used + u128::from(period) > u128::from(period) * u128::from(limit) {
            return None;
        }
        found[i] = index;
    }
    // (remaining, used, limit, period) of the tightest window.
    let mut tightest: Option<(u32, u128, u32, u64)> = None;
    for &index in found.iter() {
        let counter = &mut counters[index];
        let limit = counter.scale;
        let (period, used) = narrow_state(counter, at)?;
        // Counted: the window is `period` (one request, scaled) further along. `used`
        // is at most `period × limit` (checked above), below 2^94.
        let used = used + u128::from(period);
        counter.tat = i128::from(at) * i128::from(limit) + used as i128;
        let remaining =
            limit.saturating_sub(u32::try_from(narrow_div_ceil(used, period)).unwrap_or(u32::MAX));
        // As `keep_tightest`: the fewest left, then the latest reset (`used / limit`
        // compared cross-multiplied, exactly: both products are below 2^126).
        let tighter = tightest.is_none_or(|(r, u, l, _)| {
            remaining < r || (remaining == r && used * u128::from(l) > u * u128::from(limit))
        });
        if tighter {
            tightest = Some((remaining, used, limit, period));
        }
    }
    let (remaining, used, limit, period) = tightest?;
    // Whole again `used / limit` nanoseconds from now, rounded up to a second.
    let nanos_per_sec = 1_000_000_000;
    let full_in = at % nanos_per_sec + narrow_div_ceil(used, u64::from(limit));
    Some(RateDecision {
        allowed: true,
        tightest: WindowState {
            limit,
            period_secs: period.div_ceil(nanos_per_sec),
            remaining,
            reset_at: (at / nanos_per_sec).saturating_add(full_in.div_ceil(nanos_per_sec)),
        },
        retry_after: 0,
    })
}

/// Buckets per call that [`admit_in_place`] takes.
const IN_PLACE: usize = 8;

/// A counter's period in nanoseconds and how much of it is used at `at`, scaled, for
/// [`admit_in_place`]; `None` for a period of 2^62 ns (146 years) or more. Below that,
/// `used` stays under 2^94 and the tie-break's products under 2^126, so the general
/// path's saturating arithmetic never saturates where this one is exact.
fn narrow_state(counter: &Counter, at: u64) -> Option<(u64, u128)> {
    let period = u64::try_from(counter.period.as_nanos())
        .ok()
        .filter(|p| *p < 1 << 62)?
        .max(1);
    let used = (counter.tat - i128::from(at) * i128::from(counter.scale)).max(0);
    // Not negative, after `max(0)`.
    Some((period, used as u128))
}

/// `a / b` rounded up, in 64 bits when `a` fits (it does but for extreme windows);
/// `b > 0`. The quotient fits: it is at most a limit, or a period in nanoseconds.
fn narrow_div_ceil(a: u128, b: u64) -> u64 {
    match u64::try_from(a) {
        Ok(a) => a.div_ceil(b),
        Err(_) => u64::try_from(a.div_ceil(u128::from(b))).unwrap_or(u64::MAX),
    }
}

/// Keeps the tighter of `tightest` and a window with `remaining` requests left and
/// `used` of it used: the fewest requests left, then the latest reset.
fn keep_tightest(tightest: &mut Option<(u32, i128, Window)>, remaining: u32, used: i128, window: Window) {
    // Resets compared exactly: used / scale against theirs, cross-multiplied.
    let tighter = tightest.is_none_or(|(r, u, w)| {
        remaining < r || (remaining == r && used.saturating_mul(w.scale) > u.saturating_mul(window.scale))
    });
    if tighter {
        *tightest = Some((remaining, used, window));
    }
}

/// An admitting decision showing the `tightest` window: (remaining, used, window).
fn admitted(tightest: Option<(u32, i128, Window)>, now: &Now) -> RateDecision {
    RateDecision {
        allowed: true,
        tightest: tightest.map_or(
            WindowState {
                limit: 0,
                period_secs: 0,
                remaining: 0,
                reset_at: 0,
            },
            |(remaining, used, window)| window.state_of(used, remaining, now),
        ),
        retry_after: 0,
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
        Bucket { service: None, limit }
    }

    #[test]
    fn a_burst_of_the_limit_is_admitted_then_refused() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(100))];
        for expected_remaining in (0..100).rev() {
            let d = limiter.try_acquire(&key("a"), &buckets, now);
            assert!(d.allowed);
            assert_eq!(d.tightest.remaining, expected_remaining);
        }
        let refused = limiter.try_acquire(&key("a"), &buckets, now);
        assert!(!refused.allowed);
        assert_eq!(refused.tightest.remaining, 0);
        assert_eq!(refused.tightest.limit, 100);
        assert_eq!(refused.tightest.reset_at, now.timestamp() as u64 + 60);
        // One request refills every 0.6 s: rounded up to 1.
        assert_eq!(refused.retry_after, 1);
    }

    #[test]
    fn capacity_refills_steadily() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(6))];
        for _ in 0..6 {
            assert!(limiter.try_acquire(&key("a"), &buckets, now).allowed);
        }
        let refused = limiter.try_acquire(&key("a"), &buckets, now);
        assert_eq!(refused.retry_after, 10);
        let early = now + chrono::Duration::milliseconds(9_999);
        assert!(!limiter.try_acquire(&key("a"), &buckets, early).allowed);
        let later = now + chrono::Duration::seconds(10);
        assert!(limiter.try_acquire(&key("a"), &buckets, later).allowed);
        assert!(!limiter.try_acquire(&key("a"), &buckets, later).allowed);
    }

    #[test]
    fn the_tightest_admitting_window_has_the_fewest_remaining() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [
            bucket(RateLimit::per_hour(1000)),
            bucket(RateLimit::per_minute(100)),
        ];
        let d = limiter.try_acquire(&key("a"), &buckets, now);
        assert_eq!(d.tightest.limit, 100);
        assert_eq!(d.tightest.period_secs, 60);
        assert_eq!(d.tightest.remaining, 99);
        // Full again 0.6 s later, rounded up to the next whole second.
        assert_eq!(d.tightest.reset_at, now.timestamp() as u64 + 1);
    }

    #[test]
    fn the_refusing_window_with_the_longest_wait_is_reported() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_second(1)), bucket(RateLimit::per_hour(1))];
        assert!(limiter.try_acquire(&key("a"), &buckets, now).allowed);
        let refused = limiter.try_acquire(&key("a"), &buckets, now);
        assert!(!refused.allowed);
        assert_eq!(refused.tightest.limit, 1);
        assert_eq!(refused.tightest.period_secs, 3600);
        assert_eq!(refused.retry_after, 3600);
    }

    #[test]
    fn a_changed_limit_continues_the_same_counter() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        for _ in 0..10 {
            assert!(
                limiter
                    .try_acquire(&key("a"), &[bucket(RateLimit::per_minute(10))], now)
                    .allowed
            );
        }
        // The minute is used up; doubling the limit does not start a fresh minute.
        let doubled = [bucket(RateLimit::per_minute(20))];
        assert!(!limiter.try_acquire(&key("a"), &doubled, now).allowed);
        let later = now + chrono::Duration::seconds(3);
        assert!(limiter.try_acquire(&key("a"), &doubled, later).allowed);
    }

    #[test]
    fn duplicate_buckets_count_once_against_the_smaller_limit() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(5)), bucket(RateLimit::per_minute(2))];
        let first = limiter.try_acquire(&key("a"), &buckets, now);
        assert_eq!((first.tightest.limit, first.tightest.remaining), (2, 1));
        assert!(limiter.try_acquire(&key("a"), &buckets, now).allowed);
        assert!(!limiter.try_acquire(&key("a"), &buckets, now).allowed);
    }

    #[test]
    fn routes_with_different_buckets_share_the_counters_they_have_in_common() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let minute = bucket(RateLimit::per_minute(3));
        let chat = Bucket {
            service: Some("chat".into()),
            limit: RateLimit::per_minute(10),
        };
        // The key's own minute, alone, then behind the service's window (another order),
        // then alone again: one minute counter throughout.
        let alone = [minute.clone()];
        let with_chat = [chat, minute];
        assert_eq!(limiter.try_acquire(&key("a"), &alone, now).tightest.remaining, 2);
        let d = limiter.try_acquire(&key("a"), &with_chat, now);
        assert_eq!((d.tightest.limit, d.tightest.remaining), (3, 1));
        assert_eq!(limiter.try_acquire(&key("a"), &alone, now).tightest.remaining, 0);
        assert!(!limiter.try_acquire(&key("a"), &with_chat, now).allowed);
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let d = limiter.try_acquire(&key("a"), &[bucket(RateLimit::per_minute(0))], now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 60);
        assert_eq!(d.tightest.remaining, 0);
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
    fn an_earlier_now_is_treated_strictly_not_as_a_refill() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(1))];
        assert!(limiter.try_acquire(&key("a"), &buckets, now).allowed);
        let earlier = now - chrono::Duration::seconds(30);
        let d = limiter.try_acquire(&key("a"), &buckets, earlier);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 90);
    }

    #[test]
    fn dates_before_the_epoch_do_not_overflow() {
        let limiter = MemoryRateLimiter::new();
        let now = at("1900-01-01T00:00:00Z");
        let d = limiter.try_acquire(&key("a"), &[bucket(RateLimit::per_day(3))], now);
        assert!(d.allowed);
        assert_eq!(d.tightest.remaining, 2);
        assert_eq!(d.tightest.reset_at, 0);
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
    fn the_in_place_path_decides_as_the_general_one() {
        // A pseudo-random walk (xorshift, fixed seed): bucket sets that change now and
        // then (so that the in-place path is taken between changes), limits from 1 to
        // u32::MAX, periods from a nanosecond to 400 days, steps from a nanosecond to
        // a minute. One set of counters goes through `decide`, the other through the
        // general path alone: every decision and every counter must agree.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut pick = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let limits = [1, 2, 3, 7, 100, 1000, 1_000_000, u32::MAX];
        let periods = [
            Duration::from_nanos(1),
            Duration::from_millis(1500),
            Duration::from_secs(60),
            Duration::from_secs(3600),
            Duration::from_secs(400 * 86_400),
            // Beyond the in-place path's 146 years: the general path alone.
            Duration::from_secs(200 * 365 * 86_400),
        ];
        let steps = [0, 1, 1_000, 1_000_000, 600_000_000, 61_000_000_000];
        let chat: Arc<str> = Arc::from("chat");
        let (mut fast, mut general) = (Vec::new(), Vec::new());
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut nanos = 1_773_000_000_000_000_000_i64;
        let (mut in_place, mut admitted) = (0, 0);
        for round in 0..20_000 {
            if buckets.is_empty() || pick(40) == 0 {
                // Half the sets share one limit: equal counts left, told apart by reset.
                let shared = limits[pick(limits.len())];
                let same = pick(2) == 0;
                buckets = (0..1 + pick(3))
                    .map(|_| Bucket {
                        service: (pick(2) == 0).then(|| chat.clone()),
                        limit: RateLimit {
                            limit: if same { shared } else { limits[pick(limits.len())] },
                            period: periods[pick(periods.len())],
                        },
                    })
                    .collect();
            }
            nanos += steps[pick(steps.len())];
            let now = Now::new(Timestamp::from_unix_nanos(nanos));
            let decided = match admit_in_place(&mut fast, &buckets, &now) {
                Some(decision) => {
                    in_place += 1;
                    decision
                }
                None => decide_general(&mut fast, &buckets, &now),
            };
            let expected = decide_general(&mut general, &buckets, &now);
            assert_eq!(decided, expected, "round {round}");
            let state = |c: &Counter| (c.service.clone(), c.period, c.scale, c.tat);
            assert!(
                fast.iter().map(state).eq(general.iter().map(state)),
                "round {round}"
            );
            admitted += usize::from(expected.allowed);
        }
        // Both paths and both answers were exercised.
        assert!(
            in_place > 1_000 && admitted - in_place > 1_000,
            "{in_place} {admitted}"
        );
        assert!(20_000 - admitted > 2_000, "{admitted}");
    }

    #[test]
    fn counters_are_small() {
        assert!(
            std::mem::size_of::<Counter>() <= 64,
            "{}",
            std::mem::size_of::<Counter>()
        );
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
