//! Key ids that received wrong secrets: how many, first and last, for the usage route's
//! watch for unusual activity. Only ids that exist are noted (a wrong secret for a
//! stored key; later guesses at an id already noted, even those refused without
//! hashing), in a bounded map that forgets an id a day after its first guess.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::sync::Cache;

use crate::key::KeyId;

/// Wrong secrets presented for one key id, as this gate saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WrongSecrets {
    /// How many.
    pub count: u64,
    /// The first.
    pub first_at: DateTime<Utc>,
    /// The latest.
    pub last_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Tally {
    count: AtomicU64,
    first: i64,
    last: AtomicI64,
}

pub(crate) struct Suspects(Cache<KeyId, Arc<Tally>>);

impl Suspects {
    /// Ids noted at most; beyond, the least used are forgotten.
    const CAPACITY: u64 = 10_000;

    pub(crate) fn new() -> Self {
        Self(
            Cache::builder()
                .max_capacity(Self::CAPACITY)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
        )
    }

    /// A wrong secret for `key_id`, which exists, at `now` (nanoseconds).
    pub(crate) fn wrong_secret(&self, key_id: &KeyId, now: i64) {
        let tally = self.0.get_with_by_ref(key_id, || {
            Arc::new(Tally {
                count: AtomicU64::new(0),
                first: now,
                last: AtomicI64::new(now),
            })
        });
        tally.count.fetch_add(1, Ordering::Relaxed);
        tally.last.fetch_max(now, Ordering::Relaxed);
    }

    /// Another guess at `key_id`, counted only if the id was noted already (it exists).
    pub(crate) fn guessed_again(&self, key_id: &str, now: i64) {
        if let Some(tally) = self.0.get(&KeyId::from(key_id)) {
            tally.count.fetch_add(1, Ordering::Relaxed);
            tally.last.fetch_max(now, Ordering::Relaxed);
        }
    }

    pub(crate) fn of(&self, key_id: &KeyId) -> Option<WrongSecrets> {
        let tally = self.0.get(key_id)?;
        Some(WrongSecrets {
            count: tally.count.load(Ordering::Relaxed),
            first_at: DateTime::from_timestamp_nanos(tally.first),
            last_at: DateTime::from_timestamp_nanos(tally.last.load(Ordering::Relaxed)),
        })
    }
}
