//! keygate's migrations, embedded in the binary at compile time with `include_str!`.
//!
//! sqlx's `migrate!` macro needs its `macros` feature (and a proc-macro build); a
//! [`MigrationSource`] over `include_str!` embeds the same files without it. The files
//! live in `migrations/sqlite` and `migrations/postgres`; applied versions and checksums
//! are tracked in sqlx's usual `_sqlx_migrations` table.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// A migration: version, description, SQL.
type Embedded = (i64, &'static str, &'static str);

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[Embedded] = &[
    (
        20250101000000,
        "create keys",
        include_str!("../migrations/sqlite/20250101000000_create_keys.sql"),
    ),
    (
        20261201000000,
        "rotations",
        include_str!("../migrations/sqlite/20261201000000_rotations.sql"),
    ),
    (
        20261201000100,
        "spend",
        include_str!("../migrations/sqlite/20261201000100_spend.sql"),
    ),
    (
        20261201000200,
        "owners",
        include_str!("../migrations/sqlite/20261201000200_owners.sql"),
    ),
    (
        20261201000300,
        "usage daily",
        include_str!("../migrations/sqlite/20261201000300_usage_daily.sql"),
    ),
];

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[Embedded] = &[
    (
        20250101000000,
        "create keys",
        include_str!("../migrations/postgres/20250101000000_create_keys.sql"),
    ),
    (
        20261201000000,
        "rotations",
        include_str!("../migrations/postgres/20261201000000_rotations.sql"),
    ),
    (
        20261201000100,
        "spend",
        include_str!("../migrations/postgres/20261201000100_spend.sql"),
    ),
    (
        20261201000200,
        "owners",
        include_str!("../migrations/postgres/20261201000200_owners.sql"),
    ),
    (
        20261201000300,
        "usage daily",
        include_str!("../migrations/postgres/20261201000300_usage_daily.sql"),
    ),
];

#[derive(Debug)]
struct Source(&'static [Embedded]);

impl<'s> MigrationSource<'s> for Source {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

/// The migrator for one set of embedded migrations.
pub(crate) async fn migrator(
    migrations: &'static [Embedded],
) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Source(migrations)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_match_the_files_in_the_migrations_folders() {
        let sets: &[(&str, &[Embedded])] = &[
            #[cfg(feature = "sqlite")]
            ("sqlite", SQLITE),
            #[cfg(feature = "postgres")]
            ("postgres", POSTGRES),
        ];
        for &(dir, embedded) in sets {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let listed: Vec<String> = embedded
                .iter()
                .map(|(v, d, _)| format!("{v}_{}.sql", d.replace(' ', "_")))
                .collect();
            assert_eq!(
                files, listed,
                "every file in migrations/{dir} is embedded, in order"
            );
        }
    }
}
