//! `RedisRateLimiter` on a Redis Cluster of three masters that the test starts from
//! `redis-server` on free ports (and stops, with its files, at the end): the limiter
//! conformance suite, unchanged, and keys spread over every master.
//!
//! Skipped without `redis-server`/`redis-cli`, unless `KEYGATE_REQUIRE_SERVICES=1`,
//! when that is a failure.

mod common;

use std::time::Duration;

use keygate_core::conformance::limiter;
use keygate_core::rate::{Bucket, RateLimiter};
use keygate_core::{KeyId, RateLimit};
use keygate_redis::redis;
use keygate_redis::RedisRateLimiter;

/// One cluster for every case: starting one takes seconds. Cases run one after another
/// on it, and it is stopped when the test ends, a failing case included (on drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_conformance_suite_passes_on_a_three_master_cluster() {
    let Some(cluster) = common::PrivateCluster::start() else {
        return;
    };
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    // The suite moves time by hand; its concurrency case queues 64 calls.
    let make = || async {
        RedisRateLimiter::connect_cluster(&nodes[..1])
            .await
            .expect("the cluster answers")
            .timeout(Duration::from_secs(5))
            .with_caller_time()
    };
    limiter::an_idle_key_may_burst_up_to_the_limit(make().await).await;
    limiter::every_window_applies_at_once(make().await).await;
    limiter::services_keep_separate_counters(make().await).await;
    limiter::keys_keep_separate_counters(make().await).await;
    limiter::concurrent_calls_admit_exactly_the_limit(make().await).await;
    limiter::a_refused_request_counts_in_no_window(make().await).await;
    limiter::retry_after_is_whole_seconds_rounded_up_and_at_least_one(make().await).await;
    limiter::a_window_is_whole_again_at_its_reset(make().await).await;

    // Redis' own time, and keys of many ids: each id's counters land on the master of
    // its slot, so every master holds some.
    let limiter = RedisRateLimiter::connect_cluster(&nodes)
        .await
        .expect("the cluster answers");
    let buckets = [
        Bucket {
            service: None,
            limit: RateLimit::per_minute(2),
            account: None,
        },
        Bucket {
            service: Some("chat".into()),
            limit: RateLimit::per_hour(10),
            account: None,
        },
    ];
    for i in 0..60 {
        let key = KeyId::new(format!("kg_test_cluster{i:04}"));
        let now = chrono::Utc::now().into();
        assert!(limiter.acquire(&key, &buckets, now).await.unwrap().allowed);
        assert!(limiter.acquire(&key, &buckets, now).await.unwrap().allowed);
        let third = limiter.acquire(&key, &buckets, now).await.unwrap();
        assert!(!third.allowed, "{key}");
        assert_eq!(third.tightest.limit, 2);
    }
    for url in &urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: i64 = redis::cmd("DBSIZE").query_async(&mut connection).await.unwrap();
        assert!(keys > 0, "{url} holds no counter");
    }
    drop(cluster);
}
