//! [`Hushed`]: a warning that an attacker (or an outage) could repeat on every request,
//! logged at most once a second with the count of those held back, so that a flood of
//! shed or throttled requests does not become a flood of log lines.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// One warning's rate limit: one a second, in the gate's time.
pub(crate) struct Hushed {
    /// The first second in which the next occurrence may be logged.
    next: AtomicI64,
    /// Occurrences held back since the last one logged.
    held: AtomicU64,
}

impl Hushed {
    pub(crate) const fn new() -> Self {
        Self {
            next: AtomicI64::new(i64::MIN),
            held: AtomicU64::new(0),
        }
    }

    /// Whether to log an occurrence at `now` (nanoseconds since the epoch): `Some(n)`,
    /// with the `n` occurrences held back since the last one logged, or `None` to hold
    /// this one back.
    pub(crate) fn admit(&self, now: i64) -> Option<u64> {
        let second = now.div_euclid(NANOS_PER_SEC);
        let next = self.next.load(Ordering::Relaxed);
        // A clock stepped back by more than a second would otherwise hush it that long.
        let due = second >= next || second < next.saturating_sub(1);
        if due
            && self
                .next
                .compare_exchange(
                    next,
                    second.saturating_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = NANOS_PER_SEC;

    #[test]
    fn one_occurrence_a_second_is_logged_with_the_count_held_back() {
        let hushed = Hushed::new();
        assert_eq!(hushed.admit(10 * SEC), Some(0));
        for _ in 0..5 {
            assert_eq!(hushed.admit(10 * SEC + SEC / 2), None);
        }
        assert_eq!(hushed.admit(11 * SEC), Some(5));
        assert_eq!(hushed.admit(11 * SEC + 1), None);
        assert_eq!(hushed.admit(20 * SEC), Some(1));
    }

    #[test]
    fn a_clock_stepped_back_does_not_hush_a_warning_for_long() {
        let hushed = Hushed::new();
        assert_eq!(hushed.admit(3600 * SEC), Some(0));
        assert_eq!(hushed.admit(60 * SEC), Some(0));
        assert_eq!(hushed.admit(60 * SEC), None);
    }
}
