//! [`self_service_router`]: the self-service key API as an axum [`Router`], to nest where
//! you like (`/api/v1/api-keys`).
//!
//! The API serves two kinds of caller: an [`Account`](keygate_self_service::Account) that the host application's own
//! authentication (its session or JWT layer) put into the request's extensions, with
//! full rights over its owner's keys; and an API key holding the manage scope (`admin`
//! by default), which never makes a key stronger than itself. The router applies
//! [`ApiKeyLayer::new(gate)`](ApiKeyLayer) in optional mode to its routes itself
//! (`route_layer`): a key in the gate's format is verified (401 when it fails), other
//! credentials are left to the host. A request with neither an account nor a key gets
//! 401 `MISSING_API_KEY`, and a key without the manage scope 403, on every route. Every
//! decision and every byte of every answer comes from
//! [`keygate_self_service::SelfService`]; the handlers only hand it the caller (the
//! account from the extensions, else the key's [`Principal`](keygate_core::Principal)), the path, the query and
//! the raw body (so malformed JSON gets keygate's 400, not axum's).
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /` | 201: a new key for the caller's owner, its plaintext `key` shown this once |
//! | `GET /?offset=&limit=` | 200: `{"data":[...]}`, the owner's keys, never a secret |
//! | `DELETE /{key_id}` | 200: the key, revoked at once; 404 if it is not the owner's |
//! | `POST /{key_id}/rotate` | 201: the replacement (`key`) and the `old` record |
//!
//! # Example
//! ```
//! use axum::{body::Body, extract::Request, middleware::Next, Router};
//! use http::StatusCode;
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey};
//! use keygate_self_service::Account;
//! use keygate_tower::self_service_router;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let admin = gate.keys().create(NewKey::new("acct_1", "console").scopes(["admin"])).await.unwrap();
//!
//! // The host's own login: here, a stand-in for a session check that knows the user.
//! async fn session(mut request: Request, next: Next) -> axum::response::Response {
//!     if request.headers().get("cookie").is_some_and(|c| c == "session=acct_1") {
//!         request.extensions_mut().insert(Account::new("acct_1"));
//!     }
//!     next.run(request).await
//! }
//! let app = Router::new()
//!     .nest("/api/v1/api-keys", self_service_router(gate))
//!     .layer(axum::middleware::from_fn(session));
//!
//! // An admin key manages its owner's keys.
//! let request = Request::post("/api/v1/api-keys")
//!     .header("authorization", format!("Bearer {}", admin.key.expose_secret()))
//!     .body(Body::from(r#"{"name":"CI","scopes":["read"]}"#))
//!     .unwrap();
//! assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::CREATED);
//!
//! // So does a signed-in user, with no key at all.
//! let signed_in = Request::get("/api/v1/api-keys")
//!     .header("cookie", "session=acct_1")
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(app.clone().oneshot(signed_in).await.unwrap().status(), StatusCode::OK);
//!
//! let anonymous = Request::get("/api/v1/api-keys").body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use http::request::Parts;
use keygate_self_service::{Caller, SelfService};

use crate::api_key::ApiKeyLayer;

/// The self-service key API, behind `ApiKeyLayer::new(gate)` with
/// [`SelfService::route_policy`] (optional mode, free of spend caps). Takes a
/// [`Gate`](keygate_core::Gate), or a [`SelfService`] to configure (its manage scope).
/// Nest it: `Router::new().nest("/api/v1/api-keys", router)`; insert the host's
/// [`Account`](keygate_self_service::Account) in a layer around it.
pub fn self_service_router(api: impl Into<SelfService>) -> Router {
    let api = api.into();
    Router::new()
        .route("/", get(list).post(create))
        .route("/{key_id}", delete(revoke))
        .route("/{key_id}/rotate", post(rotate))
        .route_layer(ApiKeyLayer::new(api.gate().clone()).policy(SelfService::route_policy()))
        .with_state(api)
}

/// The account routes of the self-service API as an axum [`Router`], to nest where you
/// like (`/api/v1`): `GET /account` shows the caller's owner's own limits (shared by all
/// its keys) and this month's spend of its keys together, `PUT /account` tightens them
/// ([`SelfService::account`], [`SelfService::set_account`]); `GET /usage?days=30` gives
/// each key's requests per day, spend and flags of unusual activity
/// ([`SelfService::usage`]). The same callers and the same layer as
/// [`self_service_router`].
pub fn account_router(api: impl Into<SelfService>) -> Router {
    let api = api.into();
    Router::new()
        .route("/account", get(account).put(set_account))
        .route("/usage", get(usage))
        .route_layer(ApiKeyLayer::new(api.gate().clone()).policy(SelfService::route_policy()))
        .with_state(api)
}

async fn account(State(api): State<SelfService>, FromExtensions(caller): FromExtensions) -> Response {
    api.account(&caller).await.into_response::<Body>()
}

async fn usage(
    State(api): State<SelfService>,
    FromExtensions(caller): FromExtensions,
    RawQuery(query): RawQuery,
) -> Response {
    api.usage(&caller, query.as_deref()).await.into_response::<Body>()
}

async fn set_account(
    State(api): State<SelfService>,
    FromExtensions(caller): FromExtensions,
    body: Bytes,
) -> Response {
    api.set_account(&caller, &body).await.into_response::<Body>()
}

/// The caller from the request's extensions: the host's account, else the key's principal.
struct FromExtensions(Caller);

impl<S: Send + Sync> FromRequestParts<S> for FromExtensions {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Caller::from_extensions(&parts.extensions)))
    }
}

async fn create(
    State(api): State<SelfService>,
    FromExtensions(caller): FromExtensions,
    body: Bytes,
) -> Response {
    api.create(&caller, &body).await.into_response::<Body>()
}

async fn list(
    State(api): State<SelfService>,
    FromExtensions(caller): FromExtensions,
    RawQuery(query): RawQuery,
) -> Response {
    api.list_query(&caller, query.as_deref())
        .await
        .into_response::<Body>()
}

async fn revoke(
    State(api): State<SelfService>,
    FromExtensions(caller): FromExtensions,
    Path(key_id): Path<String>,
) -> Response {
    api.revoke(&caller, &key_id).await.into_response::<Body>()
}

async fn rotate(
    State(api): State<SelfService>,
    FromExtensions(caller): FromExtensions,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    api.rotate(&caller, &key_id, &body).await.into_response::<Body>()
}
