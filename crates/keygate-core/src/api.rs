//! [`SelfService`]: the self-service key API (create, list, revoke, rotate the caller's
//! owner's keys), decided here and mounted by the adapters (`self_service_router` in
//! keygate-tower, `self_service_scope` in keygate-actix), which only translate.
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
//! use keygate_core::{Argon2Hasher, Gate, MemoryStore, NewKey, RoutePolicy, SelfService};
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

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::{Denial, Rejection};
use crate::gate::Gate;
use crate::key::KeyId;
use crate::manage::{CreatedKey, ManageError};
use crate::principal::Principal;
use crate::record::{parse_duration, Environment, KeyRecord, KeyStatus, NewKey, RateLimit, Scopes};
use crate::store::Page;

/// Request bodies larger than this are refused before parsing.
const MAX_BODY: usize = 64 * 1024;
/// Longest key name accepted, in characters.
const MAX_NAME: usize = 200;
/// Most scopes one key may carry.
const MAX_SCOPES: usize = 64;
/// Key ids longer than this are answered 404 without a store lookup.
const MAX_KEY_ID: usize = 128;
const API_KEY: &str = "API key";

/// The self-service key API over a [`Gate`]: create, list, revoke and rotate the
/// caller's owner's keys, one method per route, each answering with a fully rendered
/// [`ApiResponse`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SelfService {
    gate: Gate,
}

/// A rendered answer of the [`SelfService`]: status, headers (`content-type` included)
/// and body. Adapters copy it into their response type and add nothing.
///
/// Its `Debug` shows the status only: a body may hold a plaintext key.
#[derive(Clone)]
pub struct ApiResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ApiResponse {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Every header of the response, `content-type` included.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Status, headers and body.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        (self.status, self.headers, self.body)
    }

    /// As an `http` response with any body type built from [`Bytes`].
    pub fn into_response<B: From<Bytes>>(self) -> http::Response<B> {
        let mut response = http::Response::new(B::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }

    fn json(status: StatusCode, body: Vec<u8>) -> Self {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Self {
            status,
            headers,
            body: Bytes::from(body),
        }
    }
}

impl From<Rejection> for ApiResponse {
    fn from(rejection: Rejection) -> Self {
        Self {
            status: rejection.status(),
            headers: rejection.headers().clone(),
            body: rejection.body().clone(),
        }
    }
}

/// The body of `POST /`. The owner is never read from it: it is the caller's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires_in: Option<String>,
    environment: Option<String>,
    rate_limits: Option<String>,
    spend_cap: Option<u64>,
    metadata: Option<serde_json::Value>,
}

/// The body of `POST /{key_id}/rotate`; it may be absent.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace: Option<String>,
}

/// A record as the API shows it: the stored fields (never the hash) and its status.
#[derive(Serialize)]
struct View<'a> {
    #[serde(flatten)]
    record: &'a KeyRecord,
    status: KeyStatus,
}

#[derive(Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    view: View<'a>,
    /// The plaintext, in this one response only.
    key: &'a str,
}

#[derive(Serialize)]
struct RotatedView<'a> {
    #[serde(flatten)]
    new: Created<'a>,
    old: View<'a>,
}

#[derive(Serialize)]
struct List<'a> {
    data: Vec<View<'a>>,
    offset: u64,
    limit: u32,
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
        let new = match self.new_key(caller, body) {
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

    fn new_key(&self, caller: &Principal, body: &[u8]) -> Result<NewKey, Denial> {
        let body: CreateBody = parse_json(body)?.ok_or_else(|| bad("a JSON body is required"))?;
        let name = body.name.trim();
        if name.is_empty() {
            return Err(bad("`name` must not be empty"));
        }
        if name.chars().count() > MAX_NAME {
            return Err(bad(format!("`name` is longer than {MAX_NAME} characters")));
        }
        let scopes = scopes(&body.scopes)?;
        let environment = match body.environment.as_deref() {
            Some(environment) => environment.parse::<Environment>().map_err(bad)?,
            None => caller.environment(),
        };
        let expires_at = match body.expires_in.as_deref() {
            Some(expires_in) => {
                let lifetime = parse_duration(expires_in).map_err(bad)?;
                if lifetime.is_zero() {
                    return Err(bad("`expires_in` must be longer than zero"));
                }
                let lifetime =
                    chrono::Duration::from_std(lifetime).map_err(|_| bad("`expires_in` is too long"))?;
                let at = self.gate.now().checked_add_signed(lifetime);
                Some(at.ok_or_else(|| bad("`expires_in` is too long"))?)
            }
            None => None,
        };
        let rate_limits = match body.rate_limits.as_deref() {
            Some(rates) => Some(RateLimit::parse_list(rates).map_err(bad)?),
            None => None,
        };
        let metadata = match body.metadata {
            None | Some(serde_json::Value::Null) => None,
            Some(object @ serde_json::Value::Object(_)) => Some(object),
            Some(_) => return Err(bad("`metadata` must be a JSON object")),
        };
        let new = NewKey {
            owner: Some(caller.owner().clone()),
            name: name.to_string(),
            scopes,
            environment,
            expires_at,
            rate_limits,
            spend_cap: body.spend_cap,
            metadata,
        };
        within_caller(caller, new)
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

fn bad(message: impl ToString) -> Denial {
    Denial::BadRequest {
        message: message.to_string(),
    }
}

/// A key made by a non-admin caller gets no more than the caller has: the same
/// environment (a test key cannot mint live keys), no later expiry, no higher spend cap,
/// and the caller's own rate limits (only an admin sets limits). What cannot be
/// narrowed silently is refused with 403, naming `admin`.
fn within_caller(caller: &Principal, mut new: NewKey) -> Result<NewKey, Denial> {
    if caller.has_scope(Scopes::ADMIN) {
        return Ok(new);
    }
    let needs_admin = |what: &str| {
        tracing::debug!(key_id = %caller.key_id(), what, "self-service escalation refused");
        Denial::InsufficientScope {
            required: Scopes::new([Scopes::ADMIN]),
        }
    };
    if new.environment != caller.environment() {
        return Err(needs_admin("environment"));
    }
    if let Some(limit) = caller.expires_at() {
        match new.expires_at {
            Some(at) if at > limit => return Err(needs_admin("expiry")),
            Some(_) => {}
            None => new.expires_at = Some(limit),
        }
    }
    if let Some(cap) = caller.spend_cap() {
        match new.spend_cap {
            Some(asked) if asked > cap => return Err(needs_admin("spend cap")),
            Some(_) => {}
            None => new.spend_cap = Some(cap),
        }
    }
    if new.rate_limits.is_some() {
        return Err(needs_admin("rate limits"));
    }
    new.rate_limits = caller.rate_limits().map(<[RateLimit]>::to_vec);
    Ok(new)
}

/// Whether rotating `record` (which hands out a new plaintext with its environment,
/// lifetime, cap and limits) gives a non-admin `caller` nothing it does not have.
fn no_stronger(caller: &Principal, record: &KeyRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    if caller.has_scope(Scopes::ADMIN) {
        return true;
    }
    let new_expiry = record
        .expires_at
        .and_then(|at| now.checked_add_signed(at - record.created_at));
    let lives_longer = match (caller.expires_at(), new_expiry) {
        (Some(limit), Some(at)) => at > limit,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let spends_more = match (caller.spend_cap(), record.spend_cap) {
        (Some(cap), Some(theirs)) => theirs > cap,
        (Some(_), None) => true,
        (None, _) => false,
    };
    record.environment == caller.environment()
        && !lives_longer
        && !spends_more
        && (record.rate_limits.is_none() || record.rate_limits.as_deref() == caller.rate_limits())
}

/// The scopes of `wanted` that `caller` may not hand out: none for an `admin` caller.
fn escalation(caller: &Principal, wanted: &Scopes) -> Option<Scopes> {
    if caller.has_scope(Scopes::ADMIN) {
        return None;
    }
    let missing = caller.scopes().missing(wanted, false);
    (!missing.is_empty()).then_some(missing)
}

/// `None` for an empty (or blank) body; 400 for one that is too large or not this JSON.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, Denial> {
    if body.len() > MAX_BODY {
        return Err(bad(format!("the request body is larger than {MAX_BODY} bytes")));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| bad(format!("invalid JSON body: {e}")))
}

fn scopes(names: &[String]) -> Result<Scopes, Denial> {
    if names.len() > MAX_SCOPES {
        return Err(bad(format!("a key may carry at most {MAX_SCOPES} scopes")));
    }
    for name in names {
        // One name per element: a comma would smuggle in a second scope.
        if name.contains(',') {
            return Err(bad(format!(
                "invalid scope `{}`: one scope per element",
                truncate(name)
            )));
        }
        name.parse::<Scopes>().map_err(bad)?;
    }
    Ok(Scopes::new(names.iter().map(String::as_str)))
}

fn rotate_grace(body: &[u8]) -> Result<Duration, Denial> {
    let body: RotateBody = parse_json(body)?.unwrap_or_default();
    match body.grace.as_deref() {
        Some(grace) => parse_duration(grace).map_err(bad),
        None => Ok(Duration::ZERO),
    }
}

/// Reads `offset` and `limit` from a raw query string.
fn page(query: &str) -> Result<Page, String> {
    let mut page = Page::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "offset" => {
                page.offset = value
                    .parse()
                    .map_err(|_| format!("`offset` must be a whole number, not `{}`", truncate(value)))?;
            }
            "limit" => {
                let limit: u32 = value
                    .parse()
                    .map_err(|_| format!("`limit` must be a whole number, not `{}`", truncate(value)))?;
                page = Page::new(page.offset, limit);
            }
            _ => {}
        }
    }
    Ok(page)
}

/// User input echoed in an error message, capped.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_read_from_the_query_and_clamped() {
        assert_eq!(page("").unwrap(), Page::default());
        assert_eq!(page("offset=5&limit=2&x=y").unwrap(), Page::new(5, 2));
        assert_eq!(page("limit=5000").unwrap().limit, Page::MAX_LIMIT);
        assert!(page("limit=ten").unwrap_err().contains("`limit`"));
        assert!(page("offset=-1").is_err());
    }

    #[test]
    fn scope_lists_take_one_valid_name_per_element() {
        let ok = scopes(&["write".into(), "read".into()]).unwrap();
        assert_eq!(ok, Scopes::new(["read", "write"]));
        assert!(scopes(&["read,admin".into()]).is_err());
        assert!(scopes(&["re ad".into()]).is_err());
        assert!(scopes(&["".into()]).is_err());
    }

    async fn caller(gate: &Gate, new: NewKey) -> Principal {
        let created = gate.keys().create(new).await.unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", created.key.expose_secret().parse().unwrap());
        let admitted = gate.admit(&headers, &crate::RoutePolicy::new()).await.unwrap();
        admitted.principal().unwrap().clone()
    }

    #[tokio::test]
    async fn a_key_never_mints_a_key_stronger_than_itself() {
        let gate = Gate::builder(crate::MemoryStore::new())
            .hasher(crate::Argon2Hasher::insecure_fast())
            .build();
        let expires = gate.now() + chrono::Duration::days(1);
        let test_key = caller(
            &gate,
            NewKey::new("acct_1", "ci")
                .scopes(["read"])
                .environment(Environment::Test)
                .expires_at(expires)
                .spend_cap(1000)
                .rate_limits([RateLimit::per_minute(5)]),
        )
        .await;
        let api = SelfService::new(gate.clone());
        for (body, what) in [
            (
                r#"{"name":"x","scopes":["read"],"environment":"live"}"#,
                "a live key",
            ),
            (
                r#"{"name":"x","scopes":["read"],"expires_in":"30d"}"#,
                "a longer life",
            ),
            (
                r#"{"name":"x","scopes":["read"],"spend_cap":5000}"#,
                "a higher cap",
            ),
            (
                r#"{"name":"x","scopes":["read"],"rate_limits":"1000/min"}"#,
                "its own limits",
            ),
        ] {
            let refused = api.create(&test_key, body.as_bytes()).await;
            assert_eq!(refused.status(), http::StatusCode::FORBIDDEN, "{what}");
        }
        // What it may do, it gets narrowed to its own reach.
        let made = api
            .create(&test_key, br#"{"name":"child","scopes":["read"]}"#)
            .await;
        assert_eq!(made.status(), http::StatusCode::CREATED);
        let body: serde_json::Value = serde_json::from_slice(made.body()).unwrap();
        assert_eq!(body["environment"], "test");
        assert_eq!(body["spend_cap"], 1000);
        assert_eq!(body["rate_limits"][0]["limit"], 5);
        let child_expiry: chrono::DateTime<chrono::Utc> =
            body["expires_at"].as_str().unwrap().parse().unwrap();
        assert!(child_expiry <= expires);

        // Nor may it rotate a stronger key of its owner to obtain that key's plaintext.
        let admin = caller(&gate, NewKey::new("acct_1", "root").scopes(["admin"])).await;
        let live = api
            .create(
                &admin,
                br#"{"name":"prod","scopes":["read"],"environment":"live"}"#,
            )
            .await;
        let live: serde_json::Value = serde_json::from_slice(live.body()).unwrap();
        let path = live["key_id"].as_str().unwrap();
        let refused = api.rotate(&test_key, path, b"").await;
        assert_eq!(refused.status(), http::StatusCode::FORBIDDEN);

        // An admin key is not narrowed.
        let made = api
            .create(
                &admin,
                br#"{"name":"live","environment":"live","rate_limits":"1000/min"}"#,
            )
            .await;
        assert_eq!(made.status(), http::StatusCode::CREATED);
    }

    #[test]
    fn an_absent_rotate_body_means_no_grace() {
        assert_eq!(rotate_grace(b"").unwrap(), Duration::ZERO);
        assert_eq!(
            rotate_grace(br#"{"grace":"24h"}"#).unwrap(),
            Duration::from_secs(86_400)
        );
        assert!(matches!(
            rotate_grace(br#"{"grace":"soon"}"#),
            Err(Denial::BadRequest { .. })
        ));
        assert!(matches!(
            rotate_grace(br#"{"grce":"1h"}"#),
            Err(Denial::BadRequest { .. })
        ));
    }
}
