//! SQLite and PostgreSQL key stores for keygate: [`SqlStore`], with embedded migrations.
//!
//! One type serves both databases; the URL decides. `sqlite://keygate.db` is the embedded
//! default (the file is created if missing, in WAL mode), `postgres://…` is for many
//! instances sharing one set of keys. Both run the same SQL and pass the same
//! conformance suite as [`MemoryStore`](keygate_core::MemoryStore).
//!
//! # Features
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `sqlite` (default) | SQLite through `sqlx/sqlite` (which builds the bundled C library) |
//! | `postgres` (default) | PostgreSQL through `sqlx/postgres` (pure Rust) |
//!
//! At least one is needed. A URL for a database whose feature is off is refused by
//! [`SqlStore::connect`] with an error naming the feature.
//!
//! Only the argon2 hash of a secret is ever written; the plaintext key never reaches the
//! database.
//!
//! Tables: `keygate_keys` and `keygate_key_changes` (the revocation feed that running
//! services poll), created by [`SqlStore::migrate`] and tracked in sqlx's
//! `_sqlx_migrations`. On PostgreSQL the role needs `SELECT`, `INSERT` and `UPDATE` on
//! both (revocations lock the feed table briefly so that its sequence numbers become
//! visible in order); set a schema with `search_path`, e.g. through
//! [`PgConnectOptions::options`](sqlx::postgres::PgConnectOptions::options).
//!
//! # Example
//! ```
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::manage::KeyManager;
//! use keygate_core::NewKey;
//! use keygate_sqlx::SqlStore;
//!
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = SqlStore::connect("sqlite::memory:").await.unwrap();
//! store.migrate().await.unwrap();
//!
//! let keys = KeyManager::new(store).hasher(Argon2Hasher::insecure_fast());
//! let created = keys.create(NewKey::new("acct_1", "CI Pipeline").scopes(["read"])).await.unwrap();
//! let found = keys.find(&created.record.key_id).await.unwrap().unwrap();
//! assert_eq!(found.name, "CI Pipeline");
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("keygate-sqlx needs a database: enable its `sqlite` or `postgres` feature (or both)");

#[cfg(feature = "postgres")]
mod listen;
mod migrate;
mod store;

use std::fmt;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use std::str::FromStr;
use std::time::Duration;

use keygate_core::store::StoreError;
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// Re-exported so users name the same `sqlx` version as the store.
pub use sqlx;

/// How long a caller waits for a connection (and `connect` for the server) before the
/// store reports itself unavailable. A key lookup that waits longer has failed anyway.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long SQLite waits on a lock held by another writer before giving up.
#[cfg(feature = "sqlite")]
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

/// The databases a URL can name, whether or not their driver is compiled in, so that a
/// disabled one is refused by name rather than as an unknown URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Sqlite,
    Postgres,
}

impl Scheme {
    fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Scheme::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Scheme::Postgres)
        } else {
            None
        }
    }

    /// The refusal of a URL whose driver this build leaves out.
    #[cfg(not(all(feature = "sqlite", feature = "postgres")))]
    fn not_compiled_in(self) -> StoreError {
        let (database, feature) = match self {
            Scheme::Sqlite => ("SQLite", "sqlite"),
            Scheme::Postgres => ("PostgreSQL", "postgres"),
        };
        StoreError::Unavailable(format!(
            "{database} support is not compiled in: enable the `{feature}` feature of keygate-sqlx \
             (or of keygate, or keygate-cli)"
        ))
    }
}

/// The URL forms this build accepts, for the error about any other.
const EXPECTED_URLS: &str = match (cfg!(feature = "sqlite"), cfg!(feature = "postgres")) {
    (true, true) => "expected `sqlite://FILE` or `postgres://…`",
    (true, false) => "expected `sqlite://FILE` (PostgreSQL is not compiled in)",
    _ => "expected `postgres://…` (SQLite is not compiled in)",
};

/// Keys in SQLite or PostgreSQL. Cheap to clone: clones share one connection pool.
///
/// Tables: `keygate_keys` (one row per key) and `keygate_key_changes` (the revocation
/// feed read by [`changes_since`](keygate_core::KeyStore::changes_since)). Create them
/// with [`SqlStore::migrate`].
#[derive(Clone)]
pub struct SqlStore {
    backend: Backend,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password; show only which database this is.
        f.debug_struct("SqlStore")
            .field("database", &self.database())
            .finish()
    }
}

impl SqlStore {
    /// Connects to `sqlite://FILE` (created if missing), `sqlite::memory:`, or
    /// `postgres://…` / `postgresql://…`.
    ///
    /// Fails with [`StoreError::Unavailable`] for an unsupported or malformed URL or a
    /// database that cannot be reached within a few seconds.
    ///
    /// A URL for a database whose feature (`sqlite`, `postgres`) is off is refused with an
    /// error that names the feature.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        match Scheme::of(url) {
            #[cfg(feature = "sqlite")]
            Some(Scheme::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Unavailable(format!("invalid SQLite URL: {e}")))?;
                Self::connect_sqlite(options).await
            }
            #[cfg(feature = "postgres")]
            Some(Scheme::Postgres) => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
                Self::connect_postgres(options).await
            }
            #[cfg(not(all(feature = "sqlite", feature = "postgres")))]
            Some(scheme) => Err(scheme.not_compiled_in()),
            // Never echo the URL: it may hold a password.
            None => Err(StoreError::Unavailable(format!(
                "unsupported database URL: {EXPECTED_URLS}"
            ))),
        }
    }

    /// Connects to SQLite with `options`, adding what keygate relies on: the file is
    /// created if missing, WAL journaling (readers never block the writer) and a busy
    /// timeout so concurrent writers wait rather than fail.
    #[cfg(feature = "sqlite")]
    pub async fn connect_sqlite(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| connect_error("SQLite", e))?;
        Ok(Self::from_sqlite_pool(pool))
    }

    /// Connects to PostgreSQL with `options` (for instance with a `search_path` set via
    /// [`PgConnectOptions::options`]).
    #[cfg(feature = "postgres")]
    pub async fn connect_postgres(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| connect_error("PostgreSQL", e))?;
        Ok(Self::from_postgres_pool(pool))
    }

    /// A store over an existing SQLite pool.
    #[cfg(feature = "sqlite")]
    pub fn from_sqlite_pool(pool: SqlitePool) -> Self {
        Self {
            backend: Backend::Sqlite(pool),
        }
    }

    /// A store over an existing PostgreSQL pool.
    #[cfg(feature = "postgres")]
    pub fn from_postgres_pool(pool: PgPool) -> Self {
        Self {
            backend: Backend::Postgres(pool),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn database(&self) -> &'static str {
        match self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Creates or updates keygate's tables. Idempotent: run it at every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let failed =
            |e: sqlx::migrate::MigrateError| StoreError::Unavailable(format!("migration failed: {e}"));
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                let migrator = migrate::migrator(migrate::SQLITE).await.map_err(failed)?;
                migrator.run(pool).await.map_err(failed)
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let migrator = migrate::migrator(migrate::POSTGRES).await.map_err(failed)?;
                migrator.run(pool).await.map_err(failed)
            }
        }
    }

    /// Closes every connection of the pool; later calls fail as unavailable.
    pub async fn close(&self) {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => pool.close().await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }
}

fn connect_error(database: &str, e: sqlx::Error) -> StoreError {
    match e {
        // The pool retries a refused connection until its deadline, then says only this.
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!(
            "cannot connect to the {database} database within {}s: is it running and reachable?",
            ACQUIRE_TIMEOUT.as_secs()
        )),
        e => StoreError::Unavailable(format!("cannot connect to the {database} database: {e}")),
    }
}
