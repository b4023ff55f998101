//! Time, injectable so tests can cross an expiry or a month boundary without sleeping.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, TimeZone, Utc};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;

    /// Now, as a [`Timestamp`]: what the gate reads once per request. The default
    /// converts [`now`](Self::now); a clock that can give nanoseconds directly should,
    /// since the calendar conversion costs more than reading the system clock.
    fn timestamp(&self) -> Timestamp {
        Timestamp::from(self.now())
    }
}

/// An instant as nanoseconds since the Unix epoch (1677 to 2262; instants beyond
/// saturate at the ends).
///
/// The request path compares and subtracts these: a [`DateTime`] holds a calendar
/// date, and converting to and from it costs more than reading the clock. The gate
/// converts only to render a date (`expired_at`, a month for spend caps).
///
/// ```
/// use keygate_core::clock::Timestamp;
///
/// let at: chrono::DateTime<chrono::Utc> = "2026-03-10T12:00:00.25Z".parse().unwrap();
/// let ts = Timestamp::from(at);
/// assert_eq!((ts.unix_secs(), ts.subsec_nanos()), (1_773_144_000, 250_000_000));
/// assert_eq!(ts.to_datetime(), at);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `nanos` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded down.
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }

    /// Nanoseconds past [`unix_secs`](Self::unix_secs), below one second.
    pub const fn subsec_nanos(self) -> u32 {
        // In 0..1e9: fits.
        self.0.rem_euclid(NANOS_PER_SEC) as u32
    }

    /// The same instant as a calendar date and time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(
            at.timestamp_nanos_opt()
                .unwrap_or(if at.timestamp() < 0 { i64::MIN } else { i64::MAX }),
        )
    }
}

impl From<SystemTime> for Timestamp {
    fn from(at: SystemTime) -> Self {
        let saturated = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Self(match at.duration_since(UNIX_EPOCH) {
            Ok(after) => saturated(after),
            Err(before) => saturated(before.duration()).saturating_neg(),
        })
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn timestamp(&self) -> Timestamp {
        Timestamp::from(SystemTime::now())
    }
}

/// A clock that moves only when told to; clones share one time.
///
/// ```
/// use std::time::Duration;
/// use keygate_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new("2026-01-31T23:59:59Z".parse().unwrap());
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(clock.now().to_rfc3339(), "2026-02-01T00:00:00+00:00");
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }

    /// Sets the clock.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A UTC calendar month, the period of spend caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month containing `at`.
    pub fn of(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first instant of this month.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_both_ways_and_saturate() {
        for at in [
            "1969-12-31T23:59:59.5Z",
            "1970-01-01T00:00:00Z",
            "2026-03-10T12:00:00.123456789Z",
        ] {
            let at: DateTime<Utc> = at.parse().unwrap();
            let ts = Timestamp::from(at);
            assert_eq!(ts.to_datetime(), at);
            assert_eq!(ts.unix_secs(), at.timestamp());
            assert_eq!(ts.subsec_nanos(), at.timestamp_subsec_nanos());
            assert_eq!(Timestamp::from(SystemTime::from(at)), ts);
        }
        let far: DateTime<Utc> = "9999-12-31T00:00:00Z".parse().unwrap();
        assert_eq!(Timestamp::from(far).unix_nanos(), i64::MAX);
        let ancient: DateTime<Utc> = "1000-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(Timestamp::from(ancient).unix_nanos(), i64::MIN);
    }

    #[test]
    fn the_system_clock_agrees_with_itself() {
        let before = SystemClock.now();
        let ts = SystemClock.timestamp();
        let after = SystemClock.now();
        assert!(Timestamp::from(before) <= ts && ts <= Timestamp::from(after));
    }
}
