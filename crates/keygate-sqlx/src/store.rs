//! [`KeyStore`] for [`SqlStore`]: one set of SQL statements for SQLite and PostgreSQL.
//!
//! Both databases accept `$N` placeholders, `RETURNING` and the same `CASE`/`COALESCE`
//! expressions, so each statement is written once. Each method body is expanded once
//! per driver by [`on_backend!`], because sqlx's query types are per driver.

use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use keygate_core::account::OwnerLimits;
use keygate_core::clock::Month;
use keygate_core::hash::SecretHash;
use keygate_core::record::{KeyRecord, Refused, SpendDelta, Usage, UsageDelta};
use keygate_core::store::{Changes, Page, Pushed, StoreError};
use keygate_core::usage::{day_of, DailyUsage, RETENTION_DAYS};
use keygate_core::{KeyId, KeyStore, OwnerId, RateLimit, Scopes};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{Backend, SqlStore};

macro_rules! columns {
    () => {
        "key_id, owner, name, secret_hash, scopes, environment, created_at, expires_at, revoked_at, \
         metadata, rate_limits, spend_cap, request_count, last_used_at, last_user_agent"
    };
}

const FIND: &str = concat!("SELECT ", columns!(), " FROM keygate_keys WHERE key_id = $1");

const INSERT: &str = concat!(
    "INSERT INTO keygate_keys (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
);

const LIST_BY_OWNER: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM keygate_keys WHERE owner = $1 ORDER BY created_at, key_id LIMIT $2 OFFSET $3"
);

const LIST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM keygate_keys ORDER BY created_at, key_id LIMIT $1 OFFSET $2"
);

const IS_EMPTY: &str = "SELECT key_id FROM keygate_keys LIMIT 1";

// COALESCE keeps the first revocation time: revoking twice changes nothing.
const REVOKE: &str = concat!(
    "UPDATE keygate_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1 RETURNING ",
    columns!()
);

const SET_EXPIRY: &str = concat!(
    "UPDATE keygate_keys SET expires_at = $2 WHERE key_id = $1 RETURNING ",
    columns!()
);

// The old key's expiry moves only while it is not revoked and was never rotated: the
// first rotation's row in keygate_rotations (below, in the same transaction) makes any
// other rotation of it find nothing to update.
const REPLACE_OLD: &str = concat!(
    "UPDATE keygate_keys SET expires_at = $2 WHERE key_id = $1 AND revoked_at IS NULL \
     AND NOT EXISTS (SELECT 1 FROM keygate_rotations WHERE old_key_id = $1) RETURNING ",
    columns!()
);

const RECORD_ROTATION: &str =
    "INSERT INTO keygate_rotations (old_key_id, new_key_id, rotated_at) VALUES ($1, $2, $3)";

const APPEND_CHANGE: &str = "INSERT INTO keygate_key_changes (key_id, changed_at) VALUES ($1, $2)";

// PostgreSQL hands out sequence numbers at insert but makes rows visible at commit, so
// without this lock a poller could see seq 8 before seq 7 commits, move its cursor to 8
// and never see 7. Writers of the feed take turns; readers are not blocked. Revocations
// are rare, so the serialisation costs nothing that matters. (SQLite has one writer.)
#[cfg(feature = "postgres")]
const LOCK_CHANGES_POSTGRES: &str = "LOCK TABLE keygate_key_changes IN EXCLUSIVE MODE";

/// The channel every change is announced on, with the key id as the payload: sent in the
/// change's transaction, so listeners hear it when (and only if) it commits, whichever
/// process wrote through `SqlStore` (a service, the CLI).
#[cfg(feature = "postgres")]
pub(crate) const CHANGES_CHANNEL: &str = "keygate_changes";

#[cfg(feature = "postgres")]
const NOTIFY_POSTGRES: &str = "SELECT pg_notify('keygate_changes', $1)";

// Saturating add (no overflow error in PostgreSQL, no float in SQLite); the latest use
// wins, whatever order the batches arrive in. Every SET reads the row's old values.
const RECORD_USAGE: &str = "UPDATE keygate_keys SET \
     request_count = CASE WHEN request_count > 9223372036854775807 - $2 \
         THEN 9223372036854775807 ELSE request_count + $2 END, \
     last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at <= $3 \
         THEN $3 ELSE last_used_at END, \
     last_user_agent = CASE WHEN last_used_at IS NULL OR last_used_at <= $3 \
         THEN $4 ELSE last_user_agent END \
     WHERE key_id = $1";

// Totals saturate at i64::MAX (the column's range) instead of failing on overflow.
const RECORD_SPEND: &str = "INSERT INTO keygate_spend (key_id, month, micro_cents) VALUES ($1, $2, $3) \
     ON CONFLICT (key_id, month) DO UPDATE SET micro_cents = CASE \
         WHEN keygate_spend.micro_cents > 9223372036854775807 - excluded.micro_cents \
         THEN 9223372036854775807 ELSE keygate_spend.micro_cents + excluded.micro_cents END";

// Only for a known key (the SELECT finds no row otherwise); saturating like the rest.
const RECORD_DAILY: &str = "INSERT INTO keygate_usage_daily (key_id, day, requests, spend, \
     refused_expired, refused_scope, refused_quota, refused_rate) \
     SELECT key_id, $2, $3, $4, $5, $6, $7, $8 FROM keygate_keys WHERE key_id = $1 \
     ON CONFLICT (key_id, day) DO UPDATE SET \
     requests = CASE WHEN keygate_usage_daily.requests > 9223372036854775807 - excluded.requests \
         THEN 9223372036854775807 ELSE keygate_usage_daily.requests + excluded.requests END, \
     spend = CASE WHEN keygate_usage_daily.spend > 9223372036854775807 - excluded.spend \
         THEN 9223372036854775807 ELSE keygate_usage_daily.spend + excluded.spend END, \
     refused_expired = keygate_usage_daily.refused_expired + excluded.refused_expired, \
     refused_scope = keygate_usage_daily.refused_scope + excluded.refused_scope, \
     refused_quota = keygate_usage_daily.refused_quota + excluded.refused_quota, \
     refused_rate = keygate_usage_daily.refused_rate + excluded.refused_rate";

const PRUNE_DAILY: &str = "DELETE FROM keygate_usage_daily WHERE day < $1";

const DAILY_USAGE: &str = "SELECT d.key_id, d.day, d.requests, d.spend, d.refused_expired, \
     d.refused_scope, d.refused_quota, d.refused_rate FROM keygate_usage_daily d \
     JOIN keygate_keys k ON k.key_id = d.key_id WHERE k.owner = $1 AND d.day >= $2 \
     ORDER BY d.key_id, d.day";

const SPENT: &str = "SELECT micro_cents FROM keygate_spend WHERE key_id = $1 AND month = $2";

const CHANGES_SINCE: &str =
    "SELECT seq, key_id FROM keygate_key_changes WHERE seq > $1 ORDER BY seq LIMIT $2";

const CHANGES_HEAD: &str = "SELECT COALESCE(MAX(seq), 0) AS head FROM keygate_key_changes";

/// The most changes one `changes_since` returns; the cursor then points after the last
/// one returned, so the next poll continues from there.
const CHANGES_BATCH: i64 = 10_000;

/// The `INSERT` of a whole record, bound: for `insert` and, inside its transaction,
/// `replace`.
macro_rules! insert_record {
    ($record:expr) => {{
        let record: &KeyRecord = $record;
        sqlx::query(INSERT)
            .bind(record.key_id.as_str())
            .bind(record.owner.as_str())
            .bind(record.name.as_str())
            .bind(record.secret_hash.as_str())
            .bind(Json(&record.scopes))
            .bind(record.environment.as_str())
            .bind(record.created_at)
            .bind(record.expires_at)
            .bind(record.revoked_at)
            .bind(Json(&record.metadata))
            .bind(record.rate_limits.as_ref().map(Json))
            .bind(record.spend_cap.map(saturating_i64))
            .bind(saturating_i64(record.usage.request_count))
            .bind(record.usage.last_used_at)
            .bind(record.usage.last_user_agent.as_deref())
    }};
}

/// Runs `$body` with `$pool` bound to the driver's pool (and `$lock_changes` to the
/// statement, if the driver needs one, that orders writers of the change feed, and
/// `$notify` to the one that pushes a change to listeners); the body
/// is type-checked once per driver compiled in.
macro_rules! on_backend {
    ($store:expr, $pool:ident => $body:expr) => {
        on_backend!($store, $pool, _lock_changes, _notify => $body)
    };
    ($store:expr, $pool:ident, $lock_changes:ident, $notify:ident => $body:expr) => {
        match $store.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($pool) => {
                // SQLite has a single writer: nothing to order; and no push (polled).
                let $lock_changes: Option<&'static str> = None;
                let $notify: Option<&'static str> = None;
                $body
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres($pool) => {
                let $lock_changes: Option<&'static str> = Some(LOCK_CHANGES_POSTGRES);
                let $notify: Option<&'static str> = Some(NOTIFY_POSTGRES);
                $body
            }
        }
    };
}

impl KeyStore for SqlStore {
    async fn find(&self, key_id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        on_backend!(self, pool => {
            let row = sqlx::query(FIND)
                .bind(key_id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(store_error)?;
            row.as_ref().map(record_from_row).transpose()
        })
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        on_backend!(self, pool => {
            insert_record!(record).execute(pool).await.map_err(store_error)?;
            Ok(())
        })
    }

    async fn list_by_owner(&self, owner: &OwnerId, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let page = Page::new(page.offset, page.limit);
        on_backend!(self, pool => {
            let rows = sqlx::query(LIST_BY_OWNER)
                .bind(owner.as_str())
                .bind(i64::from(page.limit))
                .bind(saturating_i64(page.offset))
                .fetch_all(pool)
                .await
                .map_err(store_error)?;
            rows.iter().map(record_from_row).collect()
        })
    }

    async fn list(&self, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let page = Page::new(page.offset, page.limit);
        on_backend!(self, pool => {
            let rows = sqlx::query(LIST)
                .bind(i64::from(page.limit))
                .bind(saturating_i64(page.offset))
                .fetch_all(pool)
                .await
                .map_err(store_error)?;
            rows.iter().map(record_from_row).collect()
        })
    }

    async fn revoke(&self, key_id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError> {
        self.change(REVOKE, key_id, Some(at), at).await
    }

    async fn set_expiry(
        &self,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.change(SET_EXPIRY, key_id, expires_at, Utc::now()).await
    }

    async fn replace(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        old_expires_at: DateTime<Utc>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let now = Utc::now();
        on_backend!(self, pool, lock_changes, notify => {
            // One transaction: the old key's expiry, the proof of its rotation, the new key
            // and the change, or none of them (a dropped transaction rolls back).
            let mut tx = pool.begin().await.map_err(store_error)?;
            let Some(row) = sqlx::query(REPLACE_OLD)
                .bind(old.as_str())
                .bind(old_expires_at)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?
            else {
                return Ok(None);
            };
            let updated = record_from_row(&row)?;
            // Two rotations racing past the UPDATE meet here: the second is a unique
            // violation, rolled back. It reads as "already rotated", not as an id clash.
            match sqlx::query(RECORD_ROTATION)
                .bind(old.as_str())
                .bind(new.key_id.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(store_error)
            {
                Ok(_) => {}
                Err(StoreError::Conflict) => return Ok(None),
                Err(e) => return Err(e),
            }
            insert_record!(new).execute(&mut *tx).await.map_err(store_error)?;
            if let Some(lock) = lock_changes {
                sqlx::query(lock).execute(&mut *tx).await.map_err(store_error)?;
            }
            sqlx::query(APPEND_CHANGE)
                .bind(old.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            if let Some(notify) = notify {
                sqlx::query(notify).bind(old.as_str()).execute(&mut *tx).await.map_err(store_error)?;
            }
            tx.commit().await.map_err(store_error)?;
            Ok(Some(updated))
        })
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Rows are locked in key order so that two concurrent batches cannot deadlock.
        let mut sorted: Vec<&UsageDelta> = batch.iter().collect();
        sorted.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(store_error)?;
            for delta in &sorted {
                // An unknown key id updates no row: skipped, as the contract says. Refusals
                // and charges alone are not a use of the key.
                if delta.requests > 0 {
                    sqlx::query(RECORD_USAGE)
                        .bind(delta.key_id.as_str())
                        .bind(saturating_i64(delta.requests))
                        .bind(delta.last_used_at)
                        .bind(delta.last_user_agent.as_deref())
                        .execute(&mut *tx)
                        .await
                        .map_err(store_error)?;
                }
                let refused = &delta.refused;
                sqlx::query(RECORD_DAILY)
                    .bind(delta.key_id.as_str())
                    .bind(day_of(delta.last_used_at).to_string())
                    .bind(saturating_i64(delta.requests))
                    .bind(saturating_i64(delta.spend))
                    .bind(saturating_i64(refused.expired))
                    .bind(saturating_i64(refused.scope))
                    .bind(saturating_i64(refused.quota))
                    .bind(saturating_i64(refused.rate))
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
            }
            if let Some(latest) = sorted.iter().map(|d| d.last_used_at).max() {
                let cutoff = day_of(latest) - chrono::Days::new(u64::from(RETENTION_DAYS));
                sqlx::query(PRUNE_DAILY)
                    .bind(cutoff.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
            }
            tx.commit().await.map_err(store_error)
        })
    }

    async fn daily_usage(&self, owner: &OwnerId, since: NaiveDate) -> Result<Vec<DailyUsage>, StoreError> {
        on_backend!(self, pool => {
            let rows = sqlx::query(DAILY_USAGE)
                .bind(owner.as_str())
                .bind(since.to_string())
                .fetch_all(pool)
                .await
                .map_err(store_error)?;
            rows.iter()
                .map(|row| {
                    let day: String = row.try_get("day").map_err(store_error)?;
                    let count = |column: &str| -> Result<u64, StoreError> {
                        non_negative(row.try_get(column).map_err(store_error)?, column)
                    };
                    Ok(DailyUsage {
                        spend: count("spend")?,
                        refused: Refused {
                            expired: count("refused_expired")?,
                            scope: count("refused_scope")?,
                            quota: count("refused_quota")?,
                            rate: count("refused_rate")?,
                        },
                        key_id: KeyId::new(row.try_get::<String, _>("key_id").map_err(store_error)?),
                        day: day
                            .parse()
                            .map_err(|e| StoreError::Corrupt(format!("keygate_usage_daily.day: {e}")))?,
                        requests: non_negative(row.try_get("requests").map_err(store_error)?, "keygate_usage_daily.requests")?,
                    })
                })
                .collect()
        })
    }

    async fn record_spend(&self, batch: &[SpendDelta]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        on_backend!(self, pool => {
            // One transaction: the whole batch is recorded, or none of it is (and the
            // meter keeps it for the next flush).
            let mut tx = pool.begin().await.map_err(store_error)?;
            for delta in batch {
                sqlx::query(RECORD_SPEND)
                    .bind(delta.key_id.as_str())
                    .bind(delta.month.to_string())
                    .bind(saturating_i64(delta.micro_cents))
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
            }
            tx.commit().await.map_err(store_error)?;
            Ok(())
        })
    }

    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, StoreError> {
        on_backend!(self, pool => {
            let row = sqlx::query(SPENT)
                .bind(key_id.as_str())
                .bind(month.to_string())
                .fetch_optional(pool)
                .await
                .map_err(store_error)?;
            match row {
                Some(row) => non_negative(row.try_get::<i64, _>("micro_cents").map_err(store_error)?, "micro_cents"),
                None => Ok(0),
            }
        })
    }

    async fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Pushed>> {
        match self.backend() {
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => crate::listen::subscribe(pool).await,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => None,
        }
    }

    async fn changes_since(&self, cursor: u64) -> Result<Changes, StoreError> {
        on_backend!(self, pool => {
            let rows = sqlx::query(CHANGES_SINCE)
                .bind(saturating_i64(cursor))
                .bind(CHANGES_BATCH)
                .fetch_all(pool)
                .await
                .map_err(store_error)?;
            let mut changes = Changes { keys: Vec::with_capacity(rows.len()), cursor };
            for row in &rows {
                let seq: i64 = row.try_get("seq").map_err(store_error)?;
                let key_id: String = row.try_get("key_id").map_err(store_error)?;
                changes.cursor = non_negative(seq, "keygate_key_changes.seq")?;
                changes.keys.push(KeyId::new(key_id));
            }
            if rows.is_empty() && cursor > 0 {
                // Nothing after `cursor`: answer with the newest change's seq, so that a
                // cursor past it (`u64::MAX`, "from now on") becomes a real position.
                let row = sqlx::query(CHANGES_HEAD).fetch_one(pool).await.map_err(store_error)?;
                let head: i64 = row.try_get("head").map_err(store_error)?;
                changes.cursor = non_negative(head, "keygate_key_changes.seq")?;
            }
            Ok(changes)
        })
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        on_backend!(self, pool => {
            let row = sqlx::query(IS_EMPTY).fetch_optional(pool).await.map_err(store_error)?;
            Ok(row.is_none())
        })
    }

    async fn owner_limits(&self, owner: &OwnerId) -> Result<Option<OwnerLimits>, StoreError> {
        self.find_owner_limits(owner).await
    }

    async fn set_owner_limits(&self, limits: &OwnerLimits) -> Result<(), StoreError> {
        self.store_owner_limits(limits).await
    }
}

mod owners;

impl SqlStore {
    /// Runs `update` (binding the key id and `value`) and appends the key to the change
    /// feed, in one transaction; `None` and nothing appended for an unknown key.
    async fn change(
        &self,
        update: &'static str,
        key_id: &KeyId,
        value: Option<DateTime<Utc>>,
        changed_at: DateTime<Utc>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        on_backend!(self, pool, lock_changes, notify => {
            // The UPDATE comes first so SQLite takes its write lock at once (waiting on the
            // busy timeout) instead of failing to upgrade a read lock later.
            let mut tx = pool.begin().await.map_err(store_error)?;
            let Some(row) = sqlx::query(update)
                .bind(key_id.as_str())
                .bind(value)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?
            else {
                return Ok(None);
            };
            let record = record_from_row(&row)?;
            if let Some(lock) = lock_changes {
                sqlx::query(lock).execute(&mut *tx).await.map_err(store_error)?;
            }
            sqlx::query(APPEND_CHANGE)
                .bind(key_id.as_str())
                .bind(changed_at)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            if let Some(notify) = notify {
                sqlx::query(notify).bind(key_id.as_str()).execute(&mut *tx).await.map_err(store_error)?;
            }
            tx.commit().await.map_err(store_error)?;
            Ok(Some(record))
        })
    }
}

/// Reads a `keygate_keys` row of either driver.
fn record_from_row<'r, R>(row: &'r R) -> Result<KeyRecord, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    let environment: String = row.try_get("environment").map_err(store_error)?;
    let Json(scopes) = row
        .try_get::<Json<serde_json::Value>, _>("scopes")
        .map_err(store_error)?;
    let Json(metadata) = row
        .try_get::<Json<serde_json::Value>, _>("metadata")
        .map_err(store_error)?;
    let rate_limits = row
        .try_get::<Option<Json<serde_json::Value>>, _>("rate_limits")
        .map_err(store_error)?
        .map(|Json(v)| from_json::<Vec<RateLimit>>(v, "rate_limits"))
        .transpose()?;
    let spend_cap = row
        .try_get::<Option<i64>, _>("spend_cap")
        .map_err(store_error)?
        .map(|cap| non_negative(cap, "spend_cap"))
        .transpose()?;
    let request_count: i64 = row.try_get("request_count").map_err(store_error)?;
    Ok(KeyRecord {
        key_id: KeyId::new(row.try_get::<String, _>("key_id").map_err(store_error)?),
        owner: OwnerId::new(row.try_get::<String, _>("owner").map_err(store_error)?),
        name: row.try_get("name").map_err(store_error)?,
        scopes: from_json::<Scopes>(scopes, "scopes")?,
        environment: environment
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("keygate_keys.environment: {e}")))?,
        secret_hash: SecretHash::new(row.try_get::<String, _>("secret_hash").map_err(store_error)?),
        created_at: row.try_get("created_at").map_err(store_error)?,
        expires_at: row.try_get("expires_at").map_err(store_error)?,
        revoked_at: row.try_get("revoked_at").map_err(store_error)?,
        metadata,
        rate_limits,
        spend_cap,
        usage: Usage {
            request_count: non_negative(request_count, "request_count")?,
            last_used_at: row.try_get("last_used_at").map_err(store_error)?,
            last_user_agent: row.try_get("last_user_agent").map_err(store_error)?,
        },
    })
}

fn from_json<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    column: &str,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("keygate_keys.{column}: {e}")))
}

fn non_negative(n: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column} is negative")))
}

/// Both databases store signed 64-bit integers; 2^63 micro-cents or requests is, in
/// practice, unlimited.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        e @ (sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. }) => StoreError::Corrupt(e.to_string()),
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        e => StoreError::Unavailable(e.to_string()),
    }
}
