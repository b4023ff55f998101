//! Who may manage keys, and how far: the rules that keep self-service from handing out,
//! or taking away, a key stronger than its caller.
//!
//! Two kinds of caller get past the door ([`Manager::admit`]): an **account**, an owner id
//! the host's own authentication established, with full rights over its owner's keys;
//! and an **API key that holds the manage scope** (`admin` unless
//! [`SelfService::manage_scope`](crate::SelfService::manage_scope) says otherwise; with
//! `admin_grants_all`, an `admin` key holds any manage scope). A key without it gets 403
//! naming the manage scope on every route; a request with neither gets the gate's 401.
//!
//! A key caller, `admin` included, never makes a key stronger than itself. What it asks
//! for beyond its own reach is refused with 403; what it leaves out is narrowed to its
//! own reach, silently:
//!
//! | the new key's | account | key with the manage scope |
//! | --- | --- | --- |
//! | scopes | any | only scopes the caller holds (`admin` holds every scope unless `admin_grants_all(false)`); else 403 naming the missing ones |
//! | environment | any (default `live`) | the caller's (the default); another: 403 |
//! | expiry | any | no later than the caller's; none asked: the caller's |
//! | spend cap | any | no higher than the caller's; none asked: the caller's |
//! | rate limits | any | no looser than the caller's own limits, window by window; none asked: the caller's. A caller on the gate's defaults cannot set limits of its own: whether they are tighter than the defaults is not the API's to know |
//! | metadata (at most 4 KiB) | any | set only by a key holding the manage scope |
//!
//! Rotation hands out a new plaintext of an existing key and revocation ends one, so a
//! key caller may rotate or revoke only a key no stronger than itself, checked with the
//! same table: the key's scopes, environment, expiry (for a rotation, the replacement's:
//! now plus the old key's lifetime), spend cap and rate limits. A key on the gate's
//! default limits is stronger than a caller with limits of its own. Every refusal but
//! the scopes' names the manage scope (403 `INSUFFICIENT_PERMISSIONS`).

use std::fmt;

use chrono::{DateTime, Utc};
use keygate_core::key::Environment;
use keygate_core::record::{KeyRecord, OwnerId};
use keygate_core::{Denial, NewKey, Principal, RateLimit, Scopes};

use crate::caller::{Caller, Who};

/// A caller allowed in, and what bounds it.
pub(crate) struct Manager<'a> {
    owner: &'a OwnerId,
    /// The key whose reach bounds what this caller does; `None` for an account.
    key: Option<&'a Principal>,
    manage: &'a Scopes,
    admin_grants_all: bool,
}

/// Why a caller is not let in.
pub(crate) enum Refused {
    /// Neither an account nor a key: the gate's own 401.
    Nobody,
    /// A key without the manage scope: 403.
    Denied(Denial),
}

impl<'a> Manager<'a> {
    /// Lets in an account, or a key holding `manage`.
    pub(crate) fn admit(
        caller: &'a Caller,
        manage: &'a Scopes,
        admin_grants_all: bool,
    ) -> Result<Self, Refused> {
        let (owner, key) = match &caller.0 {
            Who::Account(account) => (account.owner(), None),
            Who::Key(key) => (key.owner(), Some(key)),
            Who::Nobody => return Err(Refused::Nobody),
        };
        let manager = Self {
            owner,
            key,
            manage,
            admin_grants_all,
        };
        match key {
            Some(key) if !key.scopes().covers(manage, admin_grants_all) => {
                tracing::debug!(caller = %manager, "self-service refused: no manage scope");
                Err(Refused::Denied(manager.needs_manage()))
            }
            _ => Ok(manager),
        }
    }

    /// The owner whose keys this caller manages.
    pub(crate) fn owner(&self) -> &'a OwnerId {
        self.owner
    }

    /// The environment of a new key that names none: the key caller's own.
    pub(crate) fn environment(&self) -> Option<Environment> {
        self.key.map(Principal::environment)
    }

    /// Only an account, or a key holding the manage scope, sets metadata (which handlers
    /// read as application data).
    fn may_set_metadata(&self) -> bool {
        self.key
            .is_none_or(|key| key.scopes().covers(self.manage, self.admin_grants_all))
    }

    /// `new`, narrowed to a key caller's reach, or the 403 for what exceeds it.
    pub(crate) fn within_reach(&self, mut new: NewKey) -> Result<NewKey, Denial> {
        if new.metadata.is_some() && !self.may_set_metadata() {
            return Err(self.refuse("metadata"));
        }
        let Some(key) = self.key else {
            return Ok(new);
        };
        self.may_grant(&new.scopes)?;
        if new.environment != key.environment() {
            return Err(self.refuse("environment"));
        }
        if let Some(limit) = key.expires_at() {
            match new.expires_at {
                Some(at) if at > limit => return Err(self.refuse("expiry")),
                Some(_) => {}
                None => new.expires_at = Some(limit),
            }
        }
        if let Some(cap) = key.spend_cap() {
            match new.spend_cap {
                Some(asked) if asked > cap => return Err(self.refuse("spend cap")),
                Some(_) => {}
                None => new.spend_cap = Some(cap),
            }
        }
        match (key.rate_limits(), new.rate_limits.as_deref()) {
            (Some(mine), Some(asked)) if !no_looser(asked, mine) => return Err(self.refuse("rate limits")),
            (None, Some(_)) => return Err(self.refuse("rate limits")),
            (Some(mine), None) => new.rate_limits = Some(mine.to_vec()),
            _ => {}
        }
        Ok(new)
    }

    /// Whether a key caller may rotate or revoke `record`, whose key lives until
    /// `expires_at` (for a rotation, the replacement's expiry): only when it is no
    /// stronger than the caller.
    pub(crate) fn may_replace(
        &self,
        record: &KeyRecord,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), Denial> {
        let Some(key) = self.key else {
            return Ok(());
        };
        self.may_grant(&record.scopes)?;
        let lives_longer = match (key.expires_at(), expires_at) {
            (Some(limit), Some(at)) => at > limit,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let spends_more = match (key.spend_cap(), record.spend_cap) {
            (Some(cap), Some(theirs)) => theirs > cap,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let looser = match (key.rate_limits(), record.rate_limits.as_deref()) {
            (Some(mine), Some(theirs)) => !no_looser(theirs, mine),
            // The gate's defaults against limits of its own: either may be the looser.
            (Some(_), None) | (None, Some(_)) => true,
            (None, None) => false,
        };
        let stronger = [
            (record.environment != key.environment(), "environment"),
            (lives_longer, "expiry"),
            (spends_more, "spend cap"),
            (looser, "rate limits"),
        ];
        match stronger.into_iter().find(|(stronger, _)| *stronger) {
            Some((_, what)) => Err(self.refuse(what)),
            None => Ok(()),
        }
    }

    /// 403 naming the scopes of `wanted` that a key caller may not hand out.
    fn may_grant(&self, wanted: &Scopes) -> Result<(), Denial> {
        let Some(key) = self.key else {
            return Ok(());
        };
        let missing = key.scopes().missing(wanted, self.admin_grants_all);
        if missing.is_empty() {
            return Ok(());
        }
        tracing::debug!(caller = %self, missing = %missing, "self-service scope escalation refused");
        Err(Denial::InsufficientScope { required: missing })
    }

    fn refuse(&self, what: &str) -> Denial {
        tracing::debug!(caller = %self, what, "self-service escalation refused");
        self.needs_manage()
    }

    fn needs_manage(&self) -> Denial {
        Denial::InsufficientScope {
            required: self.manage.clone(),
        }
    }
}

/// For logs: the key id, or the account's owner. Never a secret.
impl fmt::Display for Manager<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key {
            Some(key) => write!(f, "key {}", key.key_id()),
            None => write!(f, "account {}", self.owner),
        }
    }
}

/// Whether `theirs` lets through no more than `mine`: each window of `mine` is matched
/// by a window of `theirs` that admits no more requests in that window's length.
pub(crate) fn no_looser(theirs: &[RateLimit], mine: &[RateLimit]) -> bool {
    mine.iter().all(|m| theirs.iter().any(|t| admits_at_most(t, m)))
}

/// Whether `t` admits at most `m.limit` requests in `m.period`: `t.limit` in each of the
/// windows of `t` that `m.period` spans, counting a partial window as whole.
fn admits_at_most(t: &RateLimit, m: &RateLimit) -> bool {
    let (theirs, mine) = (t.period.as_nanos(), m.period.as_nanos());
    if theirs == 0 {
        return false;
    }
    u128::from(t.limit).saturating_mul(mine.div_ceil(theirs)) <= u128::from(m.limit)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use keygate_core::hash::Argon2Hasher;
    use keygate_core::{Gate, MemoryStore, RoutePolicy};

    use super::*;
    use crate::SelfService;

    async fn caller(gate: &Gate, new: NewKey) -> Caller {
        let created = gate.keys().create(new).await.unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", created.key.expose_secret().parse().unwrap());
        let admitted = gate.admit(&headers, &RoutePolicy::new()).await.unwrap();
        Caller::from(admitted.principal().unwrap().clone())
    }

    fn json(response: &crate::ApiResponse) -> serde_json::Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn limits_are_no_looser_when_every_window_is_matched() {
        let per_min = |n| RateLimit::per_minute(n);
        assert!(no_looser(&[per_min(5)], &[per_min(5)]));
        assert!(no_looser(&[per_min(1)], &[per_min(5)]));
        assert!(!no_looser(&[per_min(6)], &[per_min(5)]));
        // 1/s lets 60 through in a minute.
        assert!(!no_looser(&[RateLimit::per_second(1)], &[per_min(5)]));
        assert!(no_looser(&[RateLimit::per_second(1)], &[per_min(60)]));
        // A longer window with as few requests is tighter.
        assert!(no_looser(&[RateLimit::per_hour(5)], &[per_min(5)]));
        assert!(no_looser(
            &[per_min(5), RateLimit::per_hour(100)],
            &[per_min(10), RateLimit::per_hour(100)]
        ));
        assert!(!no_looser(
            &[per_min(5)],
            &[per_min(10), RateLimit::per_hour(100)]
        ));
        // No windows at all is unlimited.
        assert!(!no_looser(&[], &[per_min(5)]));
        assert!(no_looser(&[per_min(5)], &[]));
        assert!(!no_looser(&[RateLimit::new(1, Duration::ZERO)], &[per_min(5)]));
    }

    #[tokio::test]
    async fn a_key_never_mints_a_key_stronger_than_itself_and_an_account_is_not_bounded() {
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .build();
        let expires = gate.now() + chrono::Duration::days(1);
        let capped = caller(
            &gate,
            NewKey::new("acct_1", "ci")
                .scopes(["read", "admin"])
                .environment(Environment::Test)
                .expires_at(expires)
                .spend_cap(1000)
                .rate_limits([RateLimit::per_minute(5)]),
        )
        .await;
        let api = SelfService::new(gate.clone());
        for (body, what) in [
            (r#"{"name":"x","environment":"live"}"#, "a live key"),
            (r#"{"name":"x","expires_in":"30d"}"#, "a longer life"),
            (r#"{"name":"x","spend_cap":5000}"#, "a higher cap"),
            (r#"{"name":"x","rate_limits":"1000/min"}"#, "looser limits"),
        ] {
            let refused = api.create(&capped, body.as_bytes()).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{what}");
            assert_eq!(
                json(&refused)["error"]["details"]["required"],
                serde_json::json!(["admin"])
            );
        }
        // What it may do, it gets narrowed to its own reach.
        let made = api
            .create(&capped, br#"{"name":"child","scopes":["read"]}"#)
            .await;
        assert_eq!(made.status(), StatusCode::CREATED);
        let body = json(&made);
        assert_eq!(body["environment"], "test");
        assert_eq!(body["spend_cap"], 1000);
        assert_eq!(body["rate_limits"][0]["limit"], 5);
        let child_expiry: DateTime<Utc> = body["expires_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(child_expiry, expires);

        // Nor may it rotate or revoke a stronger key of its owner.
        let account = Caller::from(crate::Account::new("acct_1"));
        let live = api
            .create(
                &account,
                br#"{"name":"prod","scopes":["read"],"environment":"live"}"#,
            )
            .await;
        assert_eq!(live.status(), StatusCode::CREATED);
        let live = json(&live);
        let path = live["key_id"].as_str().unwrap();
        assert_eq!(
            api.rotate(&capped, path, b"").await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(api.revoke(&capped, path).await.status(), StatusCode::FORBIDDEN);

        // An account is not narrowed.
        let made = api
            .create(
                &account,
                br#"{"name":"live","environment":"live","rate_limits":"1000/min","metadata":{"plan":"pro"}}"#,
            )
            .await;
        assert_eq!(made.status(), StatusCode::CREATED);
        assert_eq!(json(&made)["metadata"]["plan"], "pro");
        assert_eq!(api.revoke(&account, path).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_configured_manage_scope_is_the_one_required() {
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .admin_grants_all(false)
            .build();
        let api = SelfService::new(gate.clone()).manage_scope("keys:manage");
        let manager = caller(
            &gate,
            NewKey::new("acct_1", "ops").scopes(["keys:manage", "read"]),
        )
        .await;
        let admin = caller(&gate, NewKey::new("acct_1", "root").scopes(["admin"])).await;

        assert_eq!(
            api.list(&manager, Default::default()).await.status(),
            StatusCode::OK
        );
        // Without `admin_grants_all`, `admin` is one scope among others.
        let refused = api.list(&admin, Default::default()).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            json(&refused)["error"]["details"]["required"],
            serde_json::json!(["keys:manage"])
        );
        let made = api
            .create(
                &manager,
                br#"{"name":"meta","scopes":["read"],"metadata":{"a":1}}"#,
            )
            .await;
        assert_eq!(made.status(), StatusCode::CREATED);
    }
}
