//! The gate's counters: each request counted once, by outcome and by where it was
//! decided; wrong secrets and shed verifications; and nothing that names a key.

mod support;

use http::HeaderMap;
use keygate_core::hash::Argon2Hasher;
use keygate_core::observe::Path;
use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};
use support::forge;

fn headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {value}").parse().unwrap());
    headers
}

#[tokio::test]
async fn each_request_is_counted_once_by_outcome_and_path() {
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let key = gate
        .keys()
        .create(NewKey::new("acct_1", "k").scopes(["read"]))
        .await
        .unwrap();
    let key = key.key.expose_secret().to_string();
    let open = RoutePolicy::new();
    let _ = gate.admit(&HeaderMap::new(), &open).await; // no key
    let _ = gate.admit(&headers("garbage"), &open).await; // malformed
    assert!(gate.admit(&headers(&key), &open).await.is_ok()); // cold
    assert!(gate.admit(&headers(&key), &open).await.is_ok()); // cached
    let _ = gate
        .admit(&headers(&key), &RoutePolicy::new().require(["write"]))
        .await;
    let stats = gate.stats();
    assert_eq!(stats.requests(Path::Memory, "MISSING_API_KEY"), 1);
    assert_eq!(stats.requests(Path::Memory, "INVALID_API_KEY"), 1);
    assert_eq!(stats.requests(Path::Cold, "admitted"), 1);
    assert_eq!(stats.requests(Path::Cache, "admitted"), 1);
    assert_eq!(stats.requests(Path::Cache, "INSUFFICIENT_PERMISSIONS"), 1);
    assert_eq!((stats.admitted(), stats.refused()), (2, 3));
    assert_eq!((stats.cache_hits(), stats.cache_misses()), (2, 1));
    assert_eq!(stats.requests(Path::Cache, "no such outcome"), 0);
    // Without a recorder, publishing does nothing and fails nothing.
    stats.publish();
}

#[tokio::test]
async fn wrong_secrets_for_a_known_id_are_counted() {
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let real = gate.keys().create(NewKey::new("acct_1", "k")).await.unwrap();
    for _ in 0..3 {
        let refused = gate
            .admit(&headers(&forge(real.record.key_id.as_str())), &RoutePolicy::new())
            .await;
        assert!(refused.is_err());
    }
    let stats = gate.stats();
    assert_eq!(stats.wrong_secrets(), 3, "{stats:?}");
    assert_eq!(stats.requests(Path::Cold, "INVALID_API_KEY"), 3, "{stats:?}");
    assert_eq!(stats.shed(), 0);
}
