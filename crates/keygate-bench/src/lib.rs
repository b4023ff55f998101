//! The axum app of keygate's throughput budget, in each of its modes, shared by the
//! `load_server` binary (`scripts/load.sh`), the `requests` example
//! (`scripts/instructions.sh`) and the `router` bench, so that all three measure the
//! same thing.
//!
//! Every mode serves `GET /v1/ping` ("pong"):
//! - `bare`: the app alone;
//! - `auth`: behind `ApiKeyLayer` (in-memory store, cached key), no limiter;
//! - `policy`: the same, plus a required scope and in-memory rate limits (two windows
//!   per key and a service window, high enough never to refuse), so every response
//!   carries `X-RateLimit-*`;
//! - `tower-http`: behind tower-http's `ValidateRequestHeaderLayer::bearer` (one fixed
//!   token compared), the floor of any per-request authentication layer;
//! - `headers`: one layer (tower's `map_response`) that adds three static
//!   `X-RateLimit-*` headers, the floor of what the rate-limit headers cost.
#![forbid(unsafe_code)]

use std::sync::LazyLock;

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use keygate_core::{
    Argon2Hasher, CreatedKey, Gate, GateBuilder, ManageError, MemoryRateLimiter, MemoryStore, NewKey,
    RateLimit,
};
use keygate_tower::ApiKeyLayer;
use tower::ServiceBuilder;
use tower_http::validate_request::ValidateRequestHeaderLayer;

/// The modes, in the order the scripts report them; `bare` is the reference.
pub const MODES: [&str; 5] = ["bare", "auth", "policy", "tower-http", "headers"];

async fn ping() -> &'static str {
    "pong"
}

/// A gate builder for `mode`: in-memory store and fast hashing (the key is cached after
/// the first request), and the default limits only in `policy`, which alone counts.
pub fn gate_builder(mode: &str) -> GateBuilder {
    let builder = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast());
    match mode {
        "policy" => builder.rate_limiter(
            MemoryRateLimiter::new(),
            [RateLimit::per_minute(u32::MAX), RateLimit::per_hour(u32::MAX)],
        ),
        _ => builder,
    }
}

/// The key the load is sent with, scoped `read`.
pub async fn create_key(gate: &Gate) -> Result<CreatedKey, ManageError> {
    gate.keys()
        .create(NewKey::new("acct_load", "load").scopes(["read"]))
        .await
}

/// The app of `mode`, guarded by `gate` (or, in `tower-http`, by the fixed `key`).
pub fn app(mode: &str, gate: &Gate, key: &str) -> Result<Router, String> {
    let routes = Router::new().route("/v1/ping", get(ping));
    Ok(match mode {
        "bare" => routes,
        "auth" => routes.route_layer(ApiKeyLayer::new(gate.clone())),
        "policy" => routes.route_layer(
            ApiKeyLayer::new(gate.clone())
                .require(["read"])
                .service("ping", [RateLimit::per_minute(u32::MAX)]),
        ),
        #[allow(deprecated)] // "too basic for real applications": a floor, here.
        "tower-http" => routes.route_layer(ValidateRequestHeaderLayer::bearer(key)),
        "headers" => routes.route_layer(ServiceBuilder::new().map_response(add_static_headers)),
        other => return Err(format!("unknown mode `{other}`: one of {}", MODES.join(", "))),
    })
}

/// Appends three fixed `X-RateLimit-*` headers, whose names and values are made once,
/// as `policy`'s are.
fn add_static_headers(mut response: Response) -> Response {
    static FIXED: LazyLock<[(HeaderName, HeaderValue); 3]> = LazyLock::new(|| {
        [
            ("x-ratelimit-limit", "4294967295"),
            ("x-ratelimit-remaining", "4294967294"),
            ("x-ratelimit-reset", "1795000000"),
        ]
        .map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value)))
    });
    for (name, value) in FIXED.iter() {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}
