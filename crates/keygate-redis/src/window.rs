//! The windows of one call as the script sees them, and the decision built from its
//! reply: pure integer arithmetic, the same as keygate-core's `gcra.rs` at a resolution
//! of one microsecond. The script only admits and counts; the reported window,
//! `remaining`, `reset_at` and `retry_after` are computed here, exactly, in 128 bits.

use std::sync::Arc;
use std::time::Duration;

use keygate_core::account::Holder;
use keygate_core::backend::BackendError;
use keygate_core::rate::{Bucket, RateDecision, WindowState};
use keygate_core::{KeyId, OwnerId};

const MICROS_PER_SEC: i128 = 1_000_000;

/// The largest `period × scale` (scaled microseconds) a window may have, so that every
/// value the script computes stays an integer below 2^53, exact in Lua's doubles.
pub(crate) const MAX_SCALED_PERIOD: u128 = 1 << 52;

/// Instants the limiter accepts, in microseconds either side of the Unix epoch (about
/// 142 years: up to 2112), so that an instant plus a period stays below 2^53.
pub(crate) const MAX_INSTANT_MICROS: i128 = 1 << 52;

/// One counter of a call: its identity (service, period) and the limit it is checked
/// against, the smallest of the call's buckets with that identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// The owner whose account-wide counter this is, or `None` for the key's own.
    pub(crate) account: Option<OwnerId>,
    pub(crate) service: Option<Arc<str>>,
    pub(crate) limit: u32,
    /// The period in whole microseconds, at least 1.
    pub(crate) period: u64,
    /// One request is `step / scale` µs: `scale = limit / g`, `step = period / g` with
    /// `g = gcd(limit, period)`, so the usual limits have a scale of 1.
    pub(crate) scale: u64,
    pub(crate) step: u64,
}

impl Window {
    fn new(
        account: Option<OwnerId>,
        service: Option<Arc<str>>,
        limit: u32,
        period: Duration,
    ) -> Result<Self, BackendError> {
        let period_us = period.as_nanos().div_ceil(1000).max(1);
        let limit_or_one = u128::from(limit.max(1));
        let g = gcd(limit_or_one, period_us);
        let (scale, step) = (limit_or_one / g, period_us / g);
        if period_us.saturating_mul(scale) > MAX_SCALED_PERIOD {
            return Err(BackendError(format!(
                "rate limit {limit} per {period:?} is beyond the Redis limiter's bounds \
                 (period in µs × limit / gcd(limit, period in µs) must be at most 2^52)"
            )));
        }
        // Both below 2^52 after the check above.
        Ok(Self {
            account,
            service,
            limit,
            period: period_us as u64,
            scale: scale as u64,
            step: step as u64,
        })
    }

    /// The Redis key of this counter for `key_id`. A call without account windows is
    /// hash-tagged by the key id (`{<key id>}:rl:…`), so that every counter of one key
    /// lives in one Redis Cluster slot. A call with them is tagged by the owner
    /// (`{a:<owner>}:k:<key id>:rl:…` for the key's, `{a:<owner>}:rl:…` for the
    /// account's), so that the one script still touches one slot: `account` is the
    /// call's owner.
    pub(crate) fn redis_key(&self, key_id: &KeyId, account: Option<&OwnerId>) -> String {
        let counter = match &self.service {
            None => format!("rl:{}:-", self.period),
            Some(service) => format!("rl:{}:s:{service}", self.period),
        };
        match (account, &self.account) {
            (None, _) => format!("{{{}}}:{counter}", key_id.as_str()),
            (Some(owner), None) => format!("{{a:{}}}:k:{}:{counter}", owner.as_str(), key_id.as_str()),
            (Some(owner), Some(_)) => format!("{{a:{}}}:{counter}", owner.as_str()),
        }
    }
}

fn holder(w: &Window) -> Holder {
    if w.account.is_some() {
        Holder::Account
    } else {
        Holder::Key
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The distinct counters of `buckets`, in order of first appearance: buckets with the
/// same (service, period) count once, against the smallest limit among them.
pub(crate) fn plan(buckets: &[Bucket]) -> Result<Vec<Window>, BackendError> {
    let mut windows: Vec<Window> = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let window = Window::new(
            bucket.account.clone(),
            bucket.service.clone(),
            bucket.limit.limit,
            bucket.limit.period,
        )?;
        match windows
            .iter_mut()
            .find(|w| w.account == window.account && w.service == window.service && w.period == window.period)
        {
            Some(same) if window.limit < same.limit => *same = window,
            Some(_) => {}
            None => windows.push(window),
        }
    }
    Ok(windows)
}

enum Check {
    /// Admitted: the window's use after this request, scaled.
    Admit { used: i128 },
    /// Refused: the wait in µs, and the window's use, scaled.
    Refuse { wait: i128, used: i128 },
}

fn check(w: &Window, d: i128, tr: i128) -> Check {
    let (scale, step, period) = (i128::from(w.scale), i128::from(w.step), i128::from(w.period));
    let used = d * scale + tr;
    if w.limit == 0 {
        return Check::Refuse { wait: period, used };
    }
    let over = used + step - period * scale;
    if over <= 0 {
        Check::Admit { used: used + step }
    } else {
        Check::Refuse {
            wait: div_ceil(over, scale),
            used,
        }
    }
}

/// `a / b` rounded up, for `a >= 0` and `b > 0`.
fn div_ceil(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

/// Requests `w` still admits with `used` of it used.
fn remaining(w: &Window, used: i128) -> u32 {
    if w.limit == 0 {
        return 0;
    }
    let taken = div_ceil(used.max(0), i128::from(w.step));
    // The whole window, `period × scale`, is `limit` steps.
    let left = (i128::from(w.limit) - taken).clamp(0, i128::from(w.limit));
    u32::try_from(left).unwrap_or(0)
}

fn state(w: &Window, used: i128, remaining: u32, now: i128) -> WindowState {
    let (secs, subsec) = (now.div_euclid(MICROS_PER_SEC), now.rem_euclid(MICROS_PER_SEC));
    // Whole again `used / scale` µs from now, rounded up to a second.
    let full_in = subsec + div_ceil(used.max(0), i128::from(w.scale));
    let reset_at = secs + div_ceil(full_in, MICROS_PER_SEC);
    WindowState {
        limit: w.limit,
        period_secs: u64::try_from(div_ceil(i128::from(w.period), MICROS_PER_SEC)).unwrap_or(u64::MAX),
        remaining,
        reset_at: u64::try_from(reset_at.max(0)).unwrap_or(u64::MAX),
    }
}

/// The decision for `windows` from the script's reply: `[now, allowed, d1, tr1, ...]`.
pub(crate) fn decide(windows: &[Window], reply: &[i64]) -> Result<RateDecision, BackendError> {
    let malformed = || BackendError(format!("redis: unexpected limiter reply {reply:?}"));
    let (&[now, allowed], states) = reply.split_at_checked(2).ok_or_else(malformed)? else {
        return Err(malformed());
    };
    if states.len() != windows.len() * 2 {
        return Err(malformed());
    }
    let now = i128::from(now);
    // The refusing window with the longest wait; else the admitting one with the fewest
    // requests left, then the latest reset.
    let mut refused: Option<(i128, &Window, i128)> = None;
    let mut tightest: Option<(u32, i128, &Window)> = None;
    for (w, state) in windows.iter().zip(states.chunks_exact(2)) {
        match check(w, i128::from(state[0]), i128::from(state[1])) {
            Check::Refuse { wait, used } => {
                if refused.is_none_or(|(longest, _, _)| wait > longest) {
                    refused = Some((wait, w, used));
                }
            }
            Check::Admit { used } => {
                let left = remaining(w, used);
                // Resets compared exactly: used / scale against theirs, cross-multiplied.
                let tighter = tightest.is_none_or(|(r, u, t)| {
                    left < r || (left == r && used * i128::from(t.scale) > u * i128::from(w.scale))
                });
                if tighter {
                    tightest = Some((left, used, w));
                }
            }
        }
    }
    if (allowed == 1) != refused.is_none() {
        return Err(BackendError(
            "redis: the limiter script and keygate-redis disagree (a different script version?)".into(),
        ));
    }
    if let Some((wait, w, used)) = refused {
        return Ok(RateDecision {
            allowed: false,
            tightest: state(w, used, 0, now),
            retry_after: u64::try_from(div_ceil(wait, MICROS_PER_SEC).max(1)).unwrap_or(u64::MAX),
            holder: holder(w),
        });
    }
    let tightest = tightest.ok_or_else(malformed)?;
    Ok(RateDecision {
        allowed: true,
        tightest: state(tightest.2, tightest.1, tightest.0, now),
        retry_after: 0,
        holder: holder(tightest.2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::RateLimit;

    fn own(limit: RateLimit) -> Bucket {
        Bucket {
            service: None,
            limit,
            account: None,
        }
    }

    #[test]
    fn usual_limits_have_a_scale_of_one() {
        let w = &plan(&[own(RateLimit::per_minute(100))]).unwrap()[0];
        assert_eq!((w.period, w.scale, w.step), (60_000_000, 1, 600_000));
        let w = &plan(&[own(RateLimit::per_second(7))]).unwrap()[0];
        assert_eq!((w.scale, w.step), (7, 1_000_000));
    }

    #[test]
    fn duplicate_buckets_become_one_window_with_the_smaller_limit() {
        let chat = Bucket {
            service: Some("chat".into()),
            limit: RateLimit::per_minute(3),
            account: None,
        };
        let windows = plan(&[
            own(RateLimit::per_minute(5)),
            chat,
            own(RateLimit::per_minute(2)),
            own(RateLimit::per_hour(9)),
        ])
        .unwrap();
        let limits: Vec<_> = windows.iter().map(|w| (w.service.is_some(), w.limit)).collect();
        assert_eq!(limits, [(false, 2), (true, 3), (false, 9)]);
    }

    #[test]
    fn windows_beyond_the_bounds_are_an_error_not_a_wrong_answer() {
        // A prime limit per year: neither divides the other.
        let huge = RateLimit::new(4_294_967_291, Duration::from_secs(365 * 86_400));
        assert!(plan(&[own(huge)]).is_err());
        // The same limit per second is within them.
        assert!(plan(&[own(RateLimit::new(4_294_967_291, Duration::from_secs(1)))]).is_ok());
    }

    #[test]
    fn the_documented_bounds_hold() {
        let passes = |limit, secs| plan(&[own(RateLimit::new(limit, Duration::from_secs(secs)))]).is_ok();
        assert!(passes(u32::MAX, 1));
        assert!(passes(75_000_000, 60) && passes(1_250_000, 3600) && passes(52_000, 86_400));
        // The next primes past each bound fail; limits that divide the period pass.
        assert!(!passes(75_060_001, 60) && !passes(1_251_011, 3600) && !passes(52_127, 86_400));
        assert!(passes(1_000_000, 86_400) && passes(86_400_000, 86_400));
    }

    #[test]
    fn keys_are_hash_tagged_by_key_id() {
        let chat = Bucket {
            service: Some("chat".into()),
            limit: RateLimit::per_minute(3),
            account: None,
        };
        let windows = plan(&[own(RateLimit::per_minute(5)), chat]).unwrap();
        let key = KeyId::from("kg_live_a1b2");
        assert_eq!(windows[0].redis_key(&key, None), "{kg_live_a1b2}:rl:60000000:-");
        assert_eq!(
            windows[1].redis_key(&key, None),
            "{kg_live_a1b2}:rl:60000000:s:chat"
        );
    }

    #[test]
    fn a_call_with_account_windows_is_hash_tagged_by_the_owner() {
        let owner = OwnerId::new("acct_1");
        let account = Bucket::account(owner.clone(), RateLimit::per_minute(100));
        let windows = plan(&[own(RateLimit::per_minute(5)), account]).unwrap();
        let key = KeyId::from("kg_live_a1b2");
        assert_eq!(
            windows.len(),
            2,
            "the key's and the account's minute are two counters"
        );
        assert_eq!(
            windows[0].redis_key(&key, Some(&owner)),
            "{a:acct_1}:k:kg_live_a1b2:rl:60000000:-"
        );
        assert_eq!(
            windows[1].redis_key(&key, Some(&owner)),
            "{a:acct_1}:rl:60000000:-"
        );
    }

    #[test]
    fn a_reply_is_decided_as_gcra_does() {
        let windows = plan(&[own(RateLimit::per_minute(6))]).unwrap();
        let now = 1_893_456_000_000_000_i64;
        // Fresh: admitted, 5 left, whole again 10 s from now.
        let d = decide(&windows, &[now, 1, 0, 0]).unwrap();
        assert!(d.allowed);
        assert_eq!((d.tightest.remaining, d.tightest.reset_at), (5, 1_893_456_010));
        // Full (TAT 60 s ahead): refused, 10 s to wait.
        let d = decide(&windows, &[now, 0, 60_000_000, 0]).unwrap();
        assert!(!d.allowed);
        assert_eq!((d.retry_after, d.tightest.remaining), (10, 0));
        assert_eq!(d.tightest.reset_at, 1_893_456_060);
    }

    #[test]
    fn a_reply_that_disagrees_is_an_error() {
        let windows = plan(&[own(RateLimit::per_minute(6))]).unwrap();
        assert!(decide(&windows, &[0, 0, 0, 0]).is_err());
        assert!(decide(&windows, &[0, 1]).is_err());
    }
}
