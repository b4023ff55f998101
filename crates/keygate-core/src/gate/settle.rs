//! After the decision: the [`Admission`] an adapter splits into the principal and the
//! [`After`] it keeps for the response, which [`After::finish`] turns into the headers
//! to add and the [`Charge`] to await.

use std::fmt;
use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::Poll;

use http::HeaderMap;

use super::Gate;
use crate::background::UsageCell;
use crate::clock::Timestamp;
use crate::headers::RateHeaders;
use crate::key::KeyId;
use crate::principal::Principal;
use crate::spend::{Cost, Month};

/// An admitted request: the principal (none in optional mode without a credential) and
/// what to do once the handler has answered.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    pub(super) principal: Option<Principal>,
    pub(super) after: After,
}

impl Admission {
    /// The authenticated caller; `None` only in optional mode without a credential.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// The rate-limit headers the response gets, if any.
    pub fn rate_headers(&self) -> Option<&RateHeaders> {
        self.after.rate.as_ref()
    }

    /// The same headers, collected in a map.
    pub fn headers(&self) -> HeaderMap {
        self.after.rate.iter().flat_map(RateHeaders::pairs).collect()
    }

    /// The principal, for the request's extensions, and what the adapter keeps for the
    /// response. The principal moves: nothing after the handler needs it.
    pub fn into_parts(self) -> (Option<Principal>, After) {
        (self.principal, self.after)
    }
}

/// What an adapter does once the handler has answered: [`finish`](Self::finish).
#[derive(Clone, Debug, Default)]
pub struct After {
    pub(super) rate: Option<RateHeaders>,
    /// Set when the gate meters spend and a key was admitted.
    pub(super) charge: Option<Pending>,
}

/// The charge an admitted request may owe, before the handler has declared its cost.
#[derive(Clone)]
pub(super) struct Pending {
    pub(super) gate: Gate,
    pub(super) key_id: KeyId,
    /// The owner's metered id ([`spend_subject`](crate::account::spend_subject)) when
    /// the owner has limits: the account is charged with the key.
    pub(super) account: Option<KeyId>,
    /// The key's usage cell, when usage is kept: the charge joins its daily usage.
    pub(super) usage: Option<Arc<UsageCell>>,
    /// The route's fixed cost, charged when the handler declares none.
    pub(super) fixed: Option<u64>,
    /// When the request was admitted: its spend belongs to that month, whenever the
    /// handler answers.
    pub(super) at: Timestamp,
}

impl Pending {
    /// The cost due for a response of `status`: the handler's declared one, else the
    /// route's fixed one unless the handler failed (5xx); never 0.
    fn due(&self, status: u16, declared: Option<Cost>) -> Option<u64> {
        let cost = match declared {
            Some(declared) => declared.0,
            None if status >= 500 => return None,
            None => self.fixed?,
        };
        (cost > 0).then_some(cost)
    }

    /// The charge of `cost`, in the month the request was admitted in.
    fn charge(self, cost: u64) -> Charge {
        Charge {
            month: Month::of(self.at.to_datetime()),
            gate: self.gate,
            key_id: self.key_id,
            account: self.account,
            usage: self.usage,
            at: self.at,
            cost,
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("key_id", &self.key_id)
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

/// What [`After::finish`] gives: the headers to add, and the charge to await.
#[derive(Debug)]
pub struct Finish {
    /// The rate-limit headers to add to the response.
    pub headers: Option<RateHeaders>,
    /// The spend to record before the response leaves; `None` when nothing is due.
    pub charge: Option<Charge>,
}

impl After {
    /// Nothing to do after the handler: no headers, nothing to charge. An adapter may
    /// then return the handler's own future.
    pub fn is_empty(&self) -> bool {
        self.rate.is_none() && self.charge.is_none()
    }

    /// Step two of the adapter protocol, once the handler has answered with `status`.
    /// `declared` reads the handler's [`Cost`] (a response extension); it is called only
    /// when a charge may be due, so a gate that meters nothing reads no extension. A
    /// handler that failed (5xx) is not charged the route's fixed cost; a cost it
    /// declares is charged, as declared.
    #[inline]
    pub fn finish(self, status: u16, declared: impl FnOnce() -> Option<Cost>) -> Finish {
        let charge = self.charge.and_then(|pending| {
            let cost = pending.due(status, declared())?;
            Some(pending.charge(cost))
        });
        Finish {
            headers: self.rate,
            charge,
        }
    }
}

/// Spend to record for an admitted request: the handler's declared cost, or the route's
/// fixed cost. Await [`apply`](Self::apply) before the response leaves.
pub struct Charge {
    gate: Gate,
    key_id: KeyId,
    account: Option<KeyId>,
    usage: Option<Arc<UsageCell>>,
    /// When the request was admitted.
    at: Timestamp,
    /// The month the request was admitted in.
    month: Month,
    cost: u64,
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Charge")
            .field("key_id", &self.key_id)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl Charge {
    /// The micro-cents to charge.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// Adds the cost to the key's spend this month, and to its owner's when the owner
    /// has limits. A meter that fails is logged, never turned into an error response:
    /// the request has already been served.
    ///
    /// The charge lands whole even if this future is dropped (the client hung up while
    /// its request was being charged): most charges land on their first poll (a meter in
    /// memory); one that waits on I/O (Redis, the store's first read of a month) goes on
    /// in a task of its own, so neither the key's charge nor its account's is lost.
    pub async fn apply(self) {
        if self.gate.inner.meter.is_none() {
            return;
        }
        let mut charge = Box::pin(self.land());
        if poll_fn(|cx| Poll::Ready(charge.as_mut().poll(cx).is_ready())).await {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // A charge that panicked has been reported by the panic hook.
                let _ = runtime.spawn(charge).await;
            }
            Err(_) => charge.await,
        }
    }

    async fn land(self) {
        let Some(meter) = &self.gate.inner.meter else {
            return;
        };
        if let Err(error) = meter.charge(&self.key_id, self.month, self.cost).await {
            tracing::error!(key_id = %self.key_id, %error, "could not record spend");
        }
        if let Some(account) = &self.account {
            if let Err(error) = meter.charge(account, self.month, self.cost).await {
                tracing::error!(key_id = %self.key_id, %error, "could not record the account's spend");
            }
        }
        if let (Some(usage), Some(cell)) = (&self.gate.inner.usage, &self.usage) {
            usage.charged(cell, self.cost, self.at);
        }
    }
}

impl Gate {
    /// Charges an admitted request that succeeded: the handler's declared cost, or the
    /// route's fixed cost, in the month it was admitted in. For code that calls the gate
    /// directly; adapters use [`After::finish`], which also knows the response's status.
    pub async fn settle(&self, admission: &Admission, declared: Option<Cost>) {
        let Some(pending) = admission.after.charge.clone() else {
            return;
        };
        if let Some(cost) = pending.due(200, declared) {
            pending.charge(cost).apply().await;
        }
    }
}
