//! [`Breaker`]: a circuit breaker in front of a backend. After a few failures in a row,
//! calls are not sent for a while, so that a down or hung backend costs a request
//! nothing instead of its timeout; then one call at a time probes whether it is back.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, not std's: the same as the timeouts the breaker sits beside, so that
// a test with paused time (`tokio::time::pause`) moves both.
use tokio::time::Instant;

/// Failures in a row that open the breaker.
pub const THRESHOLD: u32 = 3;
/// How long an open breaker sends nothing before one call probes.
pub const COOL_DOWN: Duration = Duration::from_secs(1);

/// A circuit breaker, shared (behind an `Arc`) by every clone of one backend's client:
/// closed, every call is sent; [`THRESHOLD`] failures in a row open it, and for
/// [`COOL_DOWN`] no call is sent; then the one call that claims the probe is sent, and
/// its answer closes the breaker or opens it again. Lock-free: two atomics.
///
/// ```
/// use keygate_core::backend::{Breaker, THRESHOLD};
///
/// let breaker = Breaker::default();
/// for _ in 0..THRESHOLD {
///     assert!(breaker.allow());
///     breaker.failure();
/// }
/// assert!(!breaker.allow(), "open: the backend is spared, the caller answers at once");
/// ```
#[derive(Debug)]
pub struct Breaker {
    origin: Instant,
    failures: AtomicU32,
    /// Milliseconds since `origin` before which no call is sent (0: closed).
    open_until: AtomicU64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a call may be sent now: always while closed; while open, only the one
    /// call that claims the probe once the cool-down is over (the others wait another
    /// cool-down).
    pub fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        if now < until {
            return false;
        }
        let next = now.saturating_add(cool_down_ms()).max(1);
        self.open_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The backend answered: the breaker closes.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
    }

    /// The backend failed or did not answer in time: the breaker opens at
    /// [`THRESHOLD`] failures in a row (or again, after a failed probe).
    pub fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if failures >= THRESHOLD {
            let until = self.now_ms().saturating_add(cool_down_ms()).max(1);
            self.open_until.store(until, Ordering::Release);
        }
    }

    /// Whether calls are being held back now.
    pub fn is_open(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until != 0 && self.now_ms() < until
    }
}

fn cool_down_ms() -> u64 {
    u64::try_from(COOL_DOWN.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_the_threshold_and_closes_on_success() {
        let breaker = Breaker::default();
        for _ in 1..THRESHOLD {
            breaker.failure();
            assert!(breaker.allow(), "below the threshold");
        }
        breaker.failure();
        assert!(breaker.is_open());
        assert!(!breaker.allow(), "open: nothing is sent");
        breaker.success();
        assert!(!breaker.is_open());
        assert!(breaker.allow());
    }

    #[test]
    fn after_the_cool_down_one_call_probes() {
        let breaker = Breaker::default();
        for _ in 0..THRESHOLD {
            breaker.failure();
        }
        // As if the cool-down were over.
        breaker.open_until.store(1, Ordering::Release);
        std::thread::sleep(Duration::from_millis(2));
        assert!(breaker.allow(), "the probe");
        assert!(!breaker.allow(), "only one probe per cool-down");
        breaker.failure();
        assert!(breaker.is_open(), "a failed probe opens it again");
    }
}
