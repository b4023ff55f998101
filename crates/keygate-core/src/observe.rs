//! What a gate counts, and its export through the [`metrics`] facade.
//!
//! The request path only adds to plain atomics (one relaxed add per request, no map
//! lookup, no label hashing); [`Stats::publish`] hands the totals to whatever `metrics`
//! recorder the application installed (Prometheus with `metrics-exporter-prometheus`,
//! as the examples do at `/metrics`): call it before rendering a scrape, or on a timer.
//! Cold verifications record their latency directly, as a histogram: they are the cold
//! path, tens of milliseconds each.
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `keygate_requests_total` | counter | `outcome` (`admitted`, `anonymous`, or the refusal's code: `INVALID_API_KEY`, `RATE_LIMIT_EXCEEDED`, …), `path` (`cache`, `cold`, `memory`) |
//! | `keygate_cache_hits_total`, `keygate_cache_misses_total` | counter | |
//! | `keygate_verifications_shed_total` | counter | |
//! | `keygate_wrong_secrets_total` | counter | (unknown ids and wrong secrets, as the lockout counts them) |
//! | `keygate_backend_errors_total` | counter | (the limiter's and the meter's) |
//! | `keygate_cold_verification_seconds` | histogram | |
//!
//! No key id, owner or secret is ever a label or a value: the label sets are fixed.
//! `path` says where a request was decided: `cache`, a verified key from the cache
//! (with its limiter or meter awaited or not); `cold`, after a store lookup and argon2;
//! `memory`, before either (no key, a malformed one, an id refused at once).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::reject::Denial;

/// Where a request was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// A verified key from the cache.
    Cache,
    /// A key verified now: store lookup and argon2 (or refused by them).
    Cold,
    /// Before any verification: no key, a malformed one, an id refused at once.
    Memory,
}

impl Path {
    const ALL: [Path; 3] = [Path::Cache, Path::Cold, Path::Memory];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Cache => "cache",
            Path::Cold => "cold",
            Path::Memory => "memory",
        }
    }
}

/// The outcomes counted, in index order: admitted with a key, passed without one
/// (optional mode), then each refusal the pipeline makes, by its code.
const OUTCOMES: [&str; 9] = [
    "admitted",
    "anonymous",
    "MISSING_API_KEY",
    "INVALID_API_KEY",
    "EXPIRED_API_KEY",
    "INSUFFICIENT_PERMISSIONS",
    "INSUFFICIENT_QUOTA",
    "RATE_LIMIT_EXCEEDED",
    "SERVICE_UNAVAILABLE",
];

/// `Ok(true)`: admitted with a key; `Ok(false)`: passed without one; `Err`: refused.
fn outcome(result: Result<bool, &Denial>) -> usize {
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(denial) => match denial {
            Denial::MissingKey { .. } => 2,
            Denial::InvalidKey { .. } => 3,
            Denial::ExpiredKey { .. } => 4,
            Denial::InsufficientScope { .. } => 5,
            Denial::QuotaExceeded { .. } => 6,
            Denial::RateLimited { .. } => 7,
            // Unavailable; BadRequest and NotFound are keygate's own APIs', never the
            // pipeline's.
            _ => 8,
        },
    }
}

/// The gate's counters: plain atomics, added to with relaxed ordering.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: [[AtomicU64; OUTCOMES.len()]; 3],
    pub(crate) shed: AtomicU64,
    pub(crate) wrong_secrets: AtomicU64,
    pub(crate) backend_errors: AtomicU64,
    pub(crate) store_errors: AtomicU64,
}

impl Counters {
    /// Counts one decided request: `Ok(with_key)` admitted, `Err(denial)` refused.
    pub(crate) fn count(&self, path: Path, result: Result<bool, &Denial>) {
        self.requests[path as usize][outcome(result)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            requests: std::array::from_fn(|p| std::array::from_fn(|o| load(&self.requests[p][o]))),
            shed: load(&self.shed),
            wrong_secrets: load(&self.wrong_secrets),
            backend_errors: load(&self.backend_errors),
            store_errors: load(&self.store_errors),
        }
    }
}

/// A snapshot of a gate's counters ([`Gate::stats`](crate::Gate::stats)), totals since
/// the gate was built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    requests: [[u64; OUTCOMES.len()]; 3],
    shed: u64,
    wrong_secrets: u64,
    backend_errors: u64,
    store_errors: u64,
}

impl Stats {
    /// Requests decided on `path` with `outcome` (`"admitted"`, `"anonymous"` or a
    /// refusal's code); 0 for an outcome not counted.
    pub fn requests(&self, path: Path, outcome: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.requests[path as usize][i])
    }

    /// Requests admitted with a key, on any path.
    pub fn admitted(&self) -> u64 {
        self.requests.iter().map(|by| by[0]).sum()
    }

    /// Requests refused, on any path.
    pub fn refused(&self) -> u64 {
        self.requests.iter().map(|by| by[2..].iter().sum::<u64>()).sum()
    }

    /// Requests decided on a cached key.
    pub fn cache_hits(&self) -> u64 {
        self.requests[Path::Cache as usize].iter().sum()
    }

    /// Requests that verified a key cold.
    pub fn cache_misses(&self) -> u64 {
        self.requests[Path::Cold as usize].iter().sum()
    }

    /// Cold verifications shed because the hash pool was saturated.
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Wrong secrets and unknown ids presented (what the per-id failure limit counts).
    pub fn wrong_secrets(&self) -> u64 {
        self.wrong_secrets
    }

    /// Failures of the rate limiter or the spend meter on the request path.
    pub fn backend_errors(&self) -> u64 {
        self.backend_errors
    }

    /// Key store reads of cold verifications that failed, ran out of time or were not
    /// sent because the store's breaker was open (each answered 503).
    pub fn store_errors(&self) -> u64 {
        self.store_errors
    }

    /// Hands these totals to the installed `metrics` recorder (absolute counters, so
    /// publishing twice counts nothing twice). Without a recorder it does nothing.
    pub fn publish(&self) {
        for path in Path::ALL {
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                let n = self.requests[path as usize][i];
                if n > 0 {
                    metrics::counter!("keygate_requests_total", "outcome" => *outcome, "path" => path.as_str())
                        .absolute(n);
                }
            }
        }
        metrics::counter!("keygate_cache_hits_total").absolute(self.cache_hits());
        metrics::counter!("keygate_cache_misses_total").absolute(self.cache_misses());
        metrics::counter!("keygate_verifications_shed_total").absolute(self.shed);
        metrics::counter!("keygate_wrong_secrets_total").absolute(self.wrong_secrets);
        metrics::counter!("keygate_backend_errors_total").absolute(self.backend_errors);
        metrics::counter!("keygate_store_errors_total").absolute(self.store_errors);
    }
}

/// Records one cold verification's latency (store lookup and argon2), in seconds.
pub(crate) fn cold_verification(seconds: f64) {
    metrics::histogram!("keygate_cold_verification_seconds").record(seconds);
}
