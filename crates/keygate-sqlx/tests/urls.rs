//! `SqlStore::connect` and the URL schemes of the databases compiled in: every feature
//! set refuses what it cannot serve with an error, never a panic, and never echoes the
//! URL (it may hold a password).
//!
//! The tests for a disabled database run only in builds without its feature:
//! `cargo test -p keygate-sqlx --no-default-features --features sqlite` (or `postgres`).

use keygate_core::store::StoreError;
use keygate_sqlx::SqlStore;

async fn refusal(url: &str) -> String {
    match SqlStore::connect(url).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(
                !message.contains("hunter2"),
                "the URL's password is echoed: {message}"
            );
            message
        }
        Err(other) => panic!("{url}: expected Unavailable, got {other:?}"),
        Ok(store) => panic!("{url}: connected to {}", store.database()),
    }
}

#[tokio::test]
async fn an_unknown_scheme_is_refused_with_the_schemes_this_build_accepts() {
    let message = refusal("mysql://user:hunter2@localhost/db").await;
    assert!(message.contains("unsupported database URL"), "{message}");
    assert_eq!(
        message.contains("sqlite://"),
        cfg!(feature = "sqlite"),
        "{message}"
    );
    assert_eq!(
        message.contains("postgres://"),
        cfg!(feature = "postgres"),
        "{message}"
    );
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_postgres_url_without_the_postgres_feature_is_refused_by_name() {
    for url in [
        "postgres://postgres:hunter2@127.0.0.1:5432/test",
        "postgresql://postgres:hunter2@127.0.0.1:5432/test",
    ] {
        let message = refusal(url).await;
        assert!(
            message.contains("PostgreSQL support is not compiled in"),
            "{message}"
        );
        assert!(message.contains("`postgres` feature"), "{message}");
    }
}

#[cfg(not(feature = "sqlite"))]
#[tokio::test]
async fn a_sqlite_url_without_the_sqlite_feature_is_refused_by_name() {
    for url in ["sqlite::memory:", "sqlite://keys.db", "sqlite:///tmp/hunter2.db"] {
        let message = refusal(url).await;
        assert!(message.contains("SQLite support is not compiled in"), "{message}");
        assert!(message.contains("`sqlite` feature"), "{message}");
    }
}
