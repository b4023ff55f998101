//! The [`KeyStore`] conformance suite: what every store must do, checked the same way
//! for each. A backend is done when [`store_tests!`](crate::store_tests) passes against it unchanged: one test per
//! case below.
//!
//! Each case takes a fresh, empty store and panics (like a failed assertion) when the
//! store breaks the contract. Cases need a Tokio runtime (`#[tokio::test]`): keys are
//! created through a [`KeyManager`](crate::manage::KeyManager), which hashes on the blocking pool. Time comes from a
//! [`ManualClock`](crate::clock::ManualClock) stopped on whole seconds, so stores that keep timestamps at microsecond
//! precision (PostgreSQL) compare equal.
//!
//! # Example
//! ```
//! use keygate_core::MemoryStore;
//!
//! // In a test file: one `#[tokio::test]` per case, each against a fresh store.
//! keygate_core::store_tests!(|| async { MemoryStore::new() });
//! # fn main() {}
//! ```

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

pub use super::owners::{
    an_accounts_spend_is_recorded_under_its_subject, daily_usage_is_kept_per_key_and_day,
    owner_limits_are_kept_and_put_the_owners_keys_on_the_feed,
};
pub use super::rotation::{
    replace_is_one_step_and_a_key_is_replaced_once, rotate_issues_a_replacement_and_expires_the_old_key,
};
use super::store_fixtures::{after, create, find, ids, setup, sorted, start, DAY};
use crate::clock::Month;
use crate::hash::{Argon2Hasher, KeyHasher, SecretHash};
use crate::key::Environment;
use crate::manage::ManageError;
use crate::record::{KeyStatus, SpendDelta, UsageDelta};
use crate::store::{Page, StoreError};
use crate::{KeyId, KeyStore, NewKey, OwnerId, RateLimit, Scopes};

/// `insert` then `find` gives back every field as it was written; an unknown id is `None`.
pub async fn create_stores_every_field_and_find_returns_the_record<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    assert!(
        store.is_empty().await.expect("is_empty"),
        "a fresh store is empty"
    );

    let new = NewKey::new("acct_1", "CI Pipeline")
        .scopes(["write", "read"])
        .environment(Environment::Test)
        .expires_at(after(start(), 90 * DAY))
        .rate_limits([RateLimit::per_minute(100), RateLimit::per_hour(1000)])
        .spend_cap(5_000_000)
        .metadata(json!({"team": "infra", "tags": ["a", "b"], "n": 3}));
    let created = create(&keys, new).await;

    let found = find(&*store, &created.key_id)
        .await
        .expect("the created key is found");
    assert_eq!(found, created, "find returns the record exactly as inserted");
    assert_eq!(found.owner, OwnerId::from("acct_1"));
    assert_eq!(found.name, "CI Pipeline");
    assert_eq!(found.scopes.iter().collect::<Vec<_>>(), ["read", "write"]);
    assert_eq!(found.environment, Environment::Test);
    assert_eq!(found.created_at, start());
    assert_eq!(found.expires_at, Some(after(start(), 90 * DAY)));
    assert_eq!(found.revoked_at, None);
    assert_eq!(
        found.rate_limits,
        Some(vec![RateLimit::per_minute(100), RateLimit::per_hour(1000)])
    );
    assert_eq!(found.spend_cap, Some(5_000_000));
    assert_eq!(
        found.metadata,
        json!({"team": "infra", "tags": ["a", "b"], "n": 3})
    );
    assert_eq!(found.usage.request_count, 0);
    assert_eq!(found.usage.last_used_at, None);

    // A key with every optional field empty round-trips too.
    let bare = create(&keys, NewKey::new("acct_1", "")).await;
    assert_eq!(find(&*store, &bare.key_id).await, Some(bare.clone()));
    assert_eq!(bare.rate_limits, None);
    assert_eq!(bare.spend_cap, None);
    assert!(bare.scopes.is_empty());

    assert_eq!(find(&*store, &KeyId::from("kg_live_missing0")).await, None);
    assert!(
        !store.is_empty().await.expect("is_empty"),
        "a store with keys is not empty"
    );
}

/// The store holds an argon2id PHC string of the secret, and neither the key nor the
/// secret in any form.
pub async fn stored_hash_is_a_phc_string_never_the_plaintext<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    let created = keys
        .create(NewKey::new("acct_1", "hash check"))
        .await
        .expect("create a key");
    let plaintext = created.key.expose_secret();
    let parsed = keys
        .key_format()
        .parse(plaintext)
        .expect("the manager's key parses");
    let secret = parsed.secret();

    let found = find(&*store, &created.record.key_id)
        .await
        .expect("the created key is found");
    let stored = found.secret_hash.as_str();
    assert!(
        stored.starts_with("$argon2id$v=19$"),
        "a PHC string: {:?}",
        found.secret_hash
    );
    assert!(
        !stored.contains(secret),
        "the stored hash never contains the secret"
    );
    assert!(
        !stored.contains(plaintext),
        "the stored hash never contains the key"
    );
    assert!(
        Argon2Hasher::insecure_fast()
            .verify(secret.as_bytes(), &found.secret_hash)
            .expect("the stored hash is usable"),
        "the stored hash verifies the secret"
    );
    assert!(!Argon2Hasher::insecure_fast()
        .verify(b"not the secret", &found.secret_hash)
        .expect("the stored hash is usable"));
}

/// A second record with an existing key id is refused with [`StoreError::Conflict`], and
/// the original stays as it was.
pub async fn inserting_an_existing_key_id_is_a_conflict_and_keeps_the_original<S: KeyStore>(store: S) {
    let (store, keys, clock) = setup(store);
    let original = create(&keys, NewKey::new("acct_1", "original").scopes(["read"])).await;

    clock.advance(Duration::from_secs(60));
    let mut impostor = original.clone();
    impostor.owner = OwnerId::from("intruder");
    impostor.name = "impostor".into();
    impostor.scopes = Scopes::new(["admin"]);
    impostor.created_at = after(start(), 60);
    impostor.secret_hash = SecretHash::new(
        Argon2Hasher::insecure_fast()
            .hash(b"another secret")
            .expect("hash")
            .as_str(),
    );
    let result = store.insert(&impostor).await;
    assert!(
        matches!(result, Err(StoreError::Conflict)),
        "a duplicate key id is a conflict, got {result:?}"
    );
    assert_eq!(
        find(&*store, &original.key_id).await,
        Some(original.clone()),
        "original untouched"
    );
    let intruder_keys = store
        .list_by_owner(&OwnerId::from("intruder"), Page::default())
        .await
        .expect("list");
    assert!(intruder_keys.is_empty(), "nothing of the impostor was stored");
}

/// An owner's keys come back oldest first (ties by key id), page after page, and no other
/// owner's keys.
pub async fn list_by_owner_pages_in_creation_order<S: KeyStore>(store: S) {
    let (store, keys, clock) = setup(store);
    let alice = OwnerId::from("acct_alice");
    let bob = OwnerId::from("acct_bob");
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for i in 0..4 {
        alices.push(create(&keys, NewKey::new(alice.clone(), format!("alice {i}"))).await);
        clock.advance(Duration::from_secs(30));
        bobs.push(create(&keys, NewKey::new(bob.clone(), format!("bob {i}"))).await);
        clock.advance(Duration::from_secs(30));
    }
    // Two keys at the same instant: ordered by key id.
    alices.push(create(&keys, NewKey::new(alice.clone(), "alice tie 1")).await);
    alices.push(create(&keys, NewKey::new(alice.clone(), "alice tie 2")).await);
    let expected = sorted(alices.clone());
    assert_eq!(
        ids(&expected[..4]),
        ids(&alices[..4]),
        "distinct creation times list in creation order"
    );

    let mut paged = Vec::new();
    for offset in [0, 2, 4] {
        let page = store
            .list_by_owner(&alice, Page::new(offset, 2))
            .await
            .expect("list_by_owner");
        assert_eq!(page.len(), 2, "page at offset {offset} is full");
        paged.extend(page);
    }
    assert_eq!(
        paged, expected,
        "pages join into the owner's keys, oldest first, ties by key id"
    );
    let past_the_end = store
        .list_by_owner(&alice, Page::new(6, 2))
        .await
        .expect("list_by_owner");
    assert!(past_the_end.is_empty(), "a page past the end is empty");

    let all_bobs = store
        .list_by_owner(&bob, Page::default())
        .await
        .expect("list_by_owner");
    assert_eq!(all_bobs, sorted(bobs), "bob sees only his keys");
    let nobody = store
        .list_by_owner(&OwnerId::from("acct_nobody"), Page::default())
        .await
        .expect("list_by_owner");
    assert!(nobody.is_empty(), "an owner without keys lists nothing");
}

/// `list` pages through every key of every owner, oldest first.
pub async fn list_pages_every_key_across_owners<S: KeyStore>(store: S) {
    let (store, keys, clock) = setup(store);
    assert!(store.list(Page::default()).await.expect("list").is_empty());
    let mut all = Vec::new();
    for i in 0..7 {
        let owner = format!("acct_{}", i % 3);
        all.push(create(&keys, NewKey::new(owner.as_str(), format!("key {i}"))).await);
        clock.advance(Duration::from_secs(1));
    }
    let everything = store.list(Page::new(0, Page::MAX_LIMIT)).await.expect("list");
    assert_eq!(everything, all, "one page holds every key in creation order");

    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.list(Page::new(offset, 3)).await.expect("list");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3, "a page holds at most its limit");
        offset += page.len() as u64;
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages of three join into every key, none twice");
}

/// Revoking sets `revoked_at` once: a second revocation keeps the first time. Other keys
/// and other fields are untouched; an unknown id is `None`.
pub async fn revoke_is_idempotent_and_keeps_the_first_revocation_time<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    let key = create(
        &keys,
        NewKey::new("acct_1", "to revoke")
            .scopes(["read"])
            .expires_at(after(start(), 30 * DAY))
            .rate_limits([RateLimit::per_second(5)])
            .metadata(json!({"k": 1})),
    )
    .await;
    let other = create(&keys, NewKey::new("acct_1", "bystander")).await;

    let first = after(start(), 60);
    let revoked = store
        .revoke(&key.key_id, first)
        .await
        .expect("revoke")
        .expect("a known key is revoked");
    assert_eq!(revoked.revoked_at, Some(first));
    assert_eq!(revoked.status(after(start(), 61)), KeyStatus::Revoked);
    let mut expected = key.clone();
    expected.revoked_at = Some(first);
    assert_eq!(revoked, expected, "revoke changes nothing but revoked_at");

    let again = store
        .revoke(&key.key_id, after(start(), 3600))
        .await
        .expect("revoke")
        .expect("a known key is revoked");
    assert_eq!(again.revoked_at, Some(first), "the first revocation time is kept");
    assert_eq!(find(&*store, &key.key_id).await, Some(expected));
    assert_eq!(
        find(&*store, &other.key_id).await,
        Some(other),
        "other keys are untouched"
    );

    let unknown = store
        .revoke(&KeyId::from("kg_live_missing0"), first)
        .await
        .expect("revoke");
    assert_eq!(unknown, None, "revoking an unknown key id finds nothing");
    let via_manager = keys.revoke(&KeyId::from("kg_live_missing0")).await;
    assert!(
        matches!(via_manager, Err(ManageError::NotFound(_))),
        "{via_manager:?}"
    );
}

/// `set_expiry` sets, moves and clears an expiry; an unknown id is `None`.
pub async fn set_expiry_sets_and_clears_the_expiry<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    let key = create(&keys, NewKey::new("acct_1", "expiring")).await;
    let at = after(start(), 7 * DAY);

    let set = store
        .set_expiry(&key.key_id, Some(at))
        .await
        .expect("set_expiry")
        .expect("a known key");
    assert_eq!(set.expires_at, Some(at));
    assert_eq!(
        set.status(at),
        KeyStatus::Expired,
        "expiry is inclusive of its instant"
    );
    assert_eq!(
        find(&*store, &key.key_id).await.map(|r| r.expires_at),
        Some(Some(at))
    );

    let sooner = after(start(), DAY);
    let moved = store
        .set_expiry(&key.key_id, Some(sooner))
        .await
        .expect("set_expiry")
        .expect("a known key");
    assert_eq!(moved.expires_at, Some(sooner), "an expiry can be moved earlier");

    let cleared = store
        .set_expiry(&key.key_id, None)
        .await
        .expect("set_expiry")
        .expect("a known key");
    assert_eq!(cleared, key, "clearing the expiry restores the record");
    assert_eq!(find(&*store, &key.key_id).await, Some(key));

    let unknown = store
        .set_expiry(&KeyId::from("kg_live_missing0"), Some(at))
        .await
        .expect("set_expiry");
    assert_eq!(unknown, None);
}

/// Usage batches add request counts, keep the latest `last_used_at` with its user agent
/// whatever the order of arrival, and skip unknown key ids.
pub async fn record_usage_adds_counts_and_keeps_the_latest_use<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    let a = create(&keys, NewKey::new("acct_1", "a")).await;
    let b = create(&keys, NewKey::new("acct_1", "b")).await;
    let unknown = KeyId::from("kg_live_missing0");
    let delta = |key: &KeyId, requests, secs, agent: Option<&str>| UsageDelta {
        key_id: key.clone(),
        requests,
        last_used_at: after(start(), secs),
        last_user_agent: agent.map(str::to_string),
        refused: Default::default(),
        spend: 0,
    };

    store.record_usage(&[]).await.expect("an empty batch is fine");
    store
        .record_usage(&[
            delta(&a.key_id, 3, 10, Some("agent/1")),
            delta(&unknown, 5, 20, Some("ghost")),
            delta(&b.key_id, 1, 5, None),
        ])
        .await
        .expect("record_usage");
    let found_a = find(&*store, &a.key_id).await.expect("a");
    assert_eq!(found_a.usage.request_count, 3);
    assert_eq!(found_a.usage.last_used_at, Some(after(start(), 10)));
    assert_eq!(found_a.usage.last_user_agent.as_deref(), Some("agent/1"));
    let found_b = find(&*store, &b.key_id).await.expect("b");
    assert_eq!(found_b.usage.request_count, 1);
    assert_eq!(found_b.usage.last_used_at, Some(after(start(), 5)));
    assert_eq!(found_b.usage.last_user_agent, None);
    assert_eq!(
        find(&*store, &unknown).await,
        None,
        "an unknown key id is skipped, not created"
    );

    // The newer use arrives first in the batch: it still wins.
    store
        .record_usage(&[
            delta(&a.key_id, 2, 30, Some("agent/2")),
            delta(&a.key_id, 4, 15, Some("agent/old")),
        ])
        .await
        .expect("record_usage");
    // A late batch with an older use adds its count only.
    store
        .record_usage(&[delta(&a.key_id, 1, 1, Some("agent/stale"))])
        .await
        .expect("record_usage");
    let found_a = find(&*store, &a.key_id).await.expect("a");
    assert_eq!(found_a.usage.request_count, 10, "counts add up: 3 + 2 + 4 + 1");
    assert_eq!(found_a.usage.last_used_at, Some(after(start(), 30)));
    assert_eq!(found_a.usage.last_user_agent.as_deref(), Some("agent/2"));
    let mut untouched = a.clone();
    untouched.usage = found_a.usage.clone();
    assert_eq!(found_a, untouched, "usage changes nothing but usage");
}

/// The change feed reports keys revoked or rotated after a cursor, once, with a cursor
/// to continue from; creations and unknown ids add nothing. A cursor past the newest
/// change (`u64::MAX`) reports nothing and returns the newest cursor: "from now on".
pub async fn changes_since_reports_revoked_and_rotated_keys_after_a_cursor<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    let first = store.changes_since(0).await.expect("changes_since");
    assert!(first.keys.is_empty(), "a fresh store has no changes");
    // A poller starts "from now on" with a cursor past the newest change.
    let present = store.changes_since(u64::MAX).await.expect("changes_since");
    assert!(
        present.keys.is_empty(),
        "a cursor past the newest change reports nothing"
    );
    let a = create(&keys, NewKey::new("acct_1", "a")).await;
    let b = create(&keys, NewKey::new("acct_1", "b")).await;
    let c = create(&keys, NewKey::new("acct_1", "c")).await;
    let after_creates = store.changes_since(present.cursor).await.expect("changes_since");
    assert!(after_creates.keys.is_empty(), "creating keys is not a change");
    let cursor = after_creates.cursor;

    keys.revoke(&a.key_id).await.expect("revoke");
    let rotated = keys
        .rotate(&b.key_id, Duration::from_secs(3600))
        .await
        .expect("rotate");
    assert!(store
        .revoke(&KeyId::from("kg_live_missing0"), start())
        .await
        .expect("revoke")
        .is_none());

    let changes = store.changes_since(cursor).await.expect("changes_since");
    let changed: Vec<&str> = changes.keys.iter().map(KeyId::as_str).collect();
    assert!(
        changed.contains(&a.key_id.as_str()),
        "a revoked key is reported: {changed:?}"
    );
    assert!(
        changed.contains(&b.key_id.as_str()),
        "a rotated key is reported: {changed:?}"
    );
    assert!(
        !changed.contains(&c.key_id.as_str()),
        "an unchanged key is not: {changed:?}"
    );
    assert!(
        !changed.contains(&rotated.new.record.key_id.as_str()),
        "the new key of a rotation is not stale anywhere: {changed:?}"
    );
    assert!(
        !changed.contains(&"kg_live_missing0"),
        "an unknown id is not reported"
    );
    let position = |id: &KeyId| changed.iter().position(|c| *c == id.as_str());
    assert!(position(&a.key_id) < position(&b.key_id), "changes come in order");
    assert!(changes.cursor > cursor, "the cursor moves past the changes");

    let nothing_new = store.changes_since(changes.cursor).await.expect("changes_since");
    assert!(
        nothing_new.keys.is_empty(),
        "each change is reported once per cursor"
    );
    assert!(
        nothing_new.cursor >= changes.cursor,
        "the cursor never moves back"
    );

    store
        .set_expiry(&c.key_id, Some(after(start(), DAY)))
        .await
        .expect("set_expiry")
        .expect("a known key");
    let expiry = store
        .changes_since(nothing_new.cursor)
        .await
        .expect("changes_since");
    assert_eq!(
        expiry.keys,
        vec![c.key_id.clone()],
        "an expiry change is reported"
    );
    let replay = store.changes_since(cursor).await.expect("changes_since");
    assert!(replay.keys.contains(&a.key_id), "an old cursor replays the feed");
    assert!(replay.keys.contains(&c.key_id));

    let present = store.changes_since(u64::MAX).await.expect("changes_since");
    assert!(
        present.keys.is_empty(),
        "a cursor past the newest change reports nothing"
    );
    assert_eq!(
        present.cursor, expiry.cursor,
        "and returns the newest change's cursor"
    );
    keys.revoke(&c.key_id).await.expect("revoke");
    let from_now = store.changes_since(present.cursor).await.expect("changes_since");
    assert_eq!(
        from_now.keys,
        vec![c.key_id.clone()],
        "changes after \"now\" are reported"
    );
}

/// Fifty keys created at once are all stored, with fifty distinct ids.
pub async fn concurrent_creates_are_all_stored_with_distinct_ids<S: KeyStore>(store: S) {
    const N: usize = 50;
    let (store, keys, _clock) = setup(store);
    let owner = OwnerId::from("acct_busy");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let keys = keys.clone();
        let owner = owner.clone();
        tasks.spawn(async move { keys.create(NewKey::new(owner, format!("key {i}"))).await });
    }
    let mut created = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let key = joined
            .expect("the task ran")
            .expect("a concurrent create succeeds");
        created.insert(key.record.key_id);
    }
    assert_eq!(created.len(), N, "every create returned a distinct key id");

    let listed = store
        .list_by_owner(&owner, Page::new(0, Page::MAX_LIMIT))
        .await
        .expect("list_by_owner");
    let listed: HashSet<KeyId> = listed.into_iter().map(|r| r.key_id).collect();
    assert_eq!(listed, created, "every created key is stored");
}

/// `record_spend` adds each batch to its (key, month) total, which `spent` reads back;
/// months and keys are apart, an unknown one is 0, and totals saturate.
pub async fn recorded_spend_adds_up_per_key_and_month<S: KeyStore>(store: S) {
    let (store, _keys, _clock) = setup(store);
    let (a, b) = (KeyId::from("kg_live_spenda00"), KeyId::from("kg_live_spendb00"));
    let march = Month { year: 2030, month: 3 };
    let april = march.next();
    let delta = |key_id: &KeyId, month: Month, micro_cents: u64| SpendDelta {
        key_id: key_id.clone(),
        month,
        micro_cents,
    };
    assert_eq!(
        store.spent(&a, march).await.expect("spent"),
        0,
        "nothing recorded yet"
    );
    store
        .record_spend(&[delta(&a, march, 1000), delta(&b, march, 7), delta(&a, april, 5)])
        .await
        .expect("record_spend");
    store
        .record_spend(&[delta(&a, march, 250)])
        .await
        .expect("record_spend");
    store.record_spend(&[]).await.expect("an empty batch");
    assert_eq!(store.spent(&a, march).await.expect("spent"), 1250);
    assert_eq!(store.spent(&a, april).await.expect("spent"), 5);
    assert_eq!(store.spent(&b, march).await.expect("spent"), 7);
    assert_eq!(store.spent(&b, april).await.expect("spent"), 0);
    // Saturating, never wrapping or failing (at the largest total the store holds: at
    // least i64::MAX, the range of SQL's BIGINT).
    let huge = u64::try_from(i64::MAX).expect("fits");
    store
        .record_spend(&[delta(&b, april, huge)])
        .await
        .expect("record_spend");
    store
        .record_spend(&[delta(&b, april, huge)])
        .await
        .expect("record_spend");
    assert!(store.spent(&b, april).await.expect("spent") >= huge);
}
