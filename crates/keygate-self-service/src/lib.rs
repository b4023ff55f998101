//! The self-service key API of keygate: create, list, revoke and rotate the caller's
//! owner's keys. [`SelfService`] decides; the adapters mount it (`self_service_router` in
//! keygate-tower, `self_service_scope` in keygate-actix, feature `self-service`) and only
//! translate. It uses nothing of keygate-core but its public API.
//!
//! Every method takes the authenticated caller (the [`Principal`] the adapter's layer
//! admitted) and the raw request parts, and returns a fully rendered [`ApiResponse`]:
//! successes as JSON, refusals in the gate's error format. A caller acts only on its
//! own owner's keys; another owner's key answers exactly like a missing one (404).
//!
//! | route | method | answer |
//! | --- | --- | --- |
//! | `POST /` | [`create`](SelfService::create) | 201: the record, `status`, and `key` (the plaintext, this once) |
//! | `GET /?offset=&limit=` | [`list_query`](SelfService::list_query) | 200: `{"data":[records],"offset","limit"}` |
//! | `DELETE /{key_id}` | [`revoke`](SelfService::revoke) | 200: the revoked record |
//! | `POST /{key_id}/rotate` | [`rotate`](SelfService::rotate) | 201: the new record with `key`, and `old` |
//!
//! # Example
//! ```
//! use http::{HeaderMap, StatusCode};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};
//! use keygate_self_service::SelfService;
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let created = gate.keys().create(NewKey::new("acct_1", "ci").scopes(["read"])).await.unwrap();
//!
//! // What an adapter's layer does: admit the caller by its own key.
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", format!("Bearer {}", created.key.expose_secret()).parse().unwrap());
//! let admission = gate.admit(&headers, &RoutePolicy::new()).await.unwrap();
//! let caller = admission.principal().unwrap();
//!
//! let api = SelfService::new(gate);
//! let made = api.create(caller, br#"{"name":"deploy","scopes":["read"],"expires_in":"90d"}"#).await;
//! assert_eq!(made.status(), StatusCode::CREATED);
//!
//! // A key may not grant what its creator lacks.
//! let escalated = api.create(caller, br#"{"name":"root","scopes":["write"]}"#).await;
//! assert_eq!(escalated.status(), StatusCode::FORBIDDEN);
//!
//! let malformed = api.create(caller, b"{").await;
//! assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use http::StatusCode;
use keygate_core::key::KeyId;
use keygate_core::manage::{CreatedKey, ManageError};
use keygate_core::record::KeyRecord;
use keygate_core::store::Page;
use keygate_core::{Denial, Gate, Principal, Scopes};
use serde::Serialize;

mod body;
mod response;
mod rules;

pub use response::ApiResponse;

use body::{new_key, page, rotate_grace, API_KEY, MAX_KEY_ID};
use response::{Created, List, RotatedView, View};
use rules::{escalation, no_stronger, within_caller};

/// The self-service key API over a [`Gate`]: create, list, revoke and rotate the
/// caller's owner's keys, one method per route, each answering with a fully rendered
/// [`ApiResponse`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SelfService {
    gate: Gate,
}

impl SelfService {
    /// The API over `gate`: its store, clock and error format.
    pub fn new(gate: Gate) -> Self {
        Self { gate }
    }

    /// The gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// `POST /`: creates a key for the caller's owner from a JSON body (`name`, and
    /// optionally `scopes`, `expires_in`, `environment`, `rate_limits`, `spend_cap`,
    /// `metadata`). 201 with the record, `status` and the plaintext `key`; 400 for a
    /// malformed body; 403 when it asks for a scope the caller lacks, another
    /// environment, a later expiry, a higher spend cap or its own rate limits (unless
    /// the caller has `admin`): a key never mints a key stronger than itself.
    pub async fn create(&self, caller: &Principal, body: &[u8]) -> ApiResponse {
        let new = match new_key(caller, self.gate.now(), body).and_then(|new| within_caller(caller, new)) {
            Ok(new) => new,
            Err(denial) => return self.deny(denial),
        };
        if let Some(missing) = escalation(caller, &new.scopes) {
            tracing::debug!(key_id = %caller.key_id(), missing = %missing, "self-service scope escalation refused");
            return self.deny(Denial::InsufficientScope { required: missing });
        }
        match self.gate.keys().create(new).await {
            Ok(created) => self.created(&created, None),
            Err(error) => self.failed(error),
        }
    }

    /// `GET /`: the caller's owner's keys, one page, newest data from the store.
    pub async fn list(&self, caller: &Principal, page: Page) -> ApiResponse {
        match self.gate.keys().list(Some(caller.owner()), page).await {
            Ok(records) => {
                let keys = self.gate.keys();
                let data = records
                    .iter()
                    .map(|record| View {
                        record,
                        status: keys.status(record),
                    })
                    .collect();
                self.json(
                    StatusCode::OK,
                    &List {
                        data,
                        offset: page.offset,
                        limit: page.limit,
                    },
                )
            }
            Err(error) => self.failed(error),
        }
    }

    /// `GET /?offset=&limit=`: [`list`](Self::list) with the page read from the raw query
    /// string (`limit` is clamped to 1..=1000, 100 by default); 400 when `offset` or
    /// `limit` is not a number. Other parameters are ignored.
    pub async fn list_query(&self, caller: &Principal, query: Option<&str>) -> ApiResponse {
        match page(query.unwrap_or_default()) {
            Ok(page) => self.list(caller, page).await,
            Err(message) => self.deny(Denial::BadRequest { message }),
        }
    }

    /// `DELETE /{key_id}`: revokes one of the caller's owner's keys, at once (the gate's
    /// cache forgets it before this returns). 200 with the record; 404 for another
    /// owner's key or an unknown one.
    pub async fn revoke(&self, caller: &Principal, key_id: &str) -> ApiResponse {
        let key_id = match self.owned(caller, key_id).await {
            Ok(record) => record.key_id,
            Err(response) => return response,
        };
        match self.gate.keys().revoke(&key_id).await {
            Ok(record) => self.record(StatusCode::OK, &record),
            Err(error) => self.failed(error),
        }
    }

    /// `POST /{key_id}/rotate`: replaces one of the caller's owner's keys. The optional
    /// body `{"grace": "24h"}` keeps the old key working that long; without it the old
    /// key expires at once. 201 with the new record, its plaintext `key`, and `old`; 404
    /// as for [`revoke`](Self::revoke); 400 for a revoked or expired key; 403 when the key
    /// holds a scope the caller lacks (a rotation hands out a new plaintext of it).
    pub async fn rotate(&self, caller: &Principal, key_id: &str, body: &[u8]) -> ApiResponse {
        let grace = match rotate_grace(body) {
            Ok(grace) => grace,
            Err(denial) => return self.deny(denial),
        };
        let record = match self.owned(caller, key_id).await {
            Ok(record) => record,
            Err(response) => return response,
        };
        if let Some(missing) = escalation(caller, &record.scopes) {
            tracing::debug!(key_id = %caller.key_id(), missing = %missing, "self-service rotation refused");
            return self.deny(Denial::InsufficientScope { required: missing });
        }
        if !no_stronger(caller, &record, self.gate.now()) {
            tracing::debug!(key_id = %caller.key_id(), "self-service rotation of a stronger key refused");
            return self.deny(Denial::InsufficientScope {
                required: Scopes::new([Scopes::ADMIN]),
            });
        }
        match self.gate.keys().rotate(&record.key_id, grace).await {
            Ok(rotated) => self.created(&rotated.new, Some(&rotated.old)),
            Err(error) => self.failed(error),
        }
    }

    /// The caller's owner's record `key_id`, or the rendered 404 (or 503).
    async fn owned(&self, caller: &Principal, key_id: &str) -> Result<KeyRecord, ApiResponse> {
        if key_id.is_empty() || key_id.len() > MAX_KEY_ID {
            return Err(self.deny(Denial::NotFound { what: API_KEY }));
        }
        self.gate
            .keys()
            .find_owned(caller.owner(), &KeyId::from(key_id))
            .await
            .map_err(|error| self.failed(error))
    }

    fn created(&self, created: &CreatedKey, old: Option<&KeyRecord>) -> ApiResponse {
        let keys = self.gate.keys();
        let new = Created {
            view: View {
                record: &created.record,
                status: keys.status(&created.record),
            },
            key: created.key.expose_secret(),
        };
        match old {
            Some(old) => self.json(
                StatusCode::CREATED,
                &RotatedView {
                    new,
                    old: View {
                        record: old,
                        status: keys.status(old),
                    },
                },
            ),
            None => self.json(StatusCode::CREATED, &new),
        }
    }

    fn record(&self, status: StatusCode, record: &KeyRecord) -> ApiResponse {
        let view = View {
            record,
            status: self.gate.keys().status(record),
        };
        self.json(status, &view)
    }

    fn json<T: Serialize>(&self, status: StatusCode, value: &T) -> ApiResponse {
        match serde_json::to_vec(value) {
            Ok(body) => ApiResponse::json(status, body),
            Err(error) => {
                // The error names a type or field, never a value, so no key can leak here.
                tracing::error!(%error, "could not serialise a self-service response");
                self.deny(Denial::Unavailable { retry_after: 1 })
            }
        }
    }

    fn failed(&self, error: ManageError) -> ApiResponse {
        let denial = match error {
            ManageError::NotFound(_) => Denial::NotFound { what: API_KEY },
            ManageError::Invalid(message) => Denial::BadRequest { message },
            // Shed, not failed: the hash pool is full (keygate-core logs it, hushed).
            ManageError::Busy => Denial::Unavailable { retry_after: 1 },
            error @ (ManageError::Store(_) | ManageError::Hash(_)) => {
                tracing::error!(%error, "self-service key management failed");
                Denial::Unavailable { retry_after: 1 }
            }
        };
        self.deny(denial)
    }

    fn deny(&self, denial: Denial) -> ApiResponse {
        self.gate.reject(denial).into()
    }
}
