//! The store cases of accounts: an owner's limits kept, replaced and lifted, every key of
//! the owner on the change feed when they change, and the account's spend recorded
//! under its subject id; and daily usage. Part of [`conformance::store`](crate::conformance::store).

use super::store_fixtures::{create, setup, start};
use crate::account::{spend_subject, OwnerLimits};
use crate::clock::Month;
use crate::record::{Refused, SpendDelta, UsageDelta};
use crate::store::StoreError;
use crate::usage::{day_of, DailyUsage};
use crate::{KeyId, KeyStore, NewKey, OwnerId, RateLimit};

/// `set_owner_limits` keeps an owner's windows and cap, replaces them on the next call,
/// and puts exactly that owner's keys on the change feed. A store that keeps no owner
/// limits answers [`StoreError::Unsupported`] and `None` (its gates then enforce keys'
/// limits only); every other error fails the case.
pub async fn owner_limits_are_kept_and_put_the_owners_keys_on_the_feed<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    let owner = OwnerId::new("acct_owners");
    assert_eq!(store.owner_limits(&owner).await.expect("owner_limits"), None);
    let a = create(&keys, NewKey::new("acct_owners", "a")).await;
    let b = create(&keys, NewKey::new("acct_owners", "b")).await;
    create(&keys, NewKey::new("acct_other", "c")).await;
    let cursor = store.changes_since(u64::MAX).await.expect("changes_since").cursor;
    let limits = OwnerLimits {
        owner: owner.clone(),
        rate_limits: vec![RateLimit::per_minute(100), RateLimit::per_day(10_000)],
        spend_cap: Some(5000),
        updated_at: start(),
    };
    match store.set_owner_limits(&limits).await {
        Ok(()) => {}
        Err(StoreError::Unsupported(_)) => {
            assert_eq!(store.owner_limits(&owner).await.expect("owner_limits"), None);
            return;
        }
        Err(other) => panic!("set_owner_limits: {other}"),
    }
    assert_eq!(
        store.owner_limits(&owner).await.expect("owner_limits"),
        Some(limits.clone())
    );
    let mut changed = store.changes_since(cursor).await.expect("changes_since").keys;
    changed.sort();
    let mut expected = vec![a.key_id.clone(), b.key_id.clone()];
    expected.sort();
    assert_eq!(
        changed, expected,
        "the owner's keys, and only them, are on the feed"
    );
    assert_eq!(
        store
            .owner_limits(&OwnerId::new("acct_other"))
            .await
            .expect("owner_limits"),
        None
    );

    let lifted = OwnerLimits::new(owner.clone(), start());
    store
        .set_owner_limits(&lifted)
        .await
        .expect("set_owner_limits again");
    let now = store.owner_limits(&owner).await.expect("owner_limits");
    assert!(
        now.as_ref().is_none_or(|l| *l == lifted),
        "replaced, not merged: {now:?}"
    );
}

/// The account's month of spend is recorded under its subject id like a key's: a store
/// must accept that id (it starts with a control character) and keep it apart.
pub async fn an_accounts_spend_is_recorded_under_its_subject<S: KeyStore>(store: S) {
    let owner = OwnerId::new("acct_spend");
    let subject = spend_subject(&owner);
    let month = Month::of(start());
    let batch = [SpendDelta {
        key_id: subject.clone(),
        month,
        micro_cents: 1500,
    }];
    store.record_spend(&batch).await.expect("record_spend");
    store.record_spend(&batch).await.expect("record_spend");
    assert_eq!(store.spent(&subject, month).await.expect("spent"), 3000);
    let other = spend_subject(&OwnerId::new("acct_spend_other"));
    assert_eq!(store.spent(&other, month).await.expect("spent"), 0);
}

/// `record_usage` adds each delta's requests to its key's day (the UTC day of
/// `last_used_at`), and `daily_usage` gives back the owner's keys' days from `since`,
/// by key id then day, nothing of another owner's or an unknown key's. A store that
/// keeps no daily usage (the trait's default) returns nothing and passes.
pub async fn daily_usage_is_kept_per_key_and_day<S: KeyStore>(store: S) {
    let (store, keys, _clock) = setup(store);
    let a = create(&keys, NewKey::new("acct_daily", "a")).await;
    let b = create(&keys, NewKey::new("acct_daily", "b")).await;
    let other = create(&keys, NewKey::new("acct_other", "c")).await;
    let day = |n: i64| start() + chrono::Duration::days(n) + chrono::Duration::hours(13);
    let delta = |key: &KeyId, requests: u64, at| UsageDelta {
        key_id: key.clone(),
        requests,
        last_used_at: at,
        last_user_agent: None,
        refused: Refused::default(),
        spend: 0,
    };
    let unknown = KeyId::from("kg_live_unknown0");
    store
        .record_usage(&[
            delta(&a.key_id, 5, day(0)),
            delta(&b.key_id, 2, day(0)),
            delta(&unknown, 9, day(0)),
        ])
        .await
        .expect("record_usage");
    store
        .record_usage(&[
            delta(&a.key_id, 3, day(0)),
            delta(&a.key_id, 7, day(1)),
            delta(&other.key_id, 4, day(1)),
        ])
        .await
        .expect("record_usage");
    let kept = store
        .daily_usage(&OwnerId::new("acct_daily"), day_of(day(0)))
        .await
        .expect("daily_usage");
    if kept.is_empty() {
        return; // This store keeps no daily usage.
    }
    let (first, second) = if a.key_id < b.key_id { (&a, &b) } else { (&b, &a) };
    let on = |key: &KeyId, n: i64, requests| DailyUsage {
        key_id: key.clone(),
        day: day_of(day(n)),
        requests,
        spend: 0,
        refused: Refused::default(),
    };
    let mut expected = vec![on(&a.key_id, 0, 8), on(&a.key_id, 1, 7), on(&b.key_id, 0, 2)];
    expected.sort_by(|x, y| (&x.key_id, x.day).cmp(&(&y.key_id, y.day)));
    assert_eq!(
        kept, expected,
        "ordered by key id ({} then {}), then day",
        first.key_id, second.key_id
    );
    let later = store
        .daily_usage(&OwnerId::new("acct_daily"), day_of(day(1)))
        .await
        .expect("daily_usage");
    assert_eq!(
        later,
        vec![expected
            .iter()
            .find(|d| d.requests == 7)
            .expect("a's day 1")
            .clone()]
    );

    // Refusals and charges alone count on their day, and do not move the key's last use.
    let used = store
        .find(&b.key_id)
        .await
        .expect("find")
        .expect("b")
        .usage
        .last_used_at;
    let refused = Refused {
        expired: 1,
        scope: 2,
        quota: 3,
        rate: 4,
    };
    let mut only = delta(&b.key_id, 0, day(2));
    only.refused = refused;
    only.spend = 1500;
    store
        .record_usage(&[only.clone(), only])
        .await
        .expect("record_usage");
    let b_now = store.find(&b.key_id).await.expect("find").expect("b");
    assert_eq!(b_now.usage.last_used_at, used, "a refusal is not a use");
    assert_eq!(b_now.usage.request_count, 2);
    let days = store
        .daily_usage(&OwnerId::new("acct_daily"), day_of(day(2)))
        .await
        .expect("daily_usage");
    let expected = DailyUsage {
        spend: 3000,
        refused: refused.plus(refused),
        ..on(&b.key_id, 2, 0)
    };
    assert_eq!(days, vec![expected]);
}
