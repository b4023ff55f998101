//! Key management: create (the plaintext returned once), list, revoke, rotate.
//!
//! A [`KeyManager`] works on its own (the CLI uses one) or inside a [`Gate`](crate::Gate),
//! whose manager also invalidates the gate's cache before `revoke` and `rotate` return.
//!
//! Creating or rotating a key hashes its secret with argon2 on a bounded pool: the gate's
//! own (`verify/pool.rs`: creations have a budget of their own and never take every
//! worker from cold verifications), or, for a manager used alone, one of its own with the
//! default widths of [`VerifierConfig`], on which a creation waits its turn. Inside a
//! gate, past the budget, a creation fails at once with [`ManageError::Busy`]; retry it
//! later.
//!
//! # Example
//! ```
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::manage::KeyManager;
//! use keygate_core::{MemoryStore, NewKey};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let keys = KeyManager::new(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast());
//! let created = keys.create(NewKey::new("acct_1", "CI Pipeline").scopes(["read"])).await.unwrap();
//! println!("your key, shown once: {}", created.key.expose_secret());
//! let revoked = keys.revoke(&created.record.key_id).await.unwrap();
//! assert!(revoked.revoked_at.is_some());
//! # });
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::account::{spend_subject, OwnerLimits};
use crate::clock::{Clock, SystemClock};
use crate::hash::{Argon2Hasher, HashError, KeyHasher};
use crate::key::{ApiKey, KeyFormat, KeyId};
use crate::record::{KeyRecord, KeyStatus, NewKey, OwnerId, RateLimit, Usage};
use crate::spend::Month;
use crate::store::{DynKeyStore, KeyStore, Page, StoreError};
use crate::verify::{HashPool, PoolError, VerifierConfig};

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// No key with this id (or not one of this owner's).
    #[error("no key with id `{0}`")]
    NotFound(KeyId),
    /// The request is not acceptable (a revoked key cannot be rotated, …).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Every place on the hash pool for creations is taken: nothing was written; retry
    /// later (self-service answers 503 with `Retry-After`).
    #[error("too many keys are being created at once; retry later")]
    Busy,
}

/// A key just created: the plaintext, shown once, and its record.
pub struct CreatedKey {
    /// The plaintext key. Show it to the user once; it is not stored anywhere.
    pub key: ApiKey,
    /// The stored record.
    pub record: KeyRecord,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &self.key)
            .field("record", &self.record)
            .finish()
    }
}

/// The result of a rotation: the new key and the old record with its new expiry.
#[derive(Debug)]
pub struct Rotated {
    /// The replacement, with the same owner, name, scopes, limits and cap.
    pub new: CreatedKey,
    /// The old key, now expiring at the end of the grace period.
    pub old: KeyRecord,
}

pub(crate) type Invalidate = Arc<dyn Fn(&KeyId) + Send + Sync>;

/// Creates, lists, revokes and rotates keys in a store.
#[derive(Clone)]
pub struct KeyManager {
    store: Arc<dyn DynKeyStore>,
    hasher: Arc<dyn KeyHasher>,
    format: KeyFormat,
    clock: Arc<dyn Clock>,
    invalidate: Option<Invalidate>,
    /// Where secrets are hashed: the gate's pool, or one of this manager's own.
    pool: Arc<HashPool>,
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// How many times `create` draws a new id after an id collision before giving up.
const CREATE_ATTEMPTS: usize = 4;

impl KeyManager {
    /// A manager over `store`, with argon2id, the default key format and the system clock.
    pub fn new(store: impl KeyStore) -> Self {
        Self::from_dyn(Arc::new(store))
    }

    pub(crate) fn from_dyn(store: Arc<dyn DynKeyStore>) -> Self {
        Self {
            store,
            hasher: Arc::new(Argon2Hasher::default()),
            format: KeyFormat::default(),
            clock: Arc::new(SystemClock),
            invalidate: None,
            // Alone, a creation waits its turn rather than fail: the hashes running at
            // once are bounded all the same. A gate gives its manager the gate's pool.
            pool: Arc::new(HashPool::new(&VerifierConfig {
                create_queue: usize::MAX,
                ..VerifierConfig::default()
            })),
        }
    }

    /// Sets the hasher.
    pub fn hasher(mut self, hasher: impl KeyHasher) -> Self {
        self.hasher = Arc::new(hasher);
        self
    }

    /// Sets the key format.
    pub fn format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub(crate) fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    pub(crate) fn set_hasher(&mut self, hasher: Arc<dyn KeyHasher>) {
        self.hasher = hasher;
    }

    pub(crate) fn set_format(&mut self, format: KeyFormat) {
        self.format = format;
    }

    pub(crate) fn set_pool(&mut self, pool: Arc<HashPool>) {
        self.pool = pool;
    }

    pub(crate) fn set_invalidate(&mut self, invalidate: Invalidate) {
        self.invalidate = Some(invalidate);
    }

    pub(crate) fn hasher_ref(&self) -> &Arc<dyn KeyHasher> {
        &self.hasher
    }

    pub(crate) fn store_ref(&self) -> &Arc<dyn DynKeyStore> {
        &self.store
    }

    /// The key format.
    pub fn key_format(&self) -> &KeyFormat {
        &self.format
    }

    /// Creates a key and returns its plaintext, once, with the stored record.
    pub async fn create(&self, new: NewKey) -> Result<CreatedKey, ManageError> {
        let owner = new
            .owner
            .clone()
            .filter(|o| !o.as_str().trim().is_empty())
            .ok_or_else(|| ManageError::Invalid("a key needs an owner".into()))?;
        let now = self.clock.now();
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(ManageError::Invalid("expiry is in the past".into()));
        }
        for _ in 0..CREATE_ATTEMPTS {
            let CreatedKey { key, record } = self.mint(&new, &owner, now).await?;
            match self.store.insert(&record).await {
                Ok(()) => {
                    tracing::info!(key_id = %record.key_id, owner = %record.owner, "api key created");
                    return Ok(CreatedKey { key, record });
                }
                Err(StoreError::Conflict) => {
                    tracing::warn!(key_id = %record.key_id, "key id collision, drawing another");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ManageError::Store(StoreError::Conflict))
    }

    /// A new key and its record, hashed, not stored yet.
    async fn mint(
        &self,
        new: &NewKey,
        owner: &OwnerId,
        now: DateTime<Utc>,
    ) -> Result<CreatedKey, ManageError> {
        let (key_id, key) = self.format.generate(new.environment);
        let parsed = self
            .format
            .parse(key.expose_secret())
            .map_err(|e| ManageError::Invalid(format!("key format cannot parse its own keys: {e}")))?;
        let secret = SecretString::from(parsed.secret().to_owned());
        let secret_hash = self.hash_blocking(secret).await?;
        let record = KeyRecord {
            key_id,
            owner: owner.clone(),
            name: new.name.clone(),
            scopes: new.scopes.clone(),
            environment: new.environment,
            secret_hash,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            metadata: new.metadata.clone().unwrap_or(serde_json::Value::Null),
            rate_limits: new.rate_limits.clone(),
            spend_cap: new.spend_cap,
            usage: Usage::default(),
        };
        Ok(CreatedKey { key, record })
    }

    async fn hash_blocking(&self, secret: SecretString) -> Result<crate::hash::SecretHash, ManageError> {
        let hasher = self.hasher.clone();
        let work = move || hasher.hash(secret.expose_secret().as_bytes());
        match self.pool.create(work).await {
            Ok(hashed) => hashed.map_err(Into::into),
            Err(PoolError::Busy) => {
                if let Some(suppressed) = self.pool.busy_log.admit(self.clock.timestamp().unix_nanos()) {
                    tracing::warn!(suppressed, "key creation shed: the hash pool is saturated");
                }
                Err(ManageError::Busy)
            }
            Err(PoolError::Lost(why)) => Err(ManageError::Hash(HashError::Failed(why))),
        }
    }

    /// The record with this id.
    pub async fn find(&self, key_id: &KeyId) -> Result<Option<KeyRecord>, ManageError> {
        Ok(self.store.find(key_id).await?)
    }

    /// The record with this id if it belongs to `owner`; another owner's key is
    /// [`ManageError::NotFound`], exactly like a missing one.
    pub async fn find_owned(&self, owner: &OwnerId, key_id: &KeyId) -> Result<KeyRecord, ManageError> {
        match self.store.find(key_id).await? {
            Some(record) if &record.owner == owner => Ok(record),
            _ => Err(ManageError::NotFound(key_id.clone())),
        }
    }

    /// Keys of `owner`, or every key when `owner` is `None`.
    pub async fn list(&self, owner: Option<&OwnerId>, page: Page) -> Result<Vec<KeyRecord>, ManageError> {
        Ok(match owner {
            Some(owner) => self.store.list_by_owner(owner, page).await?,
            None => self.store.list(page).await?,
        })
    }

    /// The state of `record` now.
    pub fn status(&self, record: &KeyRecord) -> KeyStatus {
        record.status(self.clock.now())
    }

    /// Revokes a key. Inside a gate, the gate's cache forgets it before this returns,
    /// so the very next request with it is refused.
    pub async fn revoke(&self, key_id: &KeyId) -> Result<KeyRecord, ManageError> {
        let record = self
            .store
            .revoke(key_id, self.clock.now())
            .await?
            .ok_or_else(|| ManageError::NotFound(key_id.clone()))?;
        self.forget(key_id);
        tracing::info!(key_id = %key_id, "api key revoked");
        Ok(record)
    }

    /// Replaces a key: a new key with the same owner, name, scopes, environment, limits,
    /// cap, metadata and lifetime; the old one expires after `grace` (at once when zero), or
    /// keeps an earlier expiry it already had. One step in the store
    /// ([`KeyStore::replace`]): a failure leaves no second key, a key is rotated once
    /// (its successor is the one to rotate next), and a revoked key is not rotated.
    pub async fn rotate(&self, key_id: &KeyId, grace: Duration) -> Result<Rotated, ManageError> {
        let old = self
            .store
            .find(key_id)
            .await?
            .ok_or_else(|| ManageError::NotFound(key_id.clone()))?;
        let now = self.clock.now();
        match old.status(now) {
            KeyStatus::Active => {}
            status => {
                return Err(ManageError::Invalid(format!(
                    "cannot rotate a key that is {status}"
                )))
            }
        }
        let grace = chrono::Duration::from_std(grace)
            .map_err(|_| ManageError::Invalid("grace period too long".into()))?;
        let ends = now
            .checked_add_signed(grace)
            .ok_or_else(|| ManageError::Invalid("grace period too long".into()))?;
        let ends: DateTime<Utc> = old.expires_at.map_or(ends, |at| at.min(ends));
        let successor = NewKey {
            owner: Some(old.owner.clone()),
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            environment: old.environment,
            // A key issued for 90 days rotates into a new 90-day key.
            expires_at: old
                .expires_at
                .and_then(|at| now.checked_add_signed(at - old.created_at)),
            rate_limits: old.rate_limits.clone(),
            spend_cap: old.spend_cap,
            metadata: Some(old.metadata.clone()),
        };
        for _ in 0..CREATE_ATTEMPTS {
            let new = self.mint(&successor, &old.owner, now).await?;
            match self.store.replace(key_id, &new.record, ends).await {
                Ok(Some(old)) => {
                    self.forget(key_id);
                    tracing::info!(old = %key_id, new = %new.record.key_id, "api key rotated");
                    return Ok(Rotated { new, old });
                }
                Ok(None) => {
                    return Err(ManageError::Invalid(
                        "cannot rotate a key that was revoked or has been rotated already".into(),
                    ))
                }
                Err(StoreError::Conflict) => {
                    tracing::warn!(key_id = %new.record.key_id, "key id collision, drawing another");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ManageError::Store(StoreError::Conflict))
    }

    /// An owner's account-wide limits, `None` when none were set.
    pub async fn owner_limits(&self, owner: &OwnerId) -> Result<Option<OwnerLimits>, ManageError> {
        Ok(self.store.owner_limits(owner).await?)
    }

    /// Sets an owner's account-wide limits (replacing any before; empty limits lift
    /// them), dated now. Every key of the owner joins the change feed, so every
    /// instance re-reads them, and this gate's cache forgets them before this returns.
    /// Limits of 0 (a window of 0 requests, a cap of 0) are allowed: they stop the
    /// account.
    pub async fn set_owner_limits(
        &self,
        owner: &OwnerId,
        rate_limits: Vec<RateLimit>,
        spend_cap: Option<u64>,
    ) -> Result<OwnerLimits, ManageError> {
        if owner.as_str().is_empty() || owner.as_str().contains('\0') {
            return Err(ManageError::Invalid(
                "owner must be non-empty text without NUL".into(),
            ));
        }
        let limits = OwnerLimits {
            owner: owner.clone(),
            rate_limits,
            spend_cap,
            updated_at: self.clock.now(),
        };
        self.store.set_owner_limits(&limits).await?;
        if self.invalidate.is_some() {
            let mut offset = 0;
            loop {
                let page = self
                    .store
                    .list_by_owner(owner, Page::new(offset, Page::MAX_LIMIT))
                    .await?;
                for record in &page {
                    self.forget(&record.key_id);
                }
                if page.len() < Page::MAX_LIMIT as usize {
                    break;
                }
                offset += page.len() as u64;
            }
        }
        tracing::info!(owner = %owner.as_str(), "owner limits set");
        Ok(limits)
    }

    /// The owner's keys' requests per UTC day from `since` on, as the store recorded them
    /// ([`KeyStore::daily_usage`]).
    pub async fn daily_usage(
        &self,
        owner: &OwnerId,
        since: chrono::NaiveDate,
    ) -> Result<Vec<crate::usage::DailyUsage>, ManageError> {
        Ok(self.store.daily_usage(owner, since).await?)
    }

    /// What an owner's keys have spent together in `month`, as recorded in the store
    /// (a running gate writes its charges behind, so the last seconds may be missing).
    /// Counted from when the owner first had limits.
    pub async fn owner_spent(&self, owner: &OwnerId, month: Month) -> Result<u64, ManageError> {
        Ok(self.store.spent(&spend_subject(owner), month).await?)
    }

    fn forget(&self, key_id: &KeyId) {
        if let Some(invalidate) = &self.invalidate {
            invalidate(key_id);
        }
    }
}
