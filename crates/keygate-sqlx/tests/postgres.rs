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
