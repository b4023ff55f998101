//! Usage written behind in batches, and revocations made elsewhere reaching the cache
//! through the store's change feed.

use std::time::Duration;

use chrono::Utc;
use http::{HeaderMap, StatusCode};
use keygate_core::background::Background;
use keygate_core::hash::Argon2Hasher;
use keygate_core::{Gate, KeyStore, MemoryStore, NewKey, RoutePolicy};

fn request(key: &str, user_agent: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", key.parse().unwrap());
    headers.insert("user-agent", user_agent.parse().unwrap());
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_counted_and_written_in_one_batch() {
    let store = MemoryStore::new();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let created = gate.keys().create(NewKey::new("acct_1", "ci")).await.unwrap();
    let key = created.key.expose_secret();
    for i in 0..5 {
        gate.admit(&request(key, &format!("client/{i}")), &RoutePolicy::new())
            .await
            .unwrap();
    }
    // Nothing is written per request.
    let before = store.find(&created.record.key_id).await.unwrap().unwrap();
    assert_eq!(before.usage.request_count, 0);

    assert_eq!(gate.flush_usage().await, 1, "one key in the batch");
    let after = store.find(&created.record.key_id).await.unwrap().unwrap();
    assert_eq!(after.usage.request_count, 5);
    assert_eq!(after.usage.last_user_agent.as_deref(), Some("client/4"));
    assert!(after.usage.last_used_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_last_batch() {
    let store = MemoryStore::new();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let background = gate.spawn_background(Background {
        usage_flush: Duration::from_secs(3600),
        feed_poll: None,
    });
    let created = gate.keys().create(NewKey::new("acct_1", "ci")).await.unwrap();
    gate.admit(
        &request(created.key.expose_secret(), "curl/8"),
        &RoutePolicy::new(),
    )
    .await
    .unwrap();
    background.shutdown().await;
    let record = store.find(&created.record.key_id).await.unwrap().unwrap();
    assert_eq!(record.usage.request_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_by_another_process_is_refused_after_the_next_poll() {
    let store = MemoryStore::new();
    let gate = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let background = gate.spawn_background(Background {
        usage_flush: Duration::from_secs(3600),
        feed_poll: Some(Duration::from_millis(100)),
    });
    let created = gate.keys().create(NewKey::new("acct_1", "ci")).await.unwrap();
    let key = created.key.expose_secret();
    let status = |gate: Gate| async move {
        match gate.admit(&request(key, "t"), &RoutePolicy::new()).await {
            Ok(_) => StatusCode::OK,
            Err(r) => r.status(),
        }
    };
    assert_eq!(status(gate.clone()).await, StatusCode::OK);

    // The CLI, another process, revokes straight in the store.
    store.revoke(&created.record.key_id, Utc::now()).await.unwrap();
    let mut polls = 0;
    while status(gate.clone()).await == StatusCode::OK {
        polls += 1;
        assert!(polls < 100, "still admitted after 100 poll periods");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(gate.clone()).await, StatusCode::UNAUTHORIZED);
    background.shutdown().await;
}
