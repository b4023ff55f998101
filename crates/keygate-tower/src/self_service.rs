//! [`self_service_router`]: the self-service key API as an axum [`Router`], to nest where
//! you like (`/api/v1/api-keys`).
//!
//! The router applies [`ApiKeyLayer::new(gate)`](ApiKeyLayer) to its routes itself
//! (`route_layer`): every call is authenticated by the caller's own key, and acts on that
//! key's owner's keys only. Every decision and every byte of every answer comes from
//! [`keygate_self_service::SelfService`]; the handlers only hand it the caller, the path, the
//! query and the raw body (so malformed JSON gets keygate's 400, not axum's).
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
//! use axum::{body::Body, Router};
//! use http::{Request, StatusCode};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey};
//! use keygate_tower::self_service_router;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let admin = gate.keys().create(NewKey::new("acct_1", "console").scopes(["admin"])).await.unwrap();
//! let app = Router::new().nest("/api/v1/api-keys", self_service_router(gate));
//!
//! let request = Request::post("/api/v1/api-keys")
//!     .header("authorization", format!("Bearer {}", admin.key.expose_secret()))
//!     .body(Body::from(r#"{"name":"CI","scopes":["read"]}"#))
//!     .unwrap();
//! assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::CREATED);
//!
//! let anonymous = Request::get("/api/v1/api-keys").body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use keygate_core::{Gate, Principal};
use keygate_self_service::SelfService;

use crate::api_key::ApiKeyLayer;

/// The self-service key API over `gate`, behind `ApiKeyLayer::new(gate)` (any valid key;
/// no scope required). Nest it: `Router::new().nest("/api/v1/api-keys", router)`.
pub fn self_service_router(gate: Gate) -> Router {
    Router::new()
        .route("/", get(list).post(create))
        .route("/{key_id}", delete(revoke))
        .route("/{key_id}/rotate", post(rotate))
        .route_layer(ApiKeyLayer::new(gate.clone()))
        .with_state(SelfService::new(gate))
}

async fn create(State(api): State<SelfService>, caller: Principal, body: Bytes) -> Response {
    api.create(&caller, &body).await.into_response::<Body>()
}

async fn list(State(api): State<SelfService>, caller: Principal, RawQuery(query): RawQuery) -> Response {
    api.list_query(&caller, query.as_deref())
        .await
        .into_response::<Body>()
}

async fn revoke(State(api): State<SelfService>, caller: Principal, Path(key_id): Path<String>) -> Response {
    api.revoke(&caller, &key_id).await.into_response::<Body>()
}

async fn rotate(
    State(api): State<SelfService>,
    caller: Principal,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    api.rotate(&caller, &key_id, &body).await.into_response::<Body>()
}
