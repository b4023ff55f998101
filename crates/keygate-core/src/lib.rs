//! Framework-agnostic API-key authentication.
//!
//! keygate-core decides; the adapters (`keygate-tower` for axum and tower,
//! `keygate-actix` for actix-web) only translate. The pipeline of [`Gate::admit`]:
//!
//! 1. find the credential (`Authorization: Bearer`, `X-Api-Key`);
//! 2. parse it with no I/O ([`KeyFormat`]);
//! 3. look it up in a cache keyed by its SHA-256;
//! 4. on a miss, one coalesced store lookup and one argon2 verify on a bounded pool;
//! 5. check revocation and expiry, on every request;
//! 6. then scopes, the spend cap and rate limits ([`RoutePolicy`]).
//!
//! Every refusal is a [`Rejection`] whose status, headers and body are rendered here by
//! an [`ErrorFormat`], so every adapter answers byte for byte alike.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod background;
mod cache;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod credential;
mod error;
#[cfg(any(feature = "axum", feature = "actix"))]
mod extract;
mod formats;
mod gate;
mod hash;
mod key;
mod limiter;
mod manage;
mod meter;
mod policy;
mod principal;
mod record;
mod store;
mod verify;

pub use api::{ApiResponse, SelfService};
pub use background::{Background, BackgroundTask};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use credential::{CredentialSource, HeaderSource};
pub use error::{DefaultFormat, Denial, ErrorFormat, Rejection};
#[cfg(any(feature = "axum", feature = "actix"))]
pub use extract::MissingPrincipal;
pub use formats::{ErrorFormatKind, OpenAiFormat, ProblemFormat};
pub use gate::{Admission, Cost, FailMode, Gate, GateBuilder};
pub use hash::{Argon2Hasher, HashError, KeyHasher, ParamCeiling, SecretHash};
pub use key::{ApiKey, KeyFormat, KeyId, ParseError, ParsedKey};
pub use limiter::MemoryRateLimiter;
pub use manage::{CreatedKey, KeyManager, ManageError, Rotated};
pub use meter::MemorySpendMeter;
pub use policy::{
    BackendError, Bucket, DynRateLimiter, DynSpendMeter, Month, RateDecision, RateLimiter, RoutePolicy,
    Service, SpendMeter, WindowState,
};
pub use principal::Principal;
pub use record::{
    parse_duration, Environment, InvalidValue, KeyRecord, KeyStatus, NewKey, OwnerId, RateLimit, Scopes,
    Usage, UsageDelta,
};
pub use store::{BoxFuture, Changes, DynKeyStore, KeyStore, MemoryStore, Page, StoreError};
pub use verify::VerifierConfig;

/// Re-exported so adapters and users name one `http` version.
pub use http;
