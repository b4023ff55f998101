//! Policy after authentication: what a route requires ([`RoutePolicy`]), and the traits
//! of the rate limiter ([`RateLimiter`]) and the spend meter ([`SpendMeter`]).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::clock::Timestamp;

use crate::key::KeyId;
use crate::record::{RateLimit, Scopes};
use crate::store::BoxFuture;

/// A group of routes with rate limits of its own ("translation": 100/min).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The service name; counters are kept per key and service.
    pub name: Arc<str>,
    /// The service's windows.
    pub limits: Vec<RateLimit>,
}

#[derive(Debug, Default)]
struct PolicyInner {
    scopes: Scopes,
    optional: bool,
    service: Option<Service>,
    cost: Option<u64>,
    /// The gate's default buckets followed by this route's service buckets, built on
    /// first use for one gate (by its unique id), so requests allocate none.
    buckets: std::sync::OnceLock<(usize, Box<[Bucket]>)>,
}

/// What one route (or group of routes) requires. Cheap to clone.
///
/// ```
/// use keygate_core::{RateLimit, RoutePolicy};
///
/// let chat = RoutePolicy::new()
///     .require(["write"])
///     .service("chat", [RateLimit::per_minute(50)])
///     .cost(1000);
/// assert!(chat.scopes().contains("write"));
/// ```
#[derive(Clone, Default)]
pub struct RoutePolicy(Arc<PolicyInner>);

impl fmt::Debug for RoutePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl RoutePolicy {
    /// A key is required; no scope, the key's own limits, no cost.
    pub fn new() -> Self {
        Self::default()
    }

    fn edit(self, f: impl FnOnce(&mut PolicyInner)) -> Self {
        let mut inner = Arc::try_unwrap(self.0).unwrap_or_else(|shared| PolicyInner {
            scopes: shared.scopes.clone(),
            optional: shared.optional,
            service: shared.service.clone(),
            cost: shared.cost,
            buckets: std::sync::OnceLock::new(),
        });
        inner.buckets = std::sync::OnceLock::new();
        f(&mut inner);
        Self(Arc::new(inner))
    }

    /// Requires these scopes (all of them).
    pub fn require<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes = Scopes::new(scopes);
        self.edit(|p| p.scopes = Scopes::new(p.scopes.iter().chain(scopes.iter())))
    }

    /// Optional mode: a request with no keygate-formatted credential passes with no
    /// principal; one that looks like ours but fails is still refused.
    pub fn optional(self, optional: bool) -> Self {
        self.edit(|p| p.optional = optional)
    }

    /// Puts the route in a service with limits of its own, counted per key.
    pub fn service(self, name: &str, limits: impl Into<Vec<RateLimit>>) -> Self {
        let service = Service {
            name: name.into(),
            limits: limits.into(),
        };
        self.edit(|p| p.service = Some(service))
    }

    /// A fixed cost in micro-cents charged for each admitted request, unless the
    /// handler declares another.
    pub fn cost(self, micro_cents: u64) -> Self {
        self.edit(|p| p.cost = Some(micro_cents))
    }

    /// Required scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.0.scopes
    }

    /// Whether optional mode is on.
    pub fn is_optional(&self) -> bool {
        self.0.optional
    }

    /// The route's service, if any.
    pub fn service_limits(&self) -> Option<&Service> {
        self.0.service.as_ref()
    }

    /// The fixed cost, if any.
    pub fn fixed_cost(&self) -> Option<u64> {
        self.0.cost
    }

    /// The buckets a request on this route is counted in: `key_limits` (the gate's
    /// defaults or the key's own), then the service's. Cached for the gate's defaults.
    pub(crate) fn buckets(
        &self,
        gate_id: usize,
        key_limits: &[RateLimit],
        defaults: bool,
    ) -> Cow<'_, [Bucket]> {
        let build = || -> Vec<Bucket> {
            let key = key_limits.iter().map(|limit| Bucket {
                service: None,
                limit: *limit,
            });
            let service = self.0.service.iter().flat_map(|service| {
                service.limits.iter().map(|limit| Bucket {
                    service: Some(service.name.clone()),
                    limit: *limit,
                })
            });
            key.chain(service).collect()
        };
        if !defaults {
            return Cow::Owned(build());
        }
        match self.0.buckets.get() {
            Some((id, buckets)) if *id == gate_id => Cow::Borrowed(buckets),
            Some(_) => Cow::Owned(build()),
            None => Cow::Borrowed(
                &self
                    .0
                    .buckets
                    .get_or_init(|| (gate_id, build().into_boxed_slice()))
                    .1,
            ),
        }
    }
}

/// One counter a request is checked against: a key's window, overall or in a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// The service, or `None` for the key's own limits.
    pub service: Option<Arc<str>>,
    /// The window.
    pub limit: RateLimit,
}

/// The state of one window after a check, for the `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowState {
    /// The window's limit.
    pub limit: u32,
    /// The window's length in seconds (for `RateLimit-Policy`).
    pub period_secs: u64,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// When the window resets, in Unix seconds.
    pub reset_at: u64,
}

/// A limiter's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request is admitted (and was counted in every bucket).
    pub allowed: bool,
    /// The tightest window: the one that refused, or the one with the fewest requests
    /// left.
    pub tightest: WindowState,
    /// When refused: whole seconds until a retry can succeed, at least 1.
    pub retry_after: u64,
}

/// A limiter or meter could not answer.
#[derive(Debug, thiserror::Error)]
#[error("policy backend unavailable: {0}")]
pub struct BackendError(pub String);

/// Counts requests per key in windows. The in-memory and the Redis limiters implement
/// it with the same semantics, checked by one conformance suite.
pub trait RateLimiter: Send + Sync + 'static {
    /// Checks every bucket for `key_id` at `now` and, only if all admit, counts the
    /// request in each: all or nothing, atomically with respect to other calls. `now`
    /// is the request's time, read once by the gate.
    fn acquire(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> impl Future<Output = Result<RateDecision, BackendError>> + Send;

    /// The same answer without a future, for limiters that need no I/O (the in-memory
    /// one): the gate calls this first on every request and awaits [`acquire`] only on
    /// `None`, which saves a boxed future on the hot path. The default is `None`.
    ///
    /// It runs while the key's entry in the verified-key cache is read-locked: it must
    /// answer from memory, never block.
    ///
    /// [`acquire`]: RateLimiter::acquire
    fn acquire_now(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> Option<Result<RateDecision, BackendError>> {
        let _ = (key_id, buckets, now);
        None
    }
}

/// Object-safe form of [`RateLimiter`], for the gate.
pub trait DynRateLimiter: Send + Sync + 'static {
    /// See [`RateLimiter::acquire`].
    fn acquire<'a>(
        &'a self,
        key_id: &'a KeyId,
        buckets: &'a [Bucket],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<RateDecision, BackendError>>;

    /// See [`RateLimiter::acquire_now`].
    fn acquire_now(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> Option<Result<RateDecision, BackendError>>;
}

impl<L: RateLimiter> DynRateLimiter for L {
    fn acquire<'a>(
        &'a self,
        key_id: &'a KeyId,
        buckets: &'a [Bucket],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<RateDecision, BackendError>> {
        Box::pin(RateLimiter::acquire(self, key_id, buckets, now))
    }

    fn acquire_now(
        &self,
        key_id: &KeyId,
        buckets: &[Bucket],
        now: Timestamp,
    ) -> Option<Result<RateDecision, BackendError>> {
        RateLimiter::acquire_now(self, key_id, buckets, now)
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

/// Accumulates spend per key per UTC calendar month, in micro-cents.
pub trait SpendMeter: Send + Sync + 'static {
    /// What `key_id` has spent in `month`.
    fn spent(&self, key_id: &KeyId, month: Month) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// Adds `micro_cents` to `key_id`'s spend in `month` and returns the new total.
    /// Concurrent charges are never lost.
    fn charge(
        &self,
        key_id: &KeyId,
        month: Month,
        micro_cents: u64,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// [`spent`](SpendMeter::spent) without a future, for meters that need no I/O (the
    /// in-memory one); the gate awaits `spent` only on `None`, the default. Like
    /// [`RateLimiter::acquire_now`], it runs under the cache's read lock: memory only.
    fn spent_now(&self, key_id: &KeyId, month: Month) -> Option<Result<u64, BackendError>> {
        let _ = (key_id, month);
        None
    }
}

/// Object-safe form of [`SpendMeter`], for the gate.
pub trait DynSpendMeter: Send + Sync + 'static {
    /// See [`SpendMeter::spent`].
    fn spent<'a>(&'a self, key_id: &'a KeyId, month: Month) -> BoxFuture<'a, Result<u64, BackendError>>;
    /// See [`SpendMeter::charge`].
    fn charge<'a>(
        &'a self,
        key_id: &'a KeyId,
        month: Month,
        micro_cents: u64,
    ) -> BoxFuture<'a, Result<u64, BackendError>>;
    /// See [`SpendMeter::spent_now`].
    fn spent_now(&self, key_id: &KeyId, month: Month) -> Option<Result<u64, BackendError>>;
}

impl<M: SpendMeter> DynSpendMeter for M {
    fn spent<'a>(&'a self, key_id: &'a KeyId, month: Month) -> BoxFuture<'a, Result<u64, BackendError>> {
        Box::pin(SpendMeter::spent(self, key_id, month))
    }
    fn charge<'a>(
        &'a self,
        key_id: &'a KeyId,
        month: Month,
        micro_cents: u64,
    ) -> BoxFuture<'a, Result<u64, BackendError>> {
        Box::pin(SpendMeter::charge(self, key_id, month, micro_cents))
    }
    fn spent_now(&self, key_id: &KeyId, month: Month) -> Option<Result<u64, BackendError>> {
        SpendMeter::spent_now(self, key_id, month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn december_rolls_into_january() {
        let dec = Month::of("2026-12-31T23:59:59Z".parse().unwrap());
        assert_eq!(dec.next().start().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(dec.to_string(), "2026-12");
    }

    #[test]
    fn policies_accumulate_scopes() {
        let p = RoutePolicy::new().require(["read"]).require(["write"]);
        assert_eq!(p.scopes(), &Scopes::new(["read", "write"]));
    }
}
