//! [`MemoryRateLimiter`]: the in-process [`RateLimiter`], for one instance.
//!
//! Its user guide (the algorithm, its error bound, memory and cost) is the documentation
//! of [`MemoryRateLimiter`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use moka::sync::Cache;
use moka::Expiry;

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
/// let now = "2026-03-10T12:00:00Z".parse().unwrap();
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
/// Per key: one entry in a concurrent map (moka) holding a small vector of 64-byte
/// counters, one per window. Measured with map overhead included: about 460 bytes per
/// key with two windows, 530 with three (the key id itself is shared with the caller).
/// An entry is evicted once it has been idle for its longest window, when every counter
/// in it has refilled and forgetting it changes no decision; the map also holds at most
/// [`max_keys`](MemoryRateLimiter::max_keys) entries (100 000 by default). Only
/// authenticated keys reach a limiter, but it stays bounded regardless.
///
/// ## Cost
///
/// One map lookup that allocates nothing, one uncontended mutex per key (never a lock
/// shared by different keys) and a few integer operations per window.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    keys: Cache<KeyId, Arc<KeyState>>,
    max_keys: u64,
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("keys", &self.keys.entry_count())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// The counters of one key.
struct KeyState {
    /// How long the entry may stay idle: its longest window, in nanoseconds.
    idle_nanos: AtomicU64,
    counters: Mutex<Vec<Counter>>,
}

impl KeyState {
    fn idle_for(&self) -> Duration {
        Duration::from_nanos(self.idle_nanos.load(Ordering::Relaxed))
    }
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

/// Evicts a key once it has been idle for its longest window.
struct IdleForLongestWindow;

impl Expiry<KeyId, Arc<KeyState>> for IdleForLongestWindow {
    fn expire_after_create(&self, _: &KeyId, state: &Arc<KeyState>, _: Instant) -> Option<Duration> {
        Some(state.idle_for())
    }

    fn expire_after_read(
        &self,
        _: &KeyId,
        state: &Arc<KeyState>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(state.idle_for())
    }

    fn expire_after_update(
        &self,
        _: &KeyId,
        state: &Arc<KeyState>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(state.idle_for())
    }
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
    Admit { tat: i128 },
    Refuse { wait_nanos: i128, tat: i128 },
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
            Check::Admit {
                tat: now.nanos * self.scale + used + self.period,
            }
        } else {
            Check::Refuse {
                wait_nanos: div_ceil(over, self.scale),
                tat,
            }
        }
    }

    /// Requests the window would still admit now, with its counter at `tat`.
    fn remaining(&self, tat: i128, now: &Now) -> u32 {
        if self.limit == 0 {
            return 0;
        }
        let left = div_floor(
            (self.period * self.scale - self.used(tat, now)).max(0),
            self.period,
        );
        u32::try_from(left.min(i128::from(self.limit))).unwrap_or(0)
    }

    /// The window's state with its counter at `tat`, for the headers.
    fn state(&self, tat: i128, now: &Now) -> WindowState {
        // Whole again `used / scale` nanoseconds from now, rounded up to a second.
        let full_in = now.subsec_nanos + div_ceil(self.used(tat, now), self.scale);
        let reset_at = now.secs + div_ceil(full_in, NANOS_PER_SEC);
        WindowState {
            limit: self.limit,
            period_secs: u64::try_from(div_ceil(self.period, NANOS_PER_SEC)).unwrap_or(u64::MAX),
            remaining: self.remaining(tat, now),
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
    fn new(at: DateTime<Utc>) -> Self {
        let secs = i128::from(at.timestamp());
        let subsec_nanos = i128::from(at.timestamp_subsec_nanos());
        Self {
            nanos: secs * NANOS_PER_SEC + subsec_nanos,
            secs,
            subsec_nanos,
        }
    }
}

/// `a / b` for `a >= 0`, `b > 0`; in 64 bits when both fit, as they do but for
/// extreme limits and periods (128-bit division is several times slower).
fn div_floor(a: i128, b: i128) -> i128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => i128::from(a / b),
        _ => a / b,
    }
}

/// `a / b` rounded up, for `a >= 0`, `b > 0`.
fn div_ceil(a: i128, b: i128) -> i128 {
    let q = div_floor(a, b);
    if q * b == a {
        q
    } else {
        q + 1
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
            keys: Cache::builder()
                .max_capacity(max_keys)
                .expire_after(IdleForLongestWindow)
                .build(),
            max_keys,
        }
    }

    /// Keys currently held (approximate: evictions are applied lazily).
    pub fn key_count(&self) -> u64 {
        self.keys.entry_count()
    }

    /// The synchronous form of [`RateLimiter::acquire`]: checks every bucket for
    /// `key_id` at `now` and counts the request in each only if all admit.
    pub fn try_acquire(&self, key_id: &KeyId, buckets: &[Bucket], now: DateTime<Utc>) -> RateDecision {
        let now = Now::new(now);
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
        let state = self.keys.get_with_by_ref(key_id, || {
            Arc::new(KeyState {
                idle_nanos: AtomicU64::new(longest),
                counters: Mutex::new(Vec::with_capacity(buckets.len())),
            })
        });
        if state.idle_nanos.fetch_max(longest, Ordering::Relaxed) < longest {
            // A longer window than the entry was created for: re-insert so the map
            // recomputes the entry's idle time.
            self.keys.insert(key_id.clone(), state.clone());
        }
        // The counters are plain integers, valid after any panic: ignore poisoning.
        let mut counters = state.counters.lock().unwrap_or_else(|p| p.into_inner());
        decide(&mut counters, buckets, &now)
    }
}

/// Checks every bucket, then counts in each only if all admitted.
fn decide(counters: &mut Vec<Counter>, buckets: &[Bucket], now: &Now) -> RateDecision {
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
        if let Check::Refuse { wait_nanos, tat } = window.check(counter.tat, now) {
            if refused.is_none_or(|(longest, _, _)| wait_nanos > longest) {
                refused = Some((wait_nanos, window, tat));
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
    // Pass 2: every bucket admitted; count the request in each. The tightest window has
    // the fewest requests left, then the latest reset: (remaining, used, window, counter).
    let mut tightest: Option<(u32, i128, Window, i128)> = None;
    for (i, bucket) in buckets.iter().enumerate() {
        let Some(limit) = effective_limit(buckets, i) else {
            continue;
        };
        let window = Window::new(limit, bucket.limit.period);
        let Some(index) = find(counters, bucket) else {
            continue;
        };
        let counter = &mut counters[index];
        if let Check::Admit { tat } = window.check(counter.tat, now) {
            counter.tat = tat;
        }
        let remaining = window.remaining(counter.tat, now);
        let used = window.used(counter.tat, now);
        // Resets compared exactly: used / scale against theirs, cross-multiplied.
        let tighter = tightest.is_none_or(|(r, u, w, _)| {
            remaining < r || (remaining == r && used.saturating_mul(w.scale) > u.saturating_mul(window.scale))
        });
        if tighter {
            tightest = Some((remaining, used, window, counter.tat));
        }
    }
    RateDecision {
        allowed: true,
        tightest: tightest.map_or(
            WindowState {
                limit: 0,
                period_secs: 0,
                remaining: 0,
                reset_at: 0,
            },
            |(_, _, window, tat)| window.state(tat, now),
        ),
        retry_after: 0,
    }
}

impl RateLimiter for MemoryRateLimiter {
    fn acquire(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<RateDecision, BackendError>> + Send {
        std::future::ready(Ok(self.try_acquire(key_id, buckets, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RateLimit;

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
    fn an_entry_may_idle_for_its_longest_window() {
        let limiter = MemoryRateLimiter::new();
        let now = at("2026-03-10T12:00:00Z");
        let a = key("a");
        limiter.try_acquire(&a, &[bucket(RateLimit::per_minute(10))], now);
        let state = limiter.keys.get(&a).unwrap();
        let created = IdleForLongestWindow.expire_after_create(&a, &state, Instant::now());
        assert_eq!(created, Some(Duration::from_secs(60)));
        // A route with a longer window extends it.
        let service = Bucket {
            service: Some("reports".into()),
            limit: RateLimit::per_day(5),
        };
        limiter.try_acquire(&a, &[bucket(RateLimit::per_minute(10)), service], now);
        let read = IdleForLongestWindow.expire_after_read(&a, &state, Instant::now(), None, Instant::now());
        assert_eq!(read, Some(Duration::from_secs(86_400)));
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
        limiter.keys.run_pending_tasks();
        assert!(limiter.key_count() <= 100, "{}", limiter.key_count());
    }
}
