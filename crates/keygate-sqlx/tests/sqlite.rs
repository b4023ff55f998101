//! `SqlStore` on SQLite files: the store conformance suite, and what is specific to SQL.

#![cfg(feature = "sqlite")]

use keygate_core::conformance::Case;
use keygate_core::hash::Argon2Hasher;
use keygate_core::manage::KeyManager;
use keygate_core::store::StoreError;
use keygate_core::{KeyStore, NewKey};
use keygate_sqlx::SqlStore;

fn url(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}", dir.path().join(name).display())
}

/// Each case on a migrated store in a file of its own, removed with its directory.
async fn in_a_fresh_file(case: Case<SqlStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&url(&dir, "case.db")).await.unwrap();
    store.migrate().await.unwrap();
    case(store).await;
}

keygate_core::store_tests!(harness = in_a_fresh_file);

#[tokio::test]
async fn connect_creates_a_missing_file_and_migrate_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    assert!(!path.exists());
    let store = SqlStore::connect(&url(&dir, "fresh.db")).await.unwrap();
    assert!(path.exists(), "the database file is created");
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.is_empty().await.unwrap());
    assert_eq!(store.database(), "sqlite");
}

#[tokio::test]
async fn keys_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqlStore::connect(&url(&dir, "keys.db")).await.unwrap();
    first.migrate().await.unwrap();
    let keys = KeyManager::new(first.clone()).hasher(Argon2Hasher::insecure_fast());
    let created = keys
        .create(NewKey::new("acct_1", "durable").scopes(["read"]))
        .await
        .unwrap();
    first.close().await;

    let second = SqlStore::connect(&url(&dir, "keys.db")).await.unwrap();
    second.migrate().await.unwrap();
    assert_eq!(
        second.find(&created.record.key_id).await.unwrap(),
        Some(created.record)
    );
}

#[tokio::test]
async fn the_plaintext_key_is_nowhere_in_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&url(&dir, "secret.db")).await.unwrap();
    store.migrate().await.unwrap();
    let keys = KeyManager::new(store.clone()).hasher(Argon2Hasher::insecure_fast());
    let created = keys.create(NewKey::new("acct_1", "secret")).await.unwrap();
    let parsed = keys.key_format().parse(created.key.expose_secret()).unwrap();
    let secret = parsed.secret().to_owned();
    store.close().await;

    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(
        haystack.contains(created.record.key_id.as_str()),
        "the key id is stored"
    );
    assert!(
        !haystack.contains(&secret),
        "the secret is not, in any file of the database"
    );
}

#[tokio::test]
async fn a_store_used_before_migrate_reports_a_store_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&url(&dir, "unmigrated.db")).await.unwrap();
    let err = store.find(&"kg_live_abcdefgh".into()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("keygate_keys")),
        "{err}"
    );
}

#[tokio::test]
async fn unsupported_and_unreachable_databases_are_unavailable() {
    let err = SqlStore::connect("mysql://user:hunter2@localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        !err.to_string().contains("hunter2"),
        "the URL's password is never echoed: {err}"
    );

    let err = SqlStore::connect("sqlite:///nonexistent-dir-for-keygate/keys.db")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("SQLite")),
        "{err}"
    );
}
