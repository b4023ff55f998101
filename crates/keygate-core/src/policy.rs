//! What a route requires: [`RoutePolicy`] (scopes, optional mode, a fixed cost) and the
//! [`ServiceLimits`] of the group of routes it belongs to.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::rate::Bucket;
use crate::record::{RateLimit, Scopes};

/// A group of routes with rate limits of its own ("translation": 100/min).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLimits {
    /// The service name; counters are kept per key and service.
    pub name: Arc<str>,
    /// The service's windows.
    pub limits: Vec<RateLimit>,
}

#[derive(Debug, Default)]
struct PolicyInner {
    scopes: Scopes,
    optional: bool,
    free: bool,
    service: Option<ServiceLimits>,
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
///     .limits_for("chat", [RateLimit::per_minute(50)])
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
            free: shared.free,
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

    /// A free route: served past a spend cap (the key's or its owner's), and never
    /// charged. For keygate's own routes (key management, the account's view of its
    /// spend), which a key at its cap must still reach; rate limits still apply.
    pub fn free(self, free: bool) -> Self {
        self.edit(|p| p.free = free)
    }

    /// Whether the route is free ([`free`](Self::free)).
    pub fn is_free(&self) -> bool {
        self.0.free
    }

    /// Puts the route in a service with limits of its own ("chat": 50/min), counted per
    /// key.
    pub fn limits_for(self, name: &str, limits: impl Into<Vec<RateLimit>>) -> Self {
        let service = ServiceLimits {
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
    pub fn service_limits(&self) -> Option<&ServiceLimits> {
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
                account: None,
            });
            let service = self.0.service.iter().flat_map(|service| {
                service.limits.iter().map(|limit| Bucket {
                    service: Some(service.name.clone()),
                    limit: *limit,
                    account: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_accumulate_scopes() {
        let p = RoutePolicy::new().require(["read"]).require(["write"]);
        assert_eq!(p.scopes(), &Scopes::new(["read", "write"]));
    }
}
