//! The self-service key API of keygate: create, list, revoke and rotate the caller's
//! owner's keys. [`SelfService`] decides; the adapters mount it (`self_service_router` in
//! keygate-tower, `self_service_scope` in keygate-actix, feature `self-service`) and only
//! translate. It uses nothing of keygate-core but its public API.
//!
//! Every method takes the [`Caller`] and the raw request parts, and returns a fully
//! rendered [`ApiResponse`]: successes as JSON, refusals in the gate's error format. A
//! caller is one of two kinds:
//!
//! - an [`Account`]: an owner id that the host application's own authentication (its
//!   session or JWT layer) put into the request's extensions. It has full rights over
//!   its owner's keys, as a dashboard user has. [`Account`] shows how a host inserts it.
//! - an API key (the [`Principal`](keygate_core::Principal) the adapter's layer
//!   admitted) that holds the **manage scope**, `admin` unless
//!   [`SelfService::manage_scope`] says otherwise. It never
//!   creates, rotates or revokes a key stronger than itself: no scope it lacks, no other
//!   environment, no later expiry, no higher spend cap, no looser rate limits (the whole
//!   table is in the module doc of `src/rules.rs`).
//!
//! A key without the manage scope gets 403 `INSUFFICIENT_PERMISSIONS` on every route; a
//! request with neither an account nor a key gets the gate's 401 `MISSING_API_KEY`.
//! A caller acts only on its own owner's keys; another owner's key answers exactly like
//! a missing one (404).
//!
//! | route | method | answer |
//! | --- | --- | --- |
//! | `POST /` | [`create`](SelfService::create) | 201: the record, `status`, and `key` (the plaintext, this once) |
//! | `GET /?offset=&limit=` | [`list_query`](SelfService::list_query) | 200: `{"data":[records],"offset","limit"}` |
//! | `DELETE /{key_id}` | [`revoke`](SelfService::revoke) | 200: the revoked record |
//! | `POST /{key_id}/rotate` | [`rotate`](SelfService::rotate) | 201: the new record with `key`, and `old` |
//!
//! The account routes (mounted apart, at `/api/v1` in the examples) show and tighten the
//! owner's own limits, shared by all its keys, and report usage over time:
//!
//! | route | method | answer |
//! | --- | --- | --- |
//! | `GET /account` | [`account`](SelfService::account) | 200: `{"owner","rate_limits","spend_cap","month","spent","updated_at"}` |
//! | `PUT /account` | [`set_account`](SelfService::set_account) | 200: the same, tightened; 403 for anything looser |
//! | `GET /usage?days=30` | [`usage`](SelfService::usage) | 200: each key's requests per day, spend, last use, and the flags of unusual activity |
//!
//! # Example
//! ```
//! use http::{HeaderMap, StatusCode};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};
//! use keygate_self_service::{Account, Caller, SelfService};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let api = SelfService::new(gate.clone());
//!
//! // A dashboard user, signed in by the host application: full rights over acct_1's keys.
//! let account = Caller::from(Account::new("acct_1"));
//! let made = api.create(&account, br#"{"name":"ops","scopes":["read","admin"],"spend_cap":1000}"#).await;
//! assert_eq!(made.status(), StatusCode::CREATED);
//! let body: serde_json::Value = serde_json::from_slice(made.body()).unwrap();
//!
//! // What an adapter's layer does: admit a caller by its own key.
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", format!("Bearer {}", body["key"].as_str().unwrap()).parse().unwrap());
//! let admission = gate.admit(&headers, &RoutePolicy::new()).await.unwrap();
//! let key = Caller::from(admission.principal().unwrap().clone());
//!
//! // An admin key manages the owner's keys, within its own reach: the child is capped too.
//! let child = api.create(&key, br#"{"name":"deploy","scopes":["read"],"expires_in":"90d"}"#).await;
//! assert_eq!(child.status(), StatusCode::CREATED);
//! let child: serde_json::Value = serde_json::from_slice(child.body()).unwrap();
//! assert_eq!(child["spend_cap"], 1000);
//!
//! // A key never mints a key stronger than itself.
//! let uncapped = api.create(&key, br#"{"name":"rich","spend_cap":5000}"#).await;
//! assert_eq!(uncapped.status(), StatusCode::FORBIDDEN);
//!
//! let malformed = api.create(&key, b"{").await;
//! assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use keygate_core::gate::Decision;
use keygate_core::key::KeyId;
use keygate_core::manage::{CreatedKey, ManageError};
use keygate_core::record::KeyRecord;
use keygate_core::store::Page;
use keygate_core::{Denial, Gate, RoutePolicy, Scopes};
use serde::Serialize;

mod account;
mod body;
mod caller;
mod response;
mod rules;
mod usage;

pub use caller::{Account, Caller};
pub use response::ApiResponse;

use body::{new_key, page, rotate_grace, API_KEY, MAX_KEY_ID};
use response::{Created, List, RotatedView, View};
use rules::{Manager, Refused};

/// The self-service key API over a [`Gate`]: create, list, revoke and rotate the
/// caller's owner's keys, one method per route, each answering with a fully rendered
/// [`ApiResponse`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SelfService {
    gate: Gate,
    /// The scope a key must hold to be served at all.
    manage: Scopes,
    /// A policy that requires a key, to have the gate render its own 401.
    keyed: RoutePolicy,
    /// What the usage route flags as unusual.
    watch: keygate_core::usage::UsageWatch,
}

impl From<Gate> for SelfService {
    fn from(gate: Gate) -> Self {
        Self::new(gate)
    }
}

impl SelfService {
    /// The API over `gate` (its store, clock and error format), serving accounts and
    /// keys that hold `admin`.
    pub fn new(gate: Gate) -> Self {
        Self {
            gate,
            manage: Scopes::new([Scopes::ADMIN]),
            keyed: RoutePolicy::new(),
            watch: keygate_core::usage::UsageWatch::default(),
        }
    }

    /// The scope a key must hold to use the API (`admin` by default). Keys without it
    /// get 403 on every route. With the gate's `admin_grants_all` (the default), an
    /// `admin` key holds it too.
    ///
    /// # Panics
    ///
    /// When `scope` is not one scope name (letters, digits and `_ - : . /`): a
    /// configuration error, found at start-up.
    pub fn manage_scope(mut self, scope: &str) -> Self {
        let valid = scope.parse::<Scopes>().ok().filter(|s| s.len() == 1);
        let Some(scope) = valid else {
            panic!("SelfService::manage_scope: `{scope}` is not one scope name");
        };
        self.manage = scope;
        self
    }

    /// The policy the adapters put in front of these routes: optional mode (an account
    /// caller needs no key; a key in the gate's format is verified) and free (a key at
    /// its spend cap, or whose owner is at the account's, may still manage keys and see
    /// its spend; nothing here is charged). Rate limits apply.
    pub fn route_policy() -> RoutePolicy {
        RoutePolicy::new().optional(true).free(true)
    }

    /// The gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// `POST /`: creates a key for the caller's owner from a JSON body (`name`, and
    /// optionally `scopes`, `expires_in`, `environment`, `rate_limits`, `spend_cap`,
    /// `metadata`: a JSON object of at most 4 KiB). 201 with the record, `status` and
    /// the plaintext `key`; 400 for a malformed body (a NUL character in `name` or in
    /// `metadata` included). A key caller never mints a key stronger than itself: 403
    /// when the body asks for a scope it lacks, another environment, a later expiry, a
    /// higher spend cap or looser rate limits; what the body leaves out is the caller's.
    pub async fn create(&self, caller: &Caller, body: &[u8]) -> ApiResponse {
        let manager = match self.admit(caller) {
            Ok(manager) => manager,
            Err(response) => return response,
        };
        let new = match new_key(&manager, self.gate.now(), body).and_then(|new| manager.within_reach(new)) {
            Ok(new) => new,
            Err(denial) => return self.deny(denial),
        };
        match self.gate.keys().create(new).await {
            Ok(created) => self.created(&created, None),
            Err(error) => self.failed(error),
        }
    }

    /// `GET /`: the caller's owner's keys, one page, newest data from the store.
    pub async fn list(&self, caller: &Caller, page: Page) -> ApiResponse {
        match self.admit(caller) {
            Ok(manager) => self.list_for(&manager, page).await,
            Err(response) => response,
        }
    }

    /// `GET /?offset=&limit=`: [`list`](Self::list) with the page read from the raw query
    /// string (`limit` is clamped to 1..=1000, 100 by default); 400 when `offset` or
    /// `limit` is not a number. Other parameters are ignored.
    pub async fn list_query(&self, caller: &Caller, query: Option<&str>) -> ApiResponse {
        let manager = match self.admit(caller) {
            Ok(manager) => manager,
            Err(response) => return response,
        };
        match page(query.unwrap_or_default()) {
            Ok(page) => self.list_for(&manager, page).await,
            Err(message) => self.deny(Denial::BadRequest { message }),
        }
    }

    /// `DELETE /{key_id}`: revokes one of the caller's owner's keys, at once (the gate's
    /// cache forgets it before this returns). 200 with the record; 404 for another
    /// owner's key or an unknown one; 403 when a key caller asks to revoke a key
    /// stronger than itself.
    pub async fn revoke(&self, caller: &Caller, key_id: &str) -> ApiResponse {
        let manager = match self.admit(caller) {
            Ok(manager) => manager,
            Err(response) => return response,
        };
        let record = match self.owned(&manager, key_id).await {
            Ok(record) => record,
            Err(response) => return response,
        };
        if let Err(denial) = manager.may_replace(&record, record.expires_at) {
            return self.deny(denial);
        }
        match self.gate.keys().revoke(&record.key_id).await {
            Ok(record) => self.record(StatusCode::OK, &record),
            Err(error) => self.failed(error),
        }
    }

    /// `POST /{key_id}/rotate`: replaces one of the caller's owner's keys. The optional
    /// body `{"grace": "24h"}` keeps the old key working that long; without it the old
    /// key expires at once. 201 with the new record, its plaintext `key`, and `old`; 404
    /// as for [`revoke`](Self::revoke); 400 for a revoked or expired key; 403 when a key
    /// caller asks to rotate a key stronger than itself (a rotation hands out a new
    /// plaintext of it, living as long again).
    pub async fn rotate(&self, caller: &Caller, key_id: &str, body: &[u8]) -> ApiResponse {
        let manager = match self.admit(caller) {
            Ok(manager) => manager,
            Err(response) => return response,
        };
        let grace = match rotate_grace(body) {
            Ok(grace) => grace,
            Err(denial) => return self.deny(denial),
        };
        let record = match self.owned(&manager, key_id).await {
            Ok(record) => record,
            Err(response) => return response,
        };
        if let Err(denial) = manager.may_replace(&record, replacement_expiry(&record, self.gate.now())) {
            return self.deny(denial);
        }
        match self.gate.keys().rotate(&record.key_id, grace).await {
            Ok(rotated) => self.created(&rotated.new, Some(&rotated.old)),
            Err(error) => self.failed(error),
        }
    }

    /// The caller, let in: an account, or a key holding the manage scope.
    #[allow(clippy::result_large_err)] // The `Err` side is an answer, not an error.
    fn admit<'a>(&'a self, caller: &'a Caller) -> Result<Manager<'a>, ApiResponse> {
        Manager::admit(caller, &self.manage, self.gate.admin_grants_all()).map_err(|refused| match refused {
            Refused::Nobody => self.missing_key(),
            Refused::Denied(denial) => self.deny(denial),
        })
    }

    /// The gate's own answer to a request without a key (401 `MISSING_API_KEY`, naming
    /// the header of its first credential source), decided from memory.
    fn missing_key(&self) -> ApiResponse {
        match self.gate.decide(&HeaderMap::new(), &self.keyed) {
            Decision::Now(Err(rejection)) => rejection.into(),
            // No headers, no key: never admitted; answered the same way regardless.
            Decision::Now(Ok(_)) | Decision::Later(_) => self.deny(Denial::MissingKey {
                header: "Authorization",
            }),
        }
    }

    async fn list_for(&self, manager: &Manager<'_>, page: Page) -> ApiResponse {
        match self.gate.keys().list(Some(manager.owner()), page).await {
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

    /// The caller's owner's record `key_id`, or the rendered 404 (or 503). An id no
    /// store could hold (empty, too long, with a NUL) is a 404 without a lookup.
    async fn owned(&self, manager: &Manager<'_>, key_id: &str) -> Result<KeyRecord, ApiResponse> {
        if key_id.is_empty() || key_id.len() > MAX_KEY_ID || key_id.contains('\0') {
            return Err(self.deny(Denial::NotFound { what: API_KEY }));
        }
        self.gate
            .keys()
            .find_owned(manager.owner(), &KeyId::from(key_id))
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

/// When the replacement of `record` would expire: a key issued for 90 days rotates into
/// a new 90-day key (as `KeyManager::rotate` does).
fn replacement_expiry(record: &KeyRecord, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    record
        .expires_at
        .and_then(|at| now.checked_add_signed(at - record.created_at))
}
