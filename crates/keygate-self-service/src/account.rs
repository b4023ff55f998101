//! The account routes: `GET` shows the caller's owner's own limits (shared by all its
//! keys) and this month's spend of its keys together; `PUT` tightens them.
//!
//! An account may set itself a budget below what it has (a lower cap, a stricter or an
//! extra window), never a looser one: raising a cap or lifting a window is the
//! operator's (`keygate owners set`, or
//! [`KeyManager::set_owner_limits`](keygate_core::manage::KeyManager::set_owner_limits)),
//! so no dashboard user or admin key can undo the limits its plan was given.

use http::StatusCode;
use keygate_core::account::{spend_subject, OwnerLimits};
use keygate_core::spend::Month;
use keygate_core::{Denial, OwnerId, RateLimit};
use serde::{Deserialize, Deserializer, Serialize};

use crate::body::{bad, parse_json};
use crate::{ApiResponse, Caller, SelfService};

/// The body of `PUT /`: a field left out keeps its value; `null` lifts it (allowed only
/// where there is nothing to lift).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    #[serde(default, deserialize_with = "present")]
    rate_limits: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    spend_cap: Option<Option<u64>>,
}

/// A field that is present, `null` or not: `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// What the routes answer.
#[derive(Serialize)]
struct AccountView<'a> {
    owner: &'a OwnerId,
    rate_limits: Vec<String>,
    spend_cap: Option<u64>,
    /// The UTC month `spent` is counted in (`2026-12`).
    month: String,
    /// Micro-cents spent this month by all the owner's keys together (counted from when
    /// the owner first had limits).
    spent: u64,
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl SelfService {
    /// `GET /` of the account routes: the caller's owner's own limits and this month's
    /// spend of its keys together. Accounts and keys holding the manage scope.
    pub async fn account(&self, caller: &Caller) -> ApiResponse {
        let owner = match self.admit(caller) {
            Ok(manager) => manager.owner().clone(),
            Err(response) => return response,
        };
        match self.gate.keys().owner_limits(&owner).await {
            Ok(limits) => self.account_view(&owner, limits).await,
            Err(error) => self.failed(error),
        }
    }

    /// `PUT /` of the account routes: tightens the caller's owner's limits from a JSON
    /// body (`rate_limits`: `"100/min,10000/day"`; `spend_cap`: micro-cents). 200 with
    /// the limits as `GET` shows them; 400 for a malformed body; 403 when the result
    /// would be looser than what the owner has (a higher cap, a cap or a window lifted,
    /// a window widened).
    pub async fn set_account(&self, caller: &Caller, body: &[u8]) -> ApiResponse {
        let owner = match self.admit(caller) {
            Ok(manager) => manager.owner().clone(),
            Err(response) => return response,
        };
        let set = match parse_json::<SetBody>(body) {
            Ok(Some(set)) => set,
            Ok(None) => return self.deny(bad("a JSON body is required")),
            Err(denial) => return self.deny(denial),
        };
        let rate_limits = match set
            .rate_limits
            .map(|r| r.map(|text| RateLimit::parse_list(&text)))
        {
            None => None,
            Some(None) => Some(Vec::new()),
            Some(Some(Ok(limits))) => Some(limits),
            Some(Some(Err(error))) => return self.deny(bad(error)),
        };
        let keys = self.gate.keys();
        let current = match keys.owner_limits(&owner).await {
            Ok(current) => current.unwrap_or_else(|| OwnerLimits::new(owner.clone(), self.gate.now())),
            Err(error) => return self.failed(error),
        };
        let wanted = OwnerLimits {
            rate_limits: rate_limits.unwrap_or_else(|| current.rate_limits.clone()),
            spend_cap: set.spend_cap.unwrap_or(current.spend_cap),
            ..current.clone()
        };
        if !wanted.within(&current) {
            // As every escalation self-service refuses: 403, naming the manage scope.
            tracing::debug!(owner = %owner.as_str(), "account limits may only be tightened here");
            return self.deny(Denial::InsufficientScope {
                required: self.manage.clone(),
            });
        }
        match keys
            .set_owner_limits(&owner, wanted.rate_limits, wanted.spend_cap)
            .await
        {
            Ok(limits) => self.account_view(&owner, Some(limits)).await,
            Err(error) => self.failed(error),
        }
    }

    async fn account_view(&self, owner: &OwnerId, limits: Option<OwnerLimits>) -> ApiResponse {
        let month = Month::of(self.gate.now());
        let spent = match self.gate.spent(&spend_subject(owner), month).await {
            Ok(spent) => spent,
            Err(error) => {
                tracing::error!(%error, "could not read an account's spend");
                return self.deny(Denial::Unavailable { retry_after: 1 });
            }
        };
        let view = AccountView {
            owner,
            rate_limits: limits
                .as_ref()
                .map(|l| l.rate_limits.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            spend_cap: limits.as_ref().and_then(|l| l.spend_cap),
            month: month.to_string(),
            spent,
            updated_at: limits.as_ref().map(|l| l.updated_at),
        };
        self.json(StatusCode::OK, &view)
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use keygate_core::hash::Argon2Hasher;
    use keygate_core::spend::MemorySpendMeter;
    use keygate_core::{Cost, Gate, MemoryStore, NewKey, RoutePolicy};
    use serde_json::{json, Value};

    use crate::{Account, ApiResponse, Caller, SelfService};

    fn gate() -> Gate {
        Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .spend_meter(MemorySpendMeter::new())
            .build()
    }

    fn body(response: &ApiResponse) -> Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    async fn key_caller(gate: &Gate, new: NewKey) -> (Caller, http::HeaderMap) {
        let created = gate.keys().create(new).await.unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", created.key.expose_secret().parse().unwrap());
        let admitted = gate.admit(&headers, &RoutePolicy::new()).await.unwrap();
        (Caller::from(admitted.principal().unwrap().clone()), headers)
    }

    #[tokio::test]
    async fn an_account_sees_its_limits_and_the_spend_of_all_its_keys() {
        let gate = gate();
        let api = SelfService::new(gate.clone());
        let account = Caller::from(Account::new("acct_1"));
        let empty = api.account(&account).await;
        assert_eq!(empty.status(), StatusCode::OK);
        assert_eq!(body(&empty)["spend_cap"], Value::Null);
        assert_eq!(body(&empty)["rate_limits"], json!([]));

        let set = api
            .set_account(&account, br#"{"spend_cap":5000,"rate_limits":"100/min"}"#)
            .await;
        assert_eq!(set.status(), StatusCode::OK, "{:?}", body(&set));
        // Two keys spend; the account shows the sum, live from the gate's meter.
        for name in ["a", "b"] {
            let (_, headers) = key_caller(&gate, NewKey::new("acct_1", name)).await;
            let admission = gate.admit(&headers, &RoutePolicy::new()).await.unwrap();
            gate.settle(&admission, Some(Cost(700))).await;
        }
        let shown = body(&api.account(&account).await);
        assert_eq!(shown["owner"], "acct_1");
        assert_eq!(shown["spend_cap"], 5000);
        assert_eq!(shown["rate_limits"], json!(["100/min"]));
        assert_eq!(shown["spent"], 1400);
        assert_eq!(shown["month"].as_str().unwrap().len(), 7);
    }

    #[tokio::test]
    async fn limits_can_be_tightened_here_but_never_loosened() {
        let gate = gate();
        let owner = keygate_core::OwnerId::new("acct_1");
        // The operator's limits: what the plan gives.
        gate.keys()
            .set_owner_limits(&owner, vec!["100/min".parse().unwrap()], Some(5000))
            .await
            .unwrap();
        let api = SelfService::new(gate.clone());
        let account = Caller::from(Account::new("acct_1"));
        let (admin, _) = key_caller(&gate, NewKey::new("acct_1", "admin").scopes(["admin"])).await;
        for (caller, attack) in [
            (&account, &br#"{"spend_cap":50000}"#[..]),
            (&account, br#"{"spend_cap":null}"#),
            (&account, br#"{"rate_limits":null}"#),
            (&account, br#"{"rate_limits":"1000/min"}"#),
            (&account, br#"{"rate_limits":"100/hour"}"#),
            (&admin, br#"{"spend_cap":5001}"#),
        ] {
            let refused = api.set_account(caller, attack).await;
            assert_eq!(
                refused.status(),
                StatusCode::FORBIDDEN,
                "{}",
                String::from_utf8_lossy(attack)
            );
        }
        let kept = gate.keys().owner_limits(&owner).await.unwrap().unwrap();
        assert_eq!((kept.spend_cap, kept.rate_limits.len()), (Some(5000), 1));

        let tighter = api
            .set_account(&admin, br#"{"spend_cap":1000,"rate_limits":"50/min,1000/day"}"#)
            .await;
        assert_eq!(tighter.status(), StatusCode::OK);
        assert_eq!(body(&tighter)["rate_limits"], json!(["50/min", "1000/day"]));
        // And back up is loosening again.
        let back = api.set_account(&account, br#"{"spend_cap":5000}"#).await;
        assert_eq!(back.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn keys_without_the_manage_scope_and_bad_bodies_are_refused() {
        let gate = gate();
        let api = SelfService::new(gate.clone());
        let (reader, _) = key_caller(&gate, NewKey::new("acct_1", "reader").scopes(["read"])).await;
        assert_eq!(api.account(&reader).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            api.set_account(&reader, br#"{"spend_cap":1}"#).await.status(),
            StatusCode::FORBIDDEN
        );
        let account = Caller::from(Account::new("acct_1"));
        for bad in [
            &b"{"[..],
            b"",
            br#"{"spend_cap":-1}"#,
            br#"{"rate_limits":"10/fortnight"}"#,
            br#"{"plan":"enterprise"}"#,
        ] {
            let refused = api.set_account(&account, bad).await;
            assert_eq!(
                refused.status(),
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
