//! The store cases of rotation: [`KeyManager::rotate`](crate::manage::KeyManager::rotate)
//! end to end, and [`KeyStore::replace`] itself, one step and once per key. Part of
//! [`conformance::store`](crate::conformance::store).

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::store_fixtures::{after, create, find, setup, start, DAY};
use crate::key::Environment;
use crate::manage::ManageError;
use crate::store::{Page, StoreError};
use crate::{KeyStore, NewKey, RateLimit};

/// Rotation (through [`KeyManager::rotate`](crate::manage::KeyManager::rotate)) stores a replacement with the same settings
/// and a fresh lifetime, and gives the old key the grace period as its expiry.
pub async fn rotate_issues_a_replacement_and_expires_the_old_key<S: KeyStore>(store: S) {
    let (store, keys, clock) = setup(store);
    let old = create(
        &keys,
        NewKey::new("acct_1", "rotating")
            .scopes(["read", "write"])
            .environment(Environment::Test)
            .expires_at(after(start(), 90 * DAY))
            .rate_limits([RateLimit::per_minute(10)])
            .spend_cap(1234)
            .metadata(json!({"k": "v"})),
    )
    .await;

    clock.advance(Duration::from_secs(10 * 86_400));
    let now = after(start(), 10 * DAY);
    let rotated = keys
        .rotate(&old.key_id, Duration::from_secs(86_400))
        .await
        .expect("rotate");
    let new = &rotated.new.record;
    assert_ne!(new.key_id, old.key_id);
    assert_eq!(
        (&new.owner, &new.name, &new.scopes, new.environment),
        (&old.owner, &old.name, &old.scopes, old.environment)
    );
    assert_eq!(
        (&new.rate_limits, new.spend_cap, &new.metadata),
        (&old.rate_limits, old.spend_cap, &old.metadata)
    );
    assert_eq!(new.created_at, now);
    assert_eq!(
        new.expires_at,
        Some(after(now, 90 * DAY)),
        "the replacement gets a fresh 90 days"
    );
    assert_eq!(
        find(&*store, &new.key_id).await.as_ref(),
        Some(new),
        "the replacement is stored"
    );

    assert_eq!(
        rotated.old.expires_at,
        Some(after(now, DAY)),
        "the old key lives for the grace period"
    );
    let stored_old = find(&*store, &old.key_id)
        .await
        .expect("the old key is still stored");
    assert_eq!(stored_old, rotated.old);
    assert_eq!(stored_old.revoked_at, None);

    keys.revoke(&new.key_id).await.expect("revoke");
    let again = keys.rotate(&new.key_id, Duration::ZERO).await;
    assert!(
        matches!(again, Err(ManageError::Invalid(_))),
        "a revoked key cannot be rotated: {again:?}"
    );
    let all = store
        .list_by_owner(&old.owner, Page::default())
        .await
        .expect("list_by_owner");
    assert_eq!(all.len(), 2, "a refused rotation stores nothing");
}

/// `replace` inserts the successor and moves the old key's expiry in one step, once per
/// key: a second replace of the same key, a replace of a revoked or unknown key, and a
/// replace whose successor's id exists all write nothing.
pub async fn replace_is_one_step_and_a_key_is_replaced_once<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    let old = create(&keys, NewKey::new("acct_1", "rotating")).await;
    let taken = create(&keys, NewKey::new("acct_1", "taken")).await;
    let successor = |name: &str| {
        let mut record = old.clone();
        record.key_id = format!("kg_live_{name}").as_str().into();
        record.created_at = after(start(), 1);
        record
    };
    let ends = after(start(), DAY);

    // A successor whose id exists: a conflict, and the old key is as it was.
    let mut clash = successor("unused0");
    clash.key_id = taken.key_id.clone();
    let conflict = store.replace(&old.key_id, &clash, ends).await;
    assert!(matches!(conflict, Err(StoreError::Conflict)), "{conflict:?}");
    assert_eq!(find(&*store, &old.key_id).await.expect("old").expires_at, None);

    let first = successor("first00");
    let updated = store
        .replace(&old.key_id, &first, ends)
        .await
        .expect("replace")
        .expect("the old key is replaced");
    assert_eq!(updated.expires_at, Some(ends));
    assert_eq!(find(&*store, &first.key_id).await.as_ref(), Some(&first));
    let feed = store.changes_since(0).await.expect("changes_since");
    assert!(
        feed.keys.contains(&old.key_id),
        "the old key joins the change feed"
    );

    // Once only: the old key is still live in its grace period, but replaced.
    let second = successor("second0");
    let again = store.replace(&old.key_id, &second, after(ends, DAY)).await;
    assert!(matches!(again, Ok(None)), "{again:?}");
    assert_eq!(find(&*store, &second.key_id).await, None, "no second successor");
    assert_eq!(
        find(&*store, &old.key_id).await.expect("old").expires_at,
        Some(ends)
    );

    // Never for a revoked or an unknown key.
    store.revoke(&first.key_id, Utc::now()).await.expect("revoke");
    let revoked = store.replace(&first.key_id, &successor("third00"), ends).await;
    assert!(matches!(revoked, Ok(None)), "{revoked:?}");
    let unknown = store
        .replace(&"kg_live_nobody00".into(), &successor("fourth0"), ends)
        .await;
    assert!(matches!(unknown, Ok(None)), "{unknown:?}");
    let all = store.list(Page::default()).await.expect("list");
    assert_eq!(all.len(), 3, "old, taken and one successor");
}
