//! Accounts: an owner's own rate limits and monthly spend cap, shared by all its keys
//! ([`OwnerLimits`]), so that minting keys never multiplies a budget.
//!
//! A request counts against its key's limits and its owner's, all or nothing, through
//! the gate's one [`RateLimiter`](crate::rate::RateLimiter) and one
//! [`SpendMeter`](crate::spend::SpendMeter) (so a Redis limiter shares an account's
//! windows across instances too):
//!
//! - an owner's windows are [`Bucket`](crate::rate::Bucket)s whose `account` names the
//!   owner; the limiter keeps one counter per (owner, service, period) that every key of
//!   the owner counts in;
//! - an owner's month of spend is metered under [`spend_subject`], an id no key can have;
//! - a 402 or 429 caused by the account says so ([`Holder::Account`]): `"limit":
//!   "account"` in the body, where a key's own refusal keeps its documented bytes.
//!
//! The limits are kept by the key store ([`KeyStore::owner_limits`]), set with
//! [`KeyManager::set_owner_limits`], the `keygate owners set` command or the self-service
//! account route, and read with the key on its cold verification: a change puts every
//! key of the owner on the change feed, so each instance re-reads them.
//!
//! [`KeyStore::owner_limits`]: crate::store::KeyStore::owner_limits
//! [`KeyManager::set_owner_limits`]: crate::manage::KeyManager::set_owner_limits

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::key::KeyId;
use crate::record::{OwnerId, RateLimit};

/// An owner's (account's) own limits, shared by all its keys. Unlike a key's
/// `rate_limits`, empty means none: an account without windows of its own is limited by
/// its keys' alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerLimits {
    /// The account.
    pub owner: OwnerId,
    /// Windows every key of the owner counts in together (`100/min`, `10000/day`).
    pub rate_limits: Vec<RateLimit>,
    /// The owner's monthly spend cap in micro-cents, across all its keys; `None` is
    /// uncapped.
    pub spend_cap: Option<u64>,
    /// When the limits were last set.
    pub updated_at: DateTime<Utc>,
}

impl OwnerLimits {
    /// No limits for `owner` (yet), set at `at`.
    pub fn new(owner: impl Into<OwnerId>, at: DateTime<Utc>) -> Self {
        Self {
            owner: owner.into(),
            rate_limits: Vec::new(),
            spend_cap: None,
            updated_at: at,
        }
    }

    /// Whether there is anything to enforce: a window or a cap.
    pub fn is_empty(&self) -> bool {
        self.rate_limits.is_empty() && self.spend_cap.is_none()
    }

    /// Whether `self` is nowhere looser than `other`: no cap where `other` has one, no
    /// larger cap, and every window of `other` matched by one of `self`'s of the same
    /// period with no larger limit. What an account may set for itself (it may
    /// tighten its budget, never loosen it).
    pub fn within(&self, other: &OwnerLimits) -> bool {
        let cap_ok = match (self.spend_cap, other.spend_cap) {
            (_, None) => true,
            (Some(mine), Some(theirs)) => mine <= theirs,
            (None, Some(_)) => false,
        };
        cap_ok
            && other.rate_limits.iter().all(|theirs| {
                self.rate_limits
                    .iter()
                    .any(|mine| mine.period == theirs.period && mine.limit <= theirs.limit)
            })
    }
}

/// Whose limit decided: the key's own, or its owner's account-wide one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Holder {
    /// The key's own window or cap.
    #[default]
    Key,
    /// The owner's, shared by all its keys.
    Account,
}

/// The id under which an owner's month of spend is metered and recorded. It starts
/// with a control character, which no presented key can hold (header values exclude
/// them), so it never meets a key id.
pub fn spend_subject(owner: &OwnerId) -> KeyId {
    KeyId::new(format!("\u{1}account:{}", owner.as_str()))
}

/// Whether a metered id is an account's ([`spend_subject`]) rather than a key's.
pub fn is_account_subject(id: &KeyId) -> bool {
    id.as_str().starts_with('\u{1}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rates: &[&str], cap: Option<u64>) -> OwnerLimits {
        OwnerLimits {
            owner: OwnerId::new("acct"),
            rate_limits: rates.iter().map(|r| r.parse().unwrap()).collect(),
            spend_cap: cap,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn tighter_limits_are_within_and_looser_ones_are_not() {
        let set = limits(&["100/min"], Some(5000));
        assert!(limits(&["50/min"], Some(1000)).within(&set));
        assert!(limits(&["100/min", "10/s"], Some(5000)).within(&set));
        assert!(!limits(&["200/min"], Some(1000)).within(&set), "a larger window");
        assert!(!limits(&["100/min"], Some(5001)).within(&set), "a larger cap");
        assert!(!limits(&["100/min"], None).within(&set), "the cap removed");
        assert!(!limits(&[], Some(5000)).within(&set), "the window removed");
        assert!(!limits(&["100/hour"], Some(5000)).within(&set), "another period");
        assert!(limits(&[], None).within(&limits(&[], None)));
    }

    #[test]
    fn an_account_subject_is_never_a_key_id() {
        let subject = spend_subject(&OwnerId::new("kg_live_a1b2c3d4"));
        assert!(is_account_subject(&subject));
        assert!(!is_account_subject(&KeyId::from("kg_live_a1b2c3d4")));
        assert!(http::HeaderValue::from_str(subject.as_str()).is_err());
    }
}
