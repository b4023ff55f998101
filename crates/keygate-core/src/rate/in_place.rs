//! The fast path of [`decide`](super::gcra::decide): the usual call (every window
//! admitting, counters where they were, limits unchanged) decided in one pass over the
//! buckets in 64/128-bit unsigned arithmetic. Wherever it answers, it answers as the
//! general path does (the test below walks both); everywhere else it declines and counts
//! nothing.

use std::time::Duration;

use super::gcra::{find, same_identity, Counter, Now};
use super::{Bucket, RateDecision, WindowState};
use crate::account::Holder;

/// The usual call, decided in one pass over the buckets in narrow integers: at most
/// [`IN_PLACE`] buckets of distinct identities, each with a counter at an unchanged,
/// non-zero limit, periods below 146 years, a time after 1970, and every window
/// admitting. Otherwise `None`, with nothing counted, and [`decide`] takes the general
/// path; both decide alike (a test compares them).
#[inline]
pub(super) fn admit_in_place(
    counters: &mut [Counter],
    buckets: &[Bucket],
    now: &Now,
) -> Option<RateDecision> {
    let at = u64::try_from(now.nanos).ok()?;
    // Each bucket's counter and its arrival time once counted: every window is checked
    // before any counter is written.
    let mut plan = [(0usize, 0i128); IN_PLACE];
    let plan = plan.get_mut(..buckets.len())?;
    // Whether every counter so far sat at its bucket's position (the same route as last
    // time): they are distinct then, with nothing to compare.
    let mut in_order = true;
    // (remaining, used, limit, period) of the tightest window.
    let mut tightest: Option<(u32, u128, u32, u64)> = None;
    for (i, bucket) in buckets.iter().enumerate() {
        let index = match counters.get(i) {
            Some(c) if same_identity(bucket, &c.service, c.period) => i,
            // Another route of the same key: found by identity.
            _ => {
                in_order = false;
                find(counters, bucket)?
            }
        };
        // A second bucket on one counter is counted once, by the general path.
        if !in_order && plan[..i].iter().any(|&(j, _)| j == index) {
            return None;
        }
        let counter = counters.get(index)?;
        let (limit, period) = (bucket.limit.limit, counter.narrow_period);
        if limit == 0 || counter.scale != limit || period == 0 {
            return None;
        }
        let scaled_now = i128::from(at) * i128::from(limit);
        // How far the counter is ahead of now, then `period` (one request, scaled)
        // further along: admitted when that fits in `period × limit`. So `used` stays
        // below 2^94 and the tie-break's products below 2^126.
        let (used, remaining) = match u128::try_from(counter.tat - scaled_now) {
            Ok(ahead) if ahead > 0 => {
                let used = ahead + u128::from(period);
                if used > u128::from(period) * u128::from(limit) {
                    return None;
                }
                let taken = u32::try_from(narrow_div_ceil(used, period)).unwrap_or(u32::MAX);
                (used, limit.saturating_sub(taken))
            }
            // Idle (refilled): this request alone in the window, which always admits it
            // (the limit is at least 1), with one request taken.
            _ => (u128::from(period), limit - 1),
        };
        if let Some(slot) = plan.get_mut(i) {
            *slot = (index, scaled_now + used as i128);
        }
        // As `keep_tightest`: the fewest left, then the latest reset (`used / limit`
        // compared cross-multiplied, exactly; directly between equal limits).
        let tighter = tightest.is_none_or(|(r, u, l, _)| {
            remaining < r
                || (remaining == r
                    && if l == limit {
                        used > u
                    } else {
                        used * u128::from(l) > u * u128::from(limit)
                    })
        });
        if tighter {
            tightest = Some((remaining, used, limit, period));
        }
    }
    for &(index, tat) in plan.iter() {
        if let Some(counter) = counters.get_mut(index) {
            counter.tat = tat;
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
        holder: Holder::Key,
    })
}

/// Buckets per call that [`admit_in_place`] takes.
const IN_PLACE: usize = 8;

/// A period in nanoseconds for [`admit_in_place`] (at least 1), or 0 for a period of
/// 2^62 ns (146 years) or more, which it leaves to the general path. Below that, `used`
/// stays under 2^94 and the tie-break's products under 2^126, so the general path's
/// saturating arithmetic never saturates where this one is exact.
pub(super) fn narrow_period(period: Duration) -> u64 {
    u64::try_from(period.as_nanos())
        .ok()
        .filter(|p| *p < 1 << 62)
        .map_or(0, |p| p.max(1))
}

/// `a / b` rounded up, in 64 bits when `a` fits (it does but for extreme windows);
/// `b > 0`. The quotient fits: it is at most a limit, or a period in nanoseconds.
#[inline]
fn narrow_div_ceil(a: u128, b: u64) -> u64 {
    match u64::try_from(a) {
        Ok(a) => a.div_ceil(b),
        Err(_) => u64::try_from(a.div_ceil(u128::from(b))).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::Timestamp;
    use crate::rate::gcra::decide_general;
    use crate::record::RateLimit;

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
                        account: None,
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
}
