//! Framework-agnostic API-key authentication.
//!
//! keygate-core decides; the adapters (`keygate-tower` for axum and tower,
//! `keygate-actix` for actix-web) only translate, through the protocol of [`gate`]. The
//! pipeline of [`Gate::decide`]:
//!
//! 1. find the credential (`Authorization: Bearer`, `X-Api-Key`; [`credential`]);
//! 2. parse it with no I/O ([`key::KeyFormat`]);
//! 3. look it up in a cache keyed by its SHA-256 ([`verify`]);
//! 4. on a miss, one coalesced store lookup and one argon2 verify on a bounded pool;
//! 5. check revocation and expiry, on every request;
//! 6. then scopes, the spend cap ([`spend`]) and rate limits ([`rate`]), as the
//!    route's [`RoutePolicy`] says.
//!
//! Every refusal is a [`Rejection`] whose status, headers and body are rendered here by
//! an [`ErrorFormat`](reject::ErrorFormat), so every adapter answers byte for byte alike.
//!
//! The crate root holds the names a user starts with; the rest live in the module of
//! their concern. `docs/ARCHITECTURE.md` in the repository maps them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod account;
pub mod backend;
pub mod background;
pub mod clock;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
pub mod credential;
#[cfg(any(feature = "axum", feature = "actix"))]
mod extract;
pub mod gate;
pub mod hash;
pub mod headers;
mod invalid;
pub mod key;
pub mod manage;
pub mod observe;
pub mod policy;
pub mod principal;
pub mod rate;
pub mod record;
pub mod reject;
pub mod spend;
pub mod store;
pub mod usage;
pub mod verify;

#[cfg(any(feature = "axum", feature = "actix"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "axum", feature = "actix"))))]
pub use extract::MissingPrincipal;
pub use gate::{Gate, GateBuilder};
pub use key::KeyId;
pub use policy::RoutePolicy;
pub use principal::Principal;
pub use record::{NewKey, OwnerId, RateLimit, Scopes};
pub use reject::{Denial, Rejection};
pub use spend::Cost;
pub use store::{KeyStore, MemoryStore};

/// Re-exported so adapters and users name one `http` version.
pub use http;
