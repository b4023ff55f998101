//! Owners' limits in `keygate_owners`: read with each key's cold verification, and set
//! in one transaction with the owner's keys appended to the change feed (and, on
//! PostgreSQL, announced), so every instance re-reads those keys.

use chrono::{DateTime, Utc};
use keygate_core::account::OwnerLimits;
use keygate_core::store::StoreError;
use keygate_core::{OwnerId, RateLimit};
use sqlx::types::Json;
use sqlx::Row;

use super::{from_json, non_negative, saturating_i64, store_error};
#[cfg(feature = "postgres")]
use super::{LOCK_CHANGES_POSTGRES, NOTIFY_POSTGRES};
use crate::{Backend, SqlStore};

const FIND_OWNER: &str = "SELECT rate_limits, spend_cap, updated_at FROM keygate_owners WHERE owner = $1";

const UPSERT_OWNER: &str = "INSERT INTO keygate_owners (owner, rate_limits, spend_cap, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (owner) DO UPDATE SET rate_limits = excluded.rate_limits, \
     spend_cap = excluded.spend_cap, updated_at = excluded.updated_at";

const APPEND_OWNERS_KEYS: &str = "INSERT INTO keygate_key_changes (key_id, changed_at) \
     SELECT key_id, $2 FROM keygate_keys WHERE owner = $1 ORDER BY key_id";

#[cfg(feature = "postgres")]
const NOTIFY_OWNERS_KEYS_POSTGRES: &str =
    "SELECT pg_notify('keygate_changes', key_id) FROM keygate_keys WHERE owner = $1";

impl SqlStore {
    pub(super) async fn find_owner_limits(&self, owner: &OwnerId) -> Result<Option<OwnerLimits>, StoreError> {
        on_backend!(self, pool => {
            let row = sqlx::query(FIND_OWNER)
                .bind(owner.as_str())
                .fetch_optional(pool)
                .await
                .map_err(store_error)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let Json(rate_limits) = row
                .try_get::<Json<serde_json::Value>, _>("rate_limits")
                .map_err(store_error)?;
            let spend_cap = row
                .try_get::<Option<i64>, _>("spend_cap")
                .map_err(store_error)?
                .map(|cap| non_negative(cap, "keygate_owners.spend_cap"))
                .transpose()?;
            Ok(Some(OwnerLimits {
                owner: owner.clone(),
                rate_limits: from_json::<Vec<RateLimit>>(rate_limits, "keygate_owners.rate_limits")?,
                spend_cap,
                updated_at: row.try_get::<DateTime<Utc>, _>("updated_at").map_err(store_error)?,
            }))
        })
    }

    pub(super) async fn store_owner_limits(&self, limits: &OwnerLimits) -> Result<(), StoreError> {
        on_backend!(self, pool, lock_changes, notify => {
            let mut tx = pool.begin().await.map_err(store_error)?;
            sqlx::query(UPSERT_OWNER)
                .bind(limits.owner.as_str())
                .bind(Json(&limits.rate_limits))
                .bind(limits.spend_cap.map(saturating_i64))
                .bind(limits.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            if let Some(lock) = lock_changes {
                sqlx::query(lock).execute(&mut *tx).await.map_err(store_error)?;
            }
            sqlx::query(APPEND_OWNERS_KEYS)
                .bind(limits.owner.as_str())
                .bind(limits.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            #[cfg(feature = "postgres")]
            if notify.is_some() {
                sqlx::query(NOTIFY_OWNERS_KEYS_POSTGRES)
                    .bind(limits.owner.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
            }
            #[cfg(not(feature = "postgres"))]
            let _ = notify;
            tx.commit().await.map_err(store_error)?;
            Ok(())
        })
    }
}
