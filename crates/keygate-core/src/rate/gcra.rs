//! GCRA arithmetic: one key's counters and the decision over a request's buckets, as
//! pure functions of the counters and the time they are handed. The in-memory limiter
//! ([`MemoryRateLimiter`](super::MemoryRateLimiter)) stores the counters; this file
//! decides. Its semantics are documented on the limiter.

use std::sync::Arc;
use std::time::Duration;

use super::in_place;
use super::{Bucket, RateDecision, WindowState};
use crate::account::Holder;
use crate::clock::Timestamp;

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// Periods are capped at 1000 years so that `period × limit` in nanoseconds cannot
/// overflow an `i128`.
const MAX_PERIOD_NANOS: i128 = 1000 * 365 * 86_400 * NANOS_PER_SEC;
/// The earliest instant a counter is kept at, in nanoseconds: idle for any time a
/// request can carry, and small enough that times any limit stays far inside `i128`.
const IDLE_FLOOR: i128 = -(1 << 64);

/// One GCRA counter: (service, period) identifies it within a key.
#[derive(Clone)]
pub(crate) struct Counter {
    pub(crate) service: Option<Arc<str>>,
    pub(crate) period: Duration,
    /// The limit `tat` is scaled by (at least 1).
    pub(crate) scale: u32,
    /// The theoretical arrival time in nanoseconds since the Unix epoch, times `scale`,
    /// so that `period / limit` is exact.
    pub(crate) tat: i128,
    /// `period` in nanoseconds (at least 1) for the in-place path, converted once; 0
    /// for a period too long for it.
    pub(crate) narrow_period: u64,
}

impl Counter {
    fn new(service: Option<Arc<str>>, period: Duration, scale: u32, tat: i128) -> Self {
        Self {
            narrow_period: in_place::narrow_period(period),
            service,
            period,
            scale,
            tat,
        }
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
        let full_in = now.subsec_nanos() + div_ceil(used, self.scale);
        let reset_at = now.secs() + div_ceil(full_in, NANOS_PER_SEC);
        WindowState {
            limit: self.limit,
            period_secs: u64::try_from(div_ceil(self.period, NANOS_PER_SEC)).unwrap_or(u64::MAX),
            remaining,
            reset_at: u64::try_from(reset_at.max(0)).unwrap_or(u64::MAX),
        }
    }
}

/// The instant of a call, in the forms the arithmetic needs. Seconds are split off only
/// where a state is shown: the fast path does its own, in 64 bits.
pub(crate) struct Now {
    at: Timestamp,
    /// Nanoseconds since the Unix epoch.
    pub(crate) nanos: i128,
}

impl Now {
    pub(crate) fn new(at: Timestamp) -> Self {
        Self {
            at,
            nanos: i128::from(at.unix_nanos()),
        }
    }

    /// Whole seconds since the Unix epoch.
    pub(crate) fn secs(&self) -> i128 {
        i128::from(self.at.unix_secs())
    }

    /// Nanoseconds past [`secs`](Self::secs).
    fn subsec_nanos(&self) -> i128 {
        i128::from(self.at.subsec_nanos())
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

pub(crate) fn same_identity(a: &Bucket, service: &Option<Arc<str>>, period: Duration) -> bool {
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

pub(crate) fn find(counters: &[Counter], bucket: &Bucket) -> Option<usize> {
    counters
        .iter()
        .position(|c| same_identity(bucket, &c.service, c.period))
}

/// Checks every bucket, then counts in each only if all admitted.
pub(crate) fn decide(counters: &mut Vec<Counter>, buckets: &[Bucket], now: &Now) -> RateDecision {
    match in_place::admit_in_place(counters, buckets, now) {
        Some(decision) => decision,
        None => decide_general(counters, buckets, now),
    }
}

/// [`decide`] in every case: new or reordered buckets, a changed limit, a refusal.
/// Out of line, so that the usual call stays short.
#[inline(never)]
pub(crate) fn decide_general(counters: &mut Vec<Counter>, buckets: &[Bucket], now: &Now) -> RateDecision {
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
                counters.push(Counter::new(
                    bucket.service.clone(),
                    bucket.limit.period,
                    limit.max(1),
                    i128::MIN / 2,
                ));
                counters.len() - 1
            }
        };
        let counter = &mut counters[index];
        if counter.scale != limit.max(1) {
            // The limit changed (a key's override): keep the counter's instant. A counter
            // that never counted a request (created by a refusal) sits at a sentinel far
            // in the past; its instant is floored to 2^64 ns before the epoch (idle all
            // the same) so that rescaling it cannot saturate and overflow later.
            let instant = div_ceil_signed(counter.tat, i128::from(counter.scale)).max(IDLE_FLOOR);
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
            holder: Holder::Key,
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
        holder: Holder::Key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RateLimit;
    use chrono::{DateTime, Utc};
    use std::cell::RefCell;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn bucket(limit: RateLimit) -> Bucket {
        Bucket {
            service: None,
            limit,
            account: None,
        }
    }

    /// One key's counters, decided on as the limiter does under the key's lock.
    #[derive(Default)]
    struct Counters(RefCell<Vec<Counter>>);

    impl Counters {
        fn decide(&self, buckets: &[Bucket], now: DateTime<Utc>) -> RateDecision {
            decide(&mut self.0.borrow_mut(), buckets, &Now::new(now.into()))
        }
    }

    #[test]
    fn a_burst_of_the_limit_is_admitted_then_refused() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(100))];
        for expected_remaining in (0..100).rev() {
            let d = counters.decide(&buckets, now);
            assert!(d.allowed);
            assert_eq!(d.tightest.remaining, expected_remaining);
        }
        let refused = counters.decide(&buckets, now);
        assert!(!refused.allowed);
        assert_eq!(refused.tightest.remaining, 0);
        assert_eq!(refused.tightest.limit, 100);
        assert_eq!(refused.tightest.reset_at, now.timestamp() as u64 + 60);
        // One request refills every 0.6 s: rounded up to 1.
        assert_eq!(refused.retry_after, 1);
    }

    #[test]
    fn capacity_refills_steadily() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(6))];
        for _ in 0..6 {
            assert!(counters.decide(&buckets, now).allowed);
        }
        let refused = counters.decide(&buckets, now);
        assert_eq!(refused.retry_after, 10);
        let early = now + chrono::Duration::milliseconds(9_999);
        assert!(!counters.decide(&buckets, early).allowed);
        let later = now + chrono::Duration::seconds(10);
        assert!(counters.decide(&buckets, later).allowed);
        assert!(!counters.decide(&buckets, later).allowed);
    }

    #[test]
    fn the_tightest_admitting_window_has_the_fewest_remaining() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [
            bucket(RateLimit::per_hour(1000)),
            bucket(RateLimit::per_minute(100)),
        ];
        let d = counters.decide(&buckets, now);
        assert_eq!(d.tightest.limit, 100);
        assert_eq!(d.tightest.period_secs, 60);
        assert_eq!(d.tightest.remaining, 99);
        // Full again 0.6 s later, rounded up to the next whole second.
        assert_eq!(d.tightest.reset_at, now.timestamp() as u64 + 1);
    }

    #[test]
    fn the_refusing_window_with_the_longest_wait_is_reported() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_second(1)), bucket(RateLimit::per_hour(1))];
        assert!(counters.decide(&buckets, now).allowed);
        let refused = counters.decide(&buckets, now);
        assert!(!refused.allowed);
        assert_eq!(refused.tightest.limit, 1);
        assert_eq!(refused.tightest.period_secs, 3600);
        assert_eq!(refused.retry_after, 3600);
    }

    #[test]
    fn a_changed_limit_continues_the_same_counter() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        for _ in 0..10 {
            assert!(counters.decide(&[bucket(RateLimit::per_minute(10))], now).allowed);
        }
        // The minute is used up; doubling the limit does not start a fresh minute.
        let doubled = [bucket(RateLimit::per_minute(20))];
        assert!(!counters.decide(&doubled, now).allowed);
        let later = now + chrono::Duration::seconds(3);
        assert!(counters.decide(&doubled, later).allowed);
    }

    #[test]
    fn duplicate_buckets_count_once_against_the_smaller_limit() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(5)), bucket(RateLimit::per_minute(2))];
        let first = counters.decide(&buckets, now);
        assert_eq!((first.tightest.limit, first.tightest.remaining), (2, 1));
        assert!(counters.decide(&buckets, now).allowed);
        assert!(!counters.decide(&buckets, now).allowed);
    }

    #[test]
    fn routes_with_different_buckets_share_the_counters_they_have_in_common() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        let minute = bucket(RateLimit::per_minute(3));
        let chat = Bucket {
            service: Some("chat".into()),
            limit: RateLimit::per_minute(10),
            account: None,
        };
        // The key's own minute, alone, then behind the service's window (another order),
        // then alone again: one minute counter throughout.
        let alone = [minute.clone()];
        let with_chat = [chat, minute];
        assert_eq!(counters.decide(&alone, now).tightest.remaining, 2);
        let d = counters.decide(&with_chat, now);
        assert_eq!((d.tightest.limit, d.tightest.remaining), (3, 1));
        assert_eq!(counters.decide(&alone, now).tightest.remaining, 0);
        assert!(!counters.decide(&with_chat, now).allowed);
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        let d = counters.decide(&[bucket(RateLimit::per_minute(0))], now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 60);
        assert_eq!(d.tightest.remaining, 0);
    }

    #[test]
    fn a_blocked_key_whose_limit_is_restored_is_admitted_again() {
        // A key set to 0/min (blocked), refused once, then restored to a much larger
        // limit: the counter the refusal created has never counted a request.
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        assert!(!counters.decide(&[bucket(RateLimit::per_minute(0))], now).allowed);
        let restored = counters.decide(&[bucket(RateLimit::per_minute(100))], now);
        assert!(restored.allowed, "{restored:?}");
        assert_eq!(restored.tightest.remaining, 99);
        assert!(restored.tightest.reset_at < u64::MAX);
        let raised = counters.decide(&[bucket(RateLimit::per_minute(u32::MAX))], now);
        assert!(raised.allowed, "{raised:?}");
    }

    #[test]
    fn an_earlier_now_is_treated_strictly_not_as_a_refill() {
        let counters = Counters::default();
        let now = at("2026-03-10T12:00:00Z");
        let buckets = [bucket(RateLimit::per_minute(1))];
        assert!(counters.decide(&buckets, now).allowed);
        let earlier = now - chrono::Duration::seconds(30);
        let d = counters.decide(&buckets, earlier);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 90);
    }

    #[test]
    fn dates_before_the_epoch_do_not_overflow() {
        let counters = Counters::default();
        let now = at("1900-01-01T00:00:00Z");
        let d = counters.decide(&[bucket(RateLimit::per_day(3))], now);
        assert!(d.allowed);
        assert_eq!(d.tightest.remaining, 2);
        assert_eq!(d.tightest.reset_at, 0);
    }

    #[test]
    fn counters_are_small() {
        assert!(
            std::mem::size_of::<Counter>() <= 64,
            "{}",
            std::mem::size_of::<Counter>()
        );
    }
}
