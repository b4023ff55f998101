//! The axum app of keygate's throughput budget, served on one thread so that it can be
//! pinned to one core. `scripts/load.sh` runs it and drives it with wrk.
//!
//! `load_server <bare|auth|policy> <addr>` prints `key: <key>` and serves `GET /v1/ping`:
//! - `bare`: the app alone;
//! - `auth`: behind `ApiKeyLayer` (in-memory store, cached key), no limiter;
//! - `policy`: the same, plus a required scope and in-memory rate limits (two windows
//!   per key and a service window, high enough never to refuse).

use axum::routing::get;
use axum::Router;
use keygate_core::{Argon2Hasher, Gate, MemoryRateLimiter, MemoryStore, NewKey, RateLimit};
use keygate_tower::ApiKeyLayer;

async fn ping() -> &'static str {
    "pong"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "auth".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3900".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let unlimited = u32::MAX;
        let builder = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast());
        // Only `policy` counts requests: `auth` measures authentication alone.
        let gate = match mode.as_str() {
            "policy" => builder.rate_limiter(
                MemoryRateLimiter::new(),
                [RateLimit::per_minute(unlimited), RateLimit::per_hour(unlimited)],
            ),
            _ => builder,
        }
        .build();
        let created = gate
            .keys()
            .create(NewKey::new("acct_load", "load").scopes(["read"]))
            .await?;
        println!("key: {}", created.key.expose_secret());
        let routes = Router::new().route("/v1/ping", get(ping));
        let app = match mode.as_str() {
            "bare" => routes,
            "auth" => routes.route_layer(ApiKeyLayer::new(gate.clone())),
            "policy" => routes.route_layer(
                ApiKeyLayer::new(gate.clone())
                    .require(["read"])
                    .service("ping", [RateLimit::per_minute(unlimited)]),
            ),
            other => return Err(format!("unknown mode `{other}`: bare, auth or policy").into()),
        };
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}
