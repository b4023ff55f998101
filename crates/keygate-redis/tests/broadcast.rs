//! `RedisBroadcast`: a revocation through one gate reaches another by Redis pub/sub,
//! with the change feed's poll set to an hour so that only the push can explain it; and
//! a subscription that drops catches up on exactly the keys changed meanwhile.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};
use keygate_core::background::{Background, BackgroundTask};
use keygate_core::hash::{Argon2Hasher, HashError, KeyHasher, SecretHash};
use keygate_core::{Gate, KeyId, KeyStore, MemoryStore, NewKey, RoutePolicy};
use keygate_redis::redis;
use keygate_redis::RedisBroadcast;

/// Longer than any test: a key refused before it was refused by the push.
const NO_POLL: Background = Background {
    usage_flush: Duration::from_secs(10),
    feed_poll: Some(Duration::from_secs(3600)),
};

/// Generous: the push takes milliseconds; this only stops a broken test from hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// Cheap argon2 that counts its verifications.
#[derive(Clone, Default)]
struct CountingHasher {
    verifies: Arc<AtomicUsize>,
}

impl CountingHasher {
    fn verifies(&self) -> usize {
        self.verifies.load(Ordering::SeqCst)
    }
}

impl KeyHasher for CountingHasher {
    fn hash(&self, secret: &[u8]) -> Result<SecretHash, HashError> {
        Argon2Hasher::insecure_fast().hash(secret)
    }
    fn verify(&self, secret: &[u8], stored: &SecretHash) -> Result<bool, HashError> {
        self.verifies.fetch_add(1, Ordering::SeqCst);
        Argon2Hasher::insecure_fast().verify(secret, stored)
    }
}

fn channel() -> String {
    format!("keygate:test:{:016x}", rand::random::<u64>())
}

/// A gate over `store` wrapped in its own broadcast on `url`, polling the feed hourly.
fn gate(store: &MemoryStore, url: &str, channel: &str, hasher: CountingHasher) -> (Gate, BackgroundTask) {
    let store = RedisBroadcast::connect_lazy(store.clone(), url)
        .unwrap()
        .channel(channel);
    let gate = Gate::builder(store).hasher(hasher).build();
    let background = gate.spawn_background(NO_POLL);
    (gate, background)
}

async fn status(gate: &Gate, key: &str) -> StatusCode {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    match gate.admit(&headers, &RoutePolicy::new()).await {
        Ok(_) => StatusCode::OK,
        Err(rejection) => rejection.status(),
    }
}

/// Waits until `subscribers` connections listen on `channel` at `url`.
async fn subscribed(url: &str, channel: &str, subscribers: i64) {
    let client = redis::Client::open(url).unwrap();
    let started = Instant::now();
    loop {
        if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
            let counts: Result<(String, i64), _> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut connection)
                .await;
            if counts.is_ok_and(|(_, n)| n >= subscribers) {
                return;
            }
        }
        assert!(started.elapsed() < PATIENCE, "no subscriber on {channel}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How long until `gate` refuses `key`, polling every millisecond.
async fn refused_after(gate: &Gate, key: &str) -> Duration {
    let started = Instant::now();
    while status(gate, key).await == StatusCode::OK {
        assert!(started.elapsed() < PATIENCE, "still admitted after {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_in_one_gate_is_refused_by_another_by_push() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let channel = channel();
    let store = MemoryStore::new();
    let (writer, writer_task) = gate(&store, &url, &channel, CountingHasher::default());
    let (reader, reader_task) = gate(&store, &url, &channel, CountingHasher::default());
    subscribed(&url, &channel, 2).await;

    let mut revoked = Vec::new();
    for i in 0..5 {
        let created = writer
            .keys()
            .create(NewKey::new("acct_1", format!("key {i}")))
            .await
            .unwrap();
        let key = created.key.expose_secret().to_string();
        assert_eq!(status(&reader, &key).await, StatusCode::OK, "warm");
        assert_eq!(status(&writer, &key).await, StatusCode::OK, "warm");
        writer.keys().revoke(&created.record.key_id).await.unwrap();
        revoked.push(refused_after(&reader, &key).await);
        assert_eq!(status(&writer, &key).await, StatusCode::UNAUTHORIZED);
    }
    println!("refused by the other gate after {revoked:?} (the feed is polled hourly)");

    writer_task.shutdown().await;
    reader_task.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_expiry_changes_are_pushed_too() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let channel = channel();
    let store = MemoryStore::new();
    let (writer, writer_task) = gate(&store, &url, &channel, CountingHasher::default());
    let (reader, reader_task) = gate(&store, &url, &channel, CountingHasher::default());
    subscribed(&url, &channel, 2).await;

    // An expiry moved into the past, by a tool writing to the store directly.
    let expiring = writer
        .keys()
        .create(NewKey::new("acct_1", "expiring"))
        .await
        .unwrap();
    let key = expiring.key.expose_secret().to_string();
    assert_eq!(status(&reader, &key).await, StatusCode::OK);
    let tool = RedisBroadcast::connect_lazy(store.clone(), &url)
        .unwrap()
        .channel(&channel);
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let moved = tool
        .set_expiry(&expiring.record.key_id, Some(past))
        .await
        .unwrap();
    assert!(moved.is_some());
    refused_after(&reader, &key).await;

    // A rotation with no grace: the old key ends now.
    let rotated = writer
        .keys()
        .create(NewKey::new("acct_1", "rotated"))
        .await
        .unwrap();
    let key = rotated.key.expose_secret().to_string();
    assert_eq!(status(&reader, &key).await, StatusCode::OK);
    let successor = writer
        .keys()
        .rotate(&rotated.record.key_id, Duration::ZERO)
        .await
        .unwrap();
    refused_after(&reader, &key).await;
    assert_eq!(
        status(&reader, successor.new.key.expose_secret()).await,
        StatusCode::OK
    );

    writer_task.shutdown().await;
    reader_task.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_succeeds_when_redis_is_down() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let store = MemoryStore::new();
    let broadcast = RedisBroadcast::connect_lazy(store.clone(), &server.url()).unwrap();
    let gate = Gate::builder(broadcast)
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let created = gate.keys().create(NewKey::new("acct_1", "k")).await.unwrap();
    server.kill();
    let revoked = gate.keys().revoke(&created.record.key_id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let stored = store.find(&created.record.key_id).await.unwrap().unwrap();
    assert!(stored.revoked_at.is_some(), "the store has the revocation");
    assert_eq!(
        status(&gate, created.key.expose_secret()).await,
        StatusCode::UNAUTHORIZED
    );
}

/// The acceptance test of issue 12: 1,000 cached keys, the subscription's Redis killed,
/// 3 keys revoked meanwhile, Redis back on the same port: exactly those 3 are refused,
/// and the other 997 are admitted from the cache, with no argon2 verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_catches_up_on_exactly_the_keys_changed_meanwhile() {
    let Some(mut server) = common::PrivateRedis::start() else {
        return;
    };
    let url = server.url();
    let channel = channel();
    let store = MemoryStore::new();
    let hasher = CountingHasher::default();
    let (reader, reader_task) = gate(&store, &url, &channel, hasher.clone());
    // The writer publishes to the same Redis (and fails to while it is down).
    let writer = Gate::builder(
        RedisBroadcast::connect_lazy(store.clone(), &url)
            .unwrap()
            .channel(&channel),
    )
    .hasher(Argon2Hasher::insecure_fast())
    .build();
    subscribed(&url, &channel, 1).await;

    let mut keys: Vec<(KeyId, String)> = Vec::new();
    for i in 0..1000 {
        let created = writer
            .keys()
            .create(NewKey::new("acct_1", format!("key {i}")))
            .await
            .unwrap();
        keys.push((
            created.record.key_id.clone(),
            created.key.expose_secret().to_string(),
        ));
    }
    for (_, key) in &keys {
        assert_eq!(status(&reader, key).await, StatusCode::OK, "warm");
    }
    assert_eq!(hasher.verifies(), 1000, "one verification per key");

    server.kill();
    let revoked = [&keys[17], &keys[500], &keys[999]];
    for (key_id, _) in revoked {
        writer.keys().revoke(key_id).await.unwrap();
    }
    let port = server.port;
    let _server = common::PrivateRedis::start_on(port).expect("redis-server restarts");
    subscribed(&url, &channel, 1).await;

    for (_, key) in revoked {
        refused_after(&reader, key).await;
    }
    let before = hasher.verifies();
    assert!(
        before <= 1000 + revoked.len(),
        "at most the revoked keys verified again"
    );
    let mut admitted = 0;
    for (key_id, key) in &keys {
        if revoked.iter().any(|(id, _)| id == key_id) {
            assert_eq!(status(&reader, key).await, StatusCode::UNAUTHORIZED, "{key_id}");
        } else {
            assert_eq!(status(&reader, key).await, StatusCode::OK, "{key_id}");
            admitted += 1;
        }
    }
    assert_eq!(admitted, 997);
    assert_eq!(
        hasher.verifies(),
        before,
        "the 997 unchanged keys were admitted from the cache, with no argon2 verify"
    );
    reader_task.shutdown().await;
}
