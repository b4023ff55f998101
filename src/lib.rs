//! API-key authentication for Rust HTTP services.
//!
//! keygate generates, hashes, verifies, caches, scopes, rate limits, meters and revokes
//! API keys. This crate is the facade: [`keygate_core`] (the [`Gate`] that decides, the
//! [`KeyManager`](manage::KeyManager) that creates and revokes keys, stores, limiters,
//! error formats), and the adapter of the framework you enable, which only translates:
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `tower` | `ApiKeyLayer` and `ApiKeyService`, for any tower stack |
//! | `axum` (default) | `tower`, and `Principal`/`Option<Principal>` as axum extractors |
//! | `actix` | `ApiKeyMiddleware` for `App::wrap`/`Scope::wrap`, and `Principal` as an actix extractor |
//! | `sqlite`, `postgres` | `keygate_sqlx::SqlStore`: keys in a SQLite file or PostgreSQL, with migrations |
//! | `redis` | `keygate_redis`: the rate limiter, the spend meter and the revocation broadcast shared by many instances |
//! | `self-service` (default) | `SelfService`, mounted by `self_service_router` / `self_service_scope` |
//! | `dashboard` (default) | `Dashboard`: the key and usage pages, mounted by `dashboard_at` (or `dashboard_router`) / `dashboard_scope`; the API's OpenAPI document (`openapi_route` / `openapi_resource`) |
//!
//! Both adapters answer the same request with the same status, headers and body: every
//! decision and every byte of every error comes from the core.
//!
//! # Example
//! ```
//! # #[cfg(feature = "axum")]
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use axum::{routing::get, Router};
//! use keygate::hash::Argon2Hasher;
//! use keygate::{ApiKeyLayer, Gate, MemoryStore, NewKey, Principal};
//! use tower::ServiceExt;
//!
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let created = gate.keys().create(NewKey::new("acct_1", "docs").scopes(["read"])).await.unwrap();
//!
//! async fn whoami(principal: Principal) -> String {
//!     principal.owner().to_string()
//! }
//! let app = Router::new()
//!     .route("/v1/whoami", get(whoami))
//!     .layer(ApiKeyLayer::new(gate).require(["read"]));
//!
//! let request = axum::http::Request::get("/v1/whoami")
//!     .header("authorization", format!("Bearer {}", created.key.expose_secret()))
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), axum::http::StatusCode::OK);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The names a user starts with, and the modules of keygate-core by concern.
/// The rejection of a `Principal` extractor used where no keygate layer ran.
#[cfg(any(feature = "axum", feature = "actix"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "axum", feature = "actix"))))]
pub use keygate_core::MissingPrincipal;
pub use keygate_core::{
    backend, background, clock, credential, gate, hash, headers, http, key, manage, policy, principal, rate,
    record, reject, spend, store, verify,
};
pub use keygate_core::{
    Cost, Denial, Gate, GateBuilder, KeyId, KeyStore, MemoryStore, NewKey, OwnerId, Principal, RateLimit,
    Rejection, RoutePolicy, Scopes,
};
/// The self-service key API that the adapters mount.
#[cfg(feature = "self-service")]
#[cfg_attr(docsrs, doc(cfg(feature = "self-service")))]
pub use keygate_self_service::{self, Account, ApiResponse, Caller, SelfService};

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use keygate_tower::{ApiKeyLayer, ApiKeyService};

/// The self-service key API as an axum `Router`, behind its own `ApiKeyLayer`.
#[cfg(all(feature = "axum", feature = "self-service"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "axum", feature = "self-service"))))]
pub use keygate_tower::{account_router, self_service_router};

#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub use keygate_actix::ApiKeyMiddleware;

/// The self-service key API as an actix-web `Scope`, wrapped in its own `ApiKeyMiddleware`.
#[cfg(all(feature = "actix", feature = "self-service"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "actix", feature = "self-service"))))]
pub use keygate_actix::{account_scope, self_service_scope};

/// The key and usage pages over the self-service API, and its OpenAPI document.
#[cfg(feature = "dashboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "dashboard")))]
pub use keygate_dashboard::{self, Dashboard};

/// The dashboard as an axum `Router`, and the OpenAPI document as an axum route.
#[cfg(all(feature = "axum", feature = "dashboard"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "axum", feature = "dashboard"))))]
pub use keygate_dashboard::{dashboard_at, dashboard_router, openapi_route};

/// The dashboard as an actix-web `Scope`, and the OpenAPI document as an actix-web resource.
#[cfg(all(feature = "actix", feature = "dashboard"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "actix", feature = "dashboard"))))]
pub use keygate_dashboard::{dashboard_scope, openapi_resource};

/// The rate limiter and spend meter on Redis, shared by many instances.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use keygate_redis;

/// The SQLite and PostgreSQL key store, [`keygate_sqlx::SqlStore`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use keygate_sqlx;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use keygate_sqlx::SqlStore;

/// The README's Rust snippets, compiled as doctests so they follow the API.
#[cfg(all(doctest, feature = "axum", feature = "actix"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeSnippets;
