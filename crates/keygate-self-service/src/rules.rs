//! The rules that keep self-service from minting a key stronger than its caller: the
//! scopes it may hand out, what a new key inherits, and which keys it may rotate.

use keygate_core::record::KeyRecord;
use keygate_core::{Denial, NewKey, Principal, RateLimit, Scopes};

/// A key made by a non-admin caller gets no more than the caller has: the same
/// environment (a test key cannot mint live keys), no later expiry, no higher spend cap,
/// and the caller's own rate limits (only an admin sets limits). What cannot be
/// narrowed silently is refused with 403, naming `admin`.
pub(crate) fn within_caller(caller: &Principal, mut new: NewKey) -> Result<NewKey, Denial> {
    if caller.has_scope(Scopes::ADMIN) {
        return Ok(new);
    }
    let needs_admin = |what: &str| {
        tracing::debug!(key_id = %caller.key_id(), what, "self-service escalation refused");
        Denial::InsufficientScope {
            required: Scopes::new([Scopes::ADMIN]),
        }
    };
    if new.environment != caller.environment() {
        return Err(needs_admin("environment"));
    }
    if let Some(limit) = caller.expires_at() {
        match new.expires_at {
            Some(at) if at > limit => return Err(needs_admin("expiry")),
            Some(_) => {}
            None => new.expires_at = Some(limit),
        }
    }
    if let Some(cap) = caller.spend_cap() {
        match new.spend_cap {
            Some(asked) if asked > cap => return Err(needs_admin("spend cap")),
            Some(_) => {}
            None => new.spend_cap = Some(cap),
        }
    }
    if new.rate_limits.is_some() {
        return Err(needs_admin("rate limits"));
    }
    new.rate_limits = caller.rate_limits().map(<[RateLimit]>::to_vec);
    Ok(new)
}

/// Whether rotating `record` (which hands out a new plaintext with its environment,
/// lifetime, cap and limits) gives a non-admin `caller` nothing it does not have.
pub(crate) fn no_stronger(
    caller: &Principal,
    record: &KeyRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    if caller.has_scope(Scopes::ADMIN) {
        return true;
    }
    let new_expiry = record
        .expires_at
        .and_then(|at| now.checked_add_signed(at - record.created_at));
    let lives_longer = match (caller.expires_at(), new_expiry) {
        (Some(limit), Some(at)) => at > limit,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let spends_more = match (caller.spend_cap(), record.spend_cap) {
        (Some(cap), Some(theirs)) => theirs > cap,
        (Some(_), None) => true,
        (None, _) => false,
    };
    record.environment == caller.environment()
        && !lives_longer
        && !spends_more
        && (record.rate_limits.is_none() || record.rate_limits.as_deref() == caller.rate_limits())
}

/// The scopes of `wanted` that `caller` may not hand out: none for an `admin` caller.
pub(crate) fn escalation(caller: &Principal, wanted: &Scopes) -> Option<Scopes> {
    if caller.has_scope(Scopes::ADMIN) {
        return None;
    }
    let missing = caller.scopes().missing(wanted, false);
    (!missing.is_empty()).then_some(missing)
}

#[cfg(test)]
mod tests {
    use keygate_core::hash::Argon2Hasher;
    use keygate_core::key::Environment;
    use keygate_core::{Gate, MemoryStore, RoutePolicy};

    use super::*;
    use crate::SelfService;

    async fn caller(gate: &Gate, new: NewKey) -> Principal {
        let created = gate.keys().create(new).await.unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", created.key.expose_secret().parse().unwrap());
        let admitted = gate.admit(&headers, &RoutePolicy::new()).await.unwrap();
        admitted.principal().unwrap().clone()
    }

    #[tokio::test]
    async fn a_key_never_mints_a_key_stronger_than_itself() {
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .build();
        let expires = gate.now() + chrono::Duration::days(1);
        let test_key = caller(
            &gate,
            NewKey::new("acct_1", "ci")
                .scopes(["read"])
                .environment(Environment::Test)
                .expires_at(expires)
                .spend_cap(1000)
                .rate_limits([RateLimit::per_minute(5)]),
        )
        .await;
        let api = SelfService::new(gate.clone());
        for (body, what) in [
            (
                r#"{"name":"x","scopes":["read"],"environment":"live"}"#,
                "a live key",
            ),
            (
                r#"{"name":"x","scopes":["read"],"expires_in":"30d"}"#,
                "a longer life",
            ),
            (
                r#"{"name":"x","scopes":["read"],"spend_cap":5000}"#,
                "a higher cap",
            ),
            (
                r#"{"name":"x","scopes":["read"],"rate_limits":"1000/min"}"#,
                "its own limits",
            ),
        ] {
            let refused = api.create(&test_key, body.as_bytes()).await;
            assert_eq!(refused.status(), http::StatusCode::FORBIDDEN, "{what}");
        }
        // What it may do, it gets narrowed to its own reach.
        let made = api
            .create(&test_key, br#"{"name":"child","scopes":["read"]}"#)
            .await;
        assert_eq!(made.status(), http::StatusCode::CREATED);
        let body: serde_json::Value = serde_json::from_slice(made.body()).unwrap();
        assert_eq!(body["environment"], "test");
        assert_eq!(body["spend_cap"], 1000);
        assert_eq!(body["rate_limits"][0]["limit"], 5);
        let child_expiry: chrono::DateTime<chrono::Utc> =
            body["expires_at"].as_str().unwrap().parse().unwrap();
        assert!(child_expiry <= expires);

        // Nor may it rotate a stronger key of its owner to obtain that key's plaintext.
        let admin = caller(&gate, NewKey::new("acct_1", "root").scopes(["admin"])).await;
        let live = api
            .create(
                &admin,
                br#"{"name":"prod","scopes":["read"],"environment":"live"}"#,
            )
            .await;
        let live: serde_json::Value = serde_json::from_slice(live.body()).unwrap();
        let path = live["key_id"].as_str().unwrap();
        let refused = api.rotate(&test_key, path, b"").await;
        assert_eq!(refused.status(), http::StatusCode::FORBIDDEN);

        // An admin key is not narrowed.
        let made = api
            .create(
                &admin,
                br#"{"name":"live","environment":"live","rate_limits":"1000/min"}"#,
            )
            .await;
        assert_eq!(made.status(), http::StatusCode::CREATED);
    }
}
