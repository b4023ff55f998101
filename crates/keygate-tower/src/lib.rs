//! tower middleware for keygate API-key authentication, for axum and any tower stack.
//!
//! [`ApiKeyLayer`] wraps a service in an [`ApiKeyService`], which asks a
//! [`keygate_core::Gate`] about every request and does what it says: an admitted request
//! reaches the inner service with its [`Principal`](keygate_core::Principal) in the
//! request extensions and leaves with the gate's `X-RateLimit-*` headers; a refused one
//! gets the gate's rendered rejection (status, headers, JSON body) and never reaches the
//! inner service. This crate decides nothing itself.
//!
//! With the `axum` feature, handlers take `Principal` (a 500 where no layer ran) or
//! `Option<Principal>` (for optional mode) as extractors.
//!
//! # Example
//! ```
//! use axum::{routing::get, Extension, Router};
//! use http::{Request, StatusCode};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey, Principal};
//! use keygate_tower::ApiKeyLayer;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let created = gate.keys().create(NewKey::new("acct_1", "docs")).await.unwrap();
//!
//! async fn whoami(Extension(principal): Extension<Principal>) -> String {
//!     principal.key_id().to_string()
//! }
//! let app = Router::new().route("/v1/whoami", get(whoami)).layer(ApiKeyLayer::new(gate));
//!
//! let anonymous = Request::get("/v1/whoami").body(axum::body::Body::empty()).unwrap();
//! let refused = app.clone().oneshot(anonymous).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
//!
//! let signed = Request::get("/v1/whoami")
//!     .header("authorization", format!("Bearer {}", created.key.expose_secret()))
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! assert_eq!(app.oneshot(signed).await.unwrap().status(), StatusCode::OK);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api_key;
#[cfg(feature = "self-service")]
pub mod self_service;

pub use api_key::{ApiKeyLayer, ApiKeyService};
#[cfg(feature = "self-service")]
pub use self_service::{account_router, self_service_router};
