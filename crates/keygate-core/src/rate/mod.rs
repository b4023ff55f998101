//! Rate limits: the [`RateLimiter`] trait and its types, the GCRA arithmetic
//! (`gcra.rs`, pure and tested there; `in_place.rs`, its fast path) and the in-memory limiter ([`MemoryRateLimiter`]).
//!
//! The Redis limiter (crate `keygate-redis`) implements the same trait with the same
//! semantics; one conformance suite (`keygate_core::conformance::limiter`, feature
//! `conformance`) checks both.

use std::future::Future;
use std::sync::Arc;

use crate::account::Holder;
use crate::backend::BackendError;
use crate::clock::Timestamp;
use crate::key::KeyId;
use crate::record::{OwnerId, RateLimit};
use crate::store::BoxFuture;

mod gcra;
mod in_place;
mod memory;

pub use memory::MemoryRateLimiter;

/// One counter a request is checked against: a key's window, overall or in a service,
/// or its owner's account-wide window.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// The service, or `None` for the key's own limits.
    pub service: Option<Arc<str>>,
    /// The window.
    pub limit: RateLimit,
    /// `Some(owner)`: the owner's account-wide counter, which every key of the owner
    /// counts in (the key id passed with it then only says who asks); `None`: the key's
    /// own. The account buckets of one call all name one owner.
    pub account: Option<OwnerId>,
}

impl Bucket {
    /// A window of the key's own.
    pub fn key(limit: RateLimit) -> Self {
        Self {
            service: None,
            limit,
            account: None,
        }
    }

    /// A window of the key's in `service`.
    pub fn service(service: impl Into<Arc<str>>, limit: RateLimit) -> Self {
        Self {
            service: Some(service.into()),
            limit,
            account: None,
        }
    }

    /// A window of `owner`'s account, shared by all its keys.
    pub fn account(owner: OwnerId, limit: RateLimit) -> Self {
        Self {
            service: None,
            limit,
            account: Some(owner),
        }
    }
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
    /// Whose window `tightest` is: the key's, or its owner's account-wide one (which
    /// then refused, when the request is refused).
    pub holder: Holder,
}

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
