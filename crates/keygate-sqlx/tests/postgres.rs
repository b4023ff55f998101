//! `SqlStore` on PostgreSQL: the store conformance suite, one test per case, each in a
//! fresh schema.
//!
//! Set `KEYGATE_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`) to run
//! it. Without it the test is skipped, unless `KEYGATE_REQUIRE_SERVICES=1`, when a
//! missing database is a failure.

#![cfg(feature = "postgres")]

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use keygate_core::conformance::Case;
use keygate_core::store::StoreError;
use keygate_sqlx::sqlx::postgres::PgConnectOptions;
use keygate_sqlx::SqlStore;
use rand::Rng;

fn postgres_url() -> Option<String> {
    match std::env::var("KEYGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("KEYGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "KEYGATE_REQUIRE_SERVICES=1 but KEYGATE_TEST_POSTGRES_URL is not set"
            );
            eprintln!("skipped: set KEYGATE_TEST_POSTGRES_URL to run the PostgreSQL store tests");
            None
        }
    }
}

/// Creates `kg_test_<random>` schemas on demand and drops them all at the end.
struct Schemas {
    admin: keygate_sqlx::sqlx::PgPool,
    options: PgConnectOptions,
    created: Arc<Mutex<Vec<String>>>,
}

impl Schemas {
    async fn new(url: &str) -> Self {
        let options = PgConnectOptions::from_str(url).unwrap();
        let admin = keygate_sqlx::sqlx::PgPool::connect_with(options.clone())
            .await
            .unwrap();
        Self {
            admin,
            options,
            created: Arc::default(),
        }
    }

    /// A migrated store whose connections all use a new, empty schema.
    async fn store(&self) -> SqlStore {
        let schema = format!("kg_test_{:016x}", rand::thread_rng().gen::<u64>());
        keygate_sqlx::sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&self.admin)
            .await
            .unwrap();
        self.created.lock().unwrap().push(schema.clone());
        let options = self.options.clone().options([("search_path", schema.as_str())]);
        let store = SqlStore::connect_postgres(options).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    async fn drop_all(&self) {
        let schemas = std::mem::take(&mut *self.created.lock().unwrap());
        for schema in schemas {
            keygate_sqlx::sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&self.admin)
                .await
                .unwrap();
        }
    }
}

/// Each case in a schema of its own, dropped afterwards even when the case fails; skipped
/// without `KEYGATE_TEST_POSTGRES_URL`.
async fn in_a_fresh_schema(case: Case<SqlStore>) {
    let Some(url) = postgres_url() else { return };
    let schemas = Schemas::new(&url).await;
    let store = schemas.store().await;
    // In a task, so that the schema is dropped even when the case fails.
    let outcome = tokio::spawn(case(store)).await;
    schemas.drop_all().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

keygate_core::store_tests!(harness = in_a_fresh_schema);

#[tokio::test]
async fn postgres_migrate_is_idempotent_and_unreachable_servers_are_unavailable() {
    let Some(url) = postgres_url() else { return };
    let schemas = Schemas::new(&url).await;
    let store = schemas.store().await;
    store.migrate().await.unwrap();
    assert_eq!(store.database(), "postgres");
    schemas.drop_all().await;

    // Nothing listens on port 1.
    let err = SqlStore::connect("postgres://postgres:hunter2@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("PostgreSQL")),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// `gate`'s answer to `key` on a route with no policy.
async fn status(gate: &keygate_core::Gate, key: &str) -> u16 {
    let mut headers = keygate_core::http::HeaderMap::new();
    headers.insert("x-api-key", key.parse().unwrap());
    match gate.admit(&headers, &keygate_core::RoutePolicy::new()).await {
        Ok(_) => 200,
        Err(rejection) => rejection.status().as_u16(),
    }
}

/// Waits (bounded, 10 s) until `gate` refuses `key`; whether it did.
async fn refused_soon(gate: &keygate_core::Gate, key: &str) -> bool {
    for _ in 0..500 {
        if status(gate, key).await == 401 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_another_process_by_push_with_no_polling() {
    use keygate_core::background::Background;
    use keygate_core::hash::Argon2Hasher;
    use keygate_core::{Gate, NewKey};

    let Some(url) = postgres_url() else { return };
    let schemas = Schemas::new(&url).await;
    let store = schemas.store().await;
    // Two processes over one database: one revokes, the other only listens (its poll
    // of the change feed is off, and its cache would keep the key for minutes).
    let writer = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let reader = Gate::builder(store.clone())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let background = reader.spawn_background(Background {
        feed_poll: None,
        ..Background::default()
    });
    let probe = writer.keys().create(NewKey::new("acct", "probe")).await.unwrap();
    let target = writer.keys().create(NewKey::new("acct", "target")).await.unwrap();
    let (probe_key, target_key) = (probe.key.expose_secret(), target.key.expose_secret());
    assert_eq!(status(&reader, probe_key).await, 200);
    assert_eq!(status(&reader, target_key).await, 200, "cached by the reader");

    // The listener starts with the reader's background task: revoke the probe until the
    // reader hears of it, so that the target's revocation below is not sent before.
    let mut heard = false;
    for _ in 0..50 {
        writer.keys().revoke(&probe.record.key_id).await.unwrap();
        if refused_soon_within(&reader, probe_key, 10).await {
            heard = true;
            break;
        }
    }
    assert!(heard, "the reader never heard the probe's revocation");

    writer.keys().revoke(&target.record.key_id).await.unwrap();
    let refused = refused_soon(&reader, target_key).await;
    background.shutdown().await;
    schemas.drop_all().await;
    assert!(
        refused,
        "the reader still admits a key revoked by another process"
    );
}

/// [`refused_soon`] with a shorter bound: `tries` × 20 ms.
async fn refused_soon_within(gate: &keygate_core::Gate, key: &str, tries: usize) -> bool {
    for _ in 0..tries {
        if status(gate, key).await == 401 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
