//! `RedisSpendMeter`: totals per key and month, concurrent charges never lost, counters
//! that expire. Needs `KEYGATE_TEST_REDIS_URL`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keygate_core::spend::{Month, SpendMeter};
use keygate_core::KeyId;
use keygate_redis::redis::{self, AsyncCommands};
use keygate_redis::RedisSpendMeter;

fn key(case: &str) -> KeyId {
    KeyId::new(format!("kg_test_{case}_{:016x}", rand::random::<u64>()))
}

fn month(at: &str) -> Month {
    Month::of(at.parse::<DateTime<Utc>>().unwrap())
}

/// Deletes the counters a test made in the shared Redis (those of 2030 would outlive it).
async fn forget(url: &str, key_id: &KeyId, months: &[Month]) {
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for month in months {
        let _: () = redis
            .del(format!("{{{}}}:spend:{month}", key_id.as_str()))
            .await
            .unwrap();
    }
}

async fn meter(url: &str) -> RedisSpendMeter {
    RedisSpendMeter::connect(url)
        .await
        .expect("the test Redis answers")
        .timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn charges_add_up_per_key_and_month() {
    let Some(url) = common::redis_url() else { return };
    let meter = meter(&url).await;
    let (a, b) = (key("spend_a"), key("spend_b"));
    let (march, april) = (month("2030-03-10T00:00:00Z"), month("2030-04-01T00:00:00Z"));
    assert_eq!(meter.spent(&a, march).await.unwrap(), 0);
    assert_eq!(meter.charge(&a, march, 1000).await.unwrap(), 1000);
    assert_eq!(meter.charge(&a, march, 250).await.unwrap(), 1250);
    assert_eq!(meter.charge(&a, april, 7).await.unwrap(), 7);
    assert_eq!(meter.charge(&b, march, 1).await.unwrap(), 1);
    assert_eq!(meter.spent(&a, march).await.unwrap(), 1250);
    assert_eq!(meter.spent(&a, april).await.unwrap(), 7);
    assert_eq!(meter.spent(&b, march).await.unwrap(), 1);
    // A charge of nothing returns the total as it is.
    assert_eq!(meter.charge(&a, march, 0).await.unwrap(), 1250);
    forget(&url, &a, &[march, april]).await;
    forget(&url, &b, &[march]).await;
}

/// Two instances (two connections), 100 concurrent charges: none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_from_two_instances_are_never_lost() {
    let Some(url) = common::redis_url() else { return };
    let instances = [Arc::new(meter(&url).await), Arc::new(meter(&url).await)];
    let k = key("spend_concurrent");
    let march = month("2030-03-10T00:00:00Z");
    let charges: Vec<_> = (0..100)
        .map(|i| {
            let (meter, k) = (instances[i % 2].clone(), k.clone());
            tokio::spawn(async move { meter.charge(&k, march, 7).await.unwrap() })
        })
        .collect();
    let mut totals = Vec::new();
    for charge in charges {
        totals.push(charge.await.unwrap());
    }
    totals.sort_unstable();
    // Each charge saw a distinct total: 7, 14, ..., 700.
    assert_eq!(totals, (1..=100).map(|i| i * 7).collect::<Vec<u64>>());
    assert_eq!(instances[0].spent(&k, march).await.unwrap(), 700);
    forget(&url, &k, &[march]).await;
}

#[tokio::test]
async fn a_month_counter_expires_at_the_end_of_the_following_month() {
    let Some(url) = common::redis_url() else { return };
    let meter = meter(&url).await;
    let k = key("spend_expiry");
    let this_month = Month::of(Utc::now());
    meter.charge(&k, this_month, 5).await.unwrap();
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let expires: i64 = redis::cmd("EXPIRETIME")
        .arg(format!("{{{}}}:spend:{this_month}", k.as_str()))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(expires, this_month.next().next().start().timestamp());
    let _: () = redis
        .del(format!("{{{}}}:spend:{this_month}", k.as_str()))
        .await
        .unwrap();
}

#[tokio::test]
async fn charges_beyond_i64_are_a_backend_error() {
    let Some(url) = common::redis_url() else { return };
    let meter = meter(&url).await;
    let k = key("spend_huge");
    let march = month("2030-03-10T00:00:00Z");
    assert!(meter.charge(&k, march, u64::MAX).await.is_err());
    meter.charge(&k, march, i64::MAX as u64).await.unwrap();
    assert!(
        meter.charge(&k, march, 1).await.is_err(),
        "the total would overflow"
    );
    assert_eq!(meter.spent(&k, march).await.unwrap(), i64::MAX as u64);
    forget(&url, &k, &[march]).await;
}
