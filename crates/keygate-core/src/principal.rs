//! [`Principal`]: who a request is, once its key is proven.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::key::Environment;
use crate::key::KeyId;
use crate::record::{KeyRecord, OwnerId, RateLimit, Scopes};

struct Inner {
    key_id: KeyId,
    owner: OwnerId,
    name: String,
    scopes: Scopes,
    environment: Environment,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    metadata: serde_json::Value,
    rate_limits: Option<Vec<RateLimit>>,
    spend_cap: Option<u64>,
}

/// The authenticated caller: the key's public record, never its secret or hash.
///
/// Adapters put it into the request extensions. Cloning is a reference-count bump.
/// Serialises as the `whoami` JSON: `key_id`, `owner`, `name`, `scopes`, `environment`,
/// `expires_at`.
#[derive(Clone)]
pub struct Principal(Arc<Inner>);

impl Principal {
    pub(crate) fn from_record(record: &KeyRecord) -> Self {
        Self(Arc::new(Inner {
            key_id: record.key_id.clone(),
            owner: record.owner.clone(),
            name: record.name.clone(),
            scopes: record.scopes.clone(),
            environment: record.environment,
            created_at: record.created_at,
            expires_at: record.expires_at,
            metadata: record.metadata.clone(),
            rate_limits: record.rate_limits.clone(),
            spend_cap: record.spend_cap,
        }))
    }

    /// The key id.
    pub fn key_id(&self) -> &KeyId {
        &self.0.key_id
    }

    /// The owning account.
    pub fn owner(&self) -> &OwnerId {
        &self.0.owner
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The key's scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.0.scopes
    }

    /// Whether the key holds `scope` itself (`admin` is not expanded here).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.contains(scope)
    }

    /// Live or test.
    pub fn environment(&self) -> Environment {
        self.0.environment
    }

    /// When the key was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When the key expires, if ever.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }

    /// The key's metadata.
    pub fn metadata(&self) -> &serde_json::Value {
        &self.0.metadata
    }

    /// Per-key rate limits, when the record overrides the gate's defaults.
    pub fn rate_limits(&self) -> Option<&[RateLimit]> {
        self.0.rate_limits.as_deref()
    }

    /// Monthly spend cap in micro-cents.
    pub fn spend_cap(&self) -> Option<u64> {
        self.0.spend_cap
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("key_id", &self.0.key_id)
            .field("owner", &self.0.owner)
            .field("scopes", &self.0.scopes)
            .field("environment", &self.0.environment)
            .finish_non_exhaustive()
    }
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Principal", 6)?;
        st.serialize_field("key_id", &self.0.key_id)?;
        st.serialize_field("owner", &self.0.owner)?;
        st.serialize_field("name", &self.0.name)?;
        st.serialize_field("scopes", &self.0.scopes)?;
        st.serialize_field("environment", &self.0.environment)?;
        st.serialize_field("expires_at", &self.0.expires_at)?;
        st.end()
    }
}
