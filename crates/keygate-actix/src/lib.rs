//! actix-web middleware for keygate API-key authentication.
//!
//! [`ApiKeyMiddleware`] is an actix [`Transform`](actix_web::dev::Transform) for
//! `App::wrap`, `Scope::wrap` and `Resource::wrap`. It asks a [`keygate_core::Gate`]
//! about every request and does what it says: an admitted request reaches the handler
//! with its [`Principal`](keygate_core::Principal) in the request extensions (handlers
//! take `Principal`, or `Option<Principal>` in optional mode, as an extractor) and leaves
//! with the gate's `X-RateLimit-*` headers; a refused one gets the gate's rendered
//! rejection (status, headers, JSON body), byte for byte what the tower layer sends.
//! This crate decides nothing itself.
//!
//! # Example
//! ```
//! use actix_web::{test, web, App};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey, Principal};
//! use keygate_actix::ApiKeyMiddleware;
//!
//! # actix_web::rt::System::new().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let created = gate.keys().create(NewKey::new("acct_1", "docs")).await.unwrap();
//!
//! async fn whoami(principal: Principal) -> String {
//!     principal.key_id().to_string()
//! }
//! let app = test::init_service(
//!     App::new().wrap(ApiKeyMiddleware::new(gate)).route("/v1/whoami", web::get().to(whoami)),
//! )
//! .await;
//!
//! let refused = test::call_service(&app, test::TestRequest::get().uri("/v1/whoami").to_request()).await;
//! assert_eq!(refused.status().as_u16(), 401);
//!
//! let signed = test::TestRequest::get()
//!     .uri("/v1/whoami")
//!     .insert_header(("authorization", format!("Bearer {}", created.key.expose_secret())))
//!     .to_request();
//! assert_eq!(test::call_service(&app, signed).await.status().as_u16(), 200);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod headers;
pub mod middleware;
#[cfg(feature = "self-service")]
pub mod self_service;

pub use middleware::{ApiKeyMiddleware, ApiKeyMiddlewareService};
#[cfg(feature = "self-service")]
pub use self_service::{account_scope, self_service_scope};
