//! Usage over time: requests per key per UTC day ([`DailyUsage`], written by the store
//! with each usage batch and kept [`RETENTION_DAYS`]), and the watch for unusual
//! activity ([`UsageWatch`]): a key whose requests today exceed a multiple of its median
//! day, and a key id that received wrong secrets.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::key::KeyId;
use crate::record::Refused;

/// Days of daily usage a store keeps by default.
pub const RETENTION_DAYS: u32 = 90;

/// One key's requests on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DailyUsage {
    /// The key.
    pub key_id: KeyId,
    /// The UTC day.
    pub day: NaiveDate,
    /// Requests admitted with the key that day.
    pub requests: u64,
    /// Micro-cents charged to the key that day.
    pub spend: u64,
    /// Its requests refused that day after its secret was proven, by code.
    pub refused: Refused,
}

/// The UTC day of an instant.
pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// When activity is unusual. The defaults: today above 10 times the median of the last
/// 30 days (and above 100 requests, so that a new key's first busy day is not news),
/// and 10 wrong secrets for an id within the verifier's memory of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageWatch {
    /// Today is unusual above `spike_factor` × the median day.
    pub spike_factor: u64,
    /// ... and above this many requests.
    pub spike_min_requests: u64,
    /// The days the median is taken over (before today).
    pub baseline_days: u32,
    /// Wrong secrets for one key id that flag it.
    pub wrong_secrets: u64,
}

impl Default for UsageWatch {
    fn default() -> Self {
        Self {
            spike_factor: 10,
            spike_min_requests: 100,
            baseline_days: 30,
            wrong_secrets: 10,
        }
    }
}

impl UsageWatch {
    /// The median requests a day of `days` (the baseline before today, one entry per
    /// day with a 0 for a day without use), and whether `today` exceeds the spike.
    pub fn spike(&self, today: u64, days: &[u64]) -> Spike {
        let mut sorted = days.to_vec();
        sorted.sort_unstable();
        let median = match sorted.len() {
            0 => 0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
        };
        let over = today > median.saturating_mul(self.spike_factor) && today > self.spike_min_requests;
        Spike {
            median,
            today,
            unusual: over,
        }
    }
}

/// A key's day compared with its usual one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Spike {
    /// The median requests a day of the baseline.
    pub median: u64,
    /// Requests today.
    pub today: u64,
    /// Whether today is unusual.
    pub unusual: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_far_above_the_median_is_a_spike_and_a_busy_ordinary_one_is_not() {
        let watch = UsageWatch::default();
        let usual: Vec<u64> = (0..30).map(|d| 90 + d % 21).collect();
        assert!(watch.spike(2000, &usual).unusual);
        assert!(!watch.spike(150, &usual).unusual);
        assert!((90..=110).contains(&watch.spike(0, &usual).median));
        // A new key: no baseline, a first day of 50 requests is not news; 500 is.
        assert!(!watch.spike(50, &[0; 30]).unusual);
        assert!(watch.spike(500, &[0; 30]).unusual);
        assert_eq!(watch.spike(1, &[]).median, 0);
    }
}
