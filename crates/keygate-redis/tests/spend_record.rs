//! `RedisSpendMeter::record_to`: Redis holds the shared total, each instance writes its
//! own charges to the key store behind, and a Redis restart (it keeps nothing) is
//! reseeded from the store. Each test runs its own `redis-server`.

mod common;

use std::time::Duration;

use keygate_core::spend::{Month, SpendMeter};
use keygate_core::{KeyId, KeyStore, MemoryStore};
use keygate_redis::RedisSpendMeter;

fn key() -> KeyId {
    KeyId::new(format!("kg_test_rec_{:016x}", rand::random::<u64>()))
}

fn this_month() -> Month {
    Month::of(chrono::Utc::now())
}

/// One instance: a meter on the Redis at `url`, recording to `store`.
fn instance(url: &str, store: &MemoryStore) -> RedisSpendMeter {
    RedisSpendMeter::connect_lazy(url)
        .unwrap()
        .timeout(Duration::from_secs(2))
        .record_to(store.clone())
}

/// `spent` once the meter's connection is back: the first call after a restart fails
/// while the connection is replaced.
async fn reconnected(meter: &RedisSpendMeter, k: &KeyId, month: Month) -> u64 {
    let started = std::time::Instant::now();
    loop {
        match meter.spent(k, month).await {
            Ok(total) => return total,
            Err(error) => assert!(started.elapsed() < Duration::from_secs(10), "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_after_a_flush_keeps_the_total() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let url = server.url();
    let store = MemoryStore::new();
    let (a, b) = (instance(&url, &store), instance(&url, &store));
    let (k, month) = (key(), this_month());
    assert_eq!(a.charge(&k, month, 1000).await.unwrap(), 1000);
    assert_eq!(b.charge(&k, month, 1000).await.unwrap(), 2000, "one shared total");
    assert_eq!(a.charge(&k, month, 1000).await.unwrap(), 3000);
    assert_eq!(a.flush().await, 1);
    assert_eq!(b.flush().await, 1);
    assert_eq!(store.spent(&k, month).await.unwrap(), 3000);

    server.kill();
    let _server = common::PrivateRedis::start_on(server.port).expect("redis-server restarts");
    assert_eq!(reconnected(&b, &k, month).await, 3000, "reseeded from the record");
    assert_eq!(reconnected(&a, &k, month).await, 3000);
    assert_eq!(a.charge(&k, month, 500).await.unwrap(), 3500);
    assert_eq!(b.charge(&k, month, 1).await.unwrap(), 3501);
    a.flush().await;
    b.flush().await;
    assert_eq!(
        store.spent(&k, month).await.unwrap(),
        3501,
        "the record: every charge once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reseeding_counts_its_own_unflushed_charges() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let store = MemoryStore::new();
    let meter = instance(&server.url(), &store);
    let (k, month) = (key(), this_month());
    meter.charge(&k, month, 700).await.unwrap();
    meter.charge(&k, month, 300).await.unwrap();
    assert_eq!(store.spent(&k, month).await.unwrap(), 0, "not flushed yet");

    server.kill();
    let _server = common::PrivateRedis::start_on(server.port).expect("redis-server restarts");
    assert_eq!(
        reconnected(&meter, &k, month).await,
        1000,
        "its own charges reseeded"
    );
    assert_eq!(
        store.spent(&k, month).await.unwrap(),
        0,
        "the reseed only reads: its charges still wait in its batch"
    );
    assert_eq!(meter.charge(&k, month, 1).await.unwrap(), 1001);
    meter.flush().await;
    assert_eq!(store.spent(&k, month).await.unwrap(), 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_through_an_outage_and_a_restart_are_all_recorded_exactly() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let url = server.url();
    let store = MemoryStore::new();
    let meters = [instance(&url, &store), instance(&url, &store)];
    let (k, month) = (key(), this_month());
    let mut charged = 0u64;
    let mut restarted = None;
    for round in 0..30u64 {
        if round == 10 {
            server.kill();
        }
        if round == 20 {
            restarted = common::PrivateRedis::start_on(server.port);
            assert!(restarted.is_some(), "redis-server restarts");
        }
        let cost = 1 + round * 37;
        let meter = &meters[(round % 2) as usize];
        let result = meter.charge(&k, month, cost).await;
        // Down: a BackendError, and the record still gets the charge. Up again: calls
        // may fail a while longer (the breaker's cool-down, the connection replaced).
        match round {
            0..=9 => assert!(result.is_ok(), "round {round}: {result:?}"),
            10..=19 => assert!(result.is_err(), "round {round}: {result:?}"),
            _ => {}
        }
        charged += cost;
        if round % 7 == 0 {
            meter.flush().await;
        }
    }
    for meter in &meters {
        meter.flush().await;
    }
    assert_eq!(
        store.spent(&k, month).await.unwrap(),
        charged,
        "the record holds every charge once"
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_from_two_instances_add_up_in_redis_and_in_the_record() {
    let Some(server) = common::PrivateRedis::start() else {
        return;
    };
    let store = MemoryStore::new();
    let meters = [instance(&server.url(), &store), instance(&server.url(), &store)];
    let (k, month) = (key(), this_month());
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let meter = meters[(i % 2) as usize].clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            meter.charge(&k, month, i + 1).await.unwrap()
        }));
    }
    let mut totals = Vec::new();
    for task in tasks {
        totals.push(task.await.unwrap());
    }
    totals.sort_unstable();
    totals.dedup();
    assert_eq!(totals.len(), 64, "each charge saw its own total");
    let sum: u64 = (1..=64).sum();
    assert_eq!(meters[0].spent(&k, month).await.unwrap(), sum);
    for meter in &meters {
        meter.flush().await;
    }
    assert_eq!(store.spent(&k, month).await.unwrap(), sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_beyond_i64_is_refused_and_not_recorded() {
    let Some(server) = common::PrivateRedis::start() else {
        return;
    };
    let store = MemoryStore::new();
    let meter = instance(&server.url(), &store);
    let (k, month) = (key(), this_month());
    assert!(meter.charge(&k, month, u64::MAX).await.is_err());
    assert_eq!(meter.charge(&k, month, 5).await.unwrap(), 5, "Redis is fine");
    meter.flush().await;
    assert_eq!(store.spent(&k, month).await.unwrap(), 5);
}
