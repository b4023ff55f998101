//! The axum app of keygate's throughput budget, served on one thread so that it can be
//! pinned to one core. `scripts/load.sh` runs it and drives it with wrk.
//!
//! `load_server <mode> <addr>` prints `key: <key>` and serves `GET /v1/ping`:
//! - `bare`: the app alone;
//! - `tower-http`: behind tower-http's `ValidateRequestHeaderLayer::bearer` (one fixed
//!   token compared), a floor for any per-request authentication;
//! - `headers`: the app adding three static `X-RateLimit-*` headers, the floor of what
//!   the rate-limit headers cost by themselves;
//! - `auth`: behind `ApiKeyLayer` (in-memory store, cached key), no limiter;
//! - `policy`: the same, plus a required scope and in-memory rate limits (two windows
//!   per key and a service window, high enough never to refuse);
//! - `flood` / `flood-unthrottled`: `auth` with real argon2 parameters, writing to the
//!   file named by a third argument 10 000 well-formed wrong keys: half guess secrets
//!   for one real key id, half name unknown ids. `flood-unthrottled` turns off the
//!   per-key-id failure limit, to show what it saves.

use axum::http::{HeaderName, HeaderValue};
use axum::routing::get;
use axum::Router;
use std::io::Write;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::validate_request::ValidateRequestHeaderLayer;

use keygate_core::{
    Argon2Hasher, Environment, Gate, KeyFormat, MemoryRateLimiter, MemoryStore, NewKey, RateLimit,
    VerifierConfig,
};
use keygate_tower::ApiKeyLayer;

async fn ping() -> &'static str {
    "pong"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "auth".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3900".into());
    let flood_file = args.next();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let unlimited = u32::MAX;
        let flooded = mode.starts_with("flood");
        let mut builder = Gate::builder(MemoryStore::new());
        builder = if flooded {
            // Real parameters: a flood is only a threat when hashes are expensive.
            let failure_limit = if mode == "flood-unthrottled" { u32::MAX } else { 20 };
            builder.hasher(Argon2Hasher::default()).verifier(VerifierConfig {
                failure_limit,
                ..VerifierConfig::default()
            })
        } else {
            builder.hasher(Argon2Hasher::insecure_fast())
        };
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
        if flooded {
            let path = flood_file.ok_or("flood modes take a file for the flood keys")?;
            write_flood(&path, gate.keys().key_format(), &gate).await?;
        }
        println!("key: {}", created.key.expose_secret());
        let routes = Router::new().route("/v1/ping", get(ping));
        let app = match mode.as_str() {
            "bare" => routes,
            // References for the same run: what the simplest bearer check costs (one
            // comparison with a fixed token), and what three static headers cost.
            #[allow(deprecated)] // "too basic for real applications": a floor, here.
            "tower-http" => {
                routes.route_layer(ValidateRequestHeaderLayer::bearer(created.key.expose_secret()))
            }
            "headers" => routes.route_layer(
                ServiceBuilder::new()
                    .layer(static_header("x-ratelimit-limit", "4294967295"))
                    .layer(static_header("x-ratelimit-remaining", "4294967294"))
                    .layer(static_header("x-ratelimit-reset", "1795000000")),
            ),
            "auth" | "flood" | "flood-unthrottled" => routes.route_layer(ApiKeyLayer::new(gate.clone())),
            "policy" => routes.route_layer(
                ApiKeyLayer::new(gate.clone())
                    .require(["read"])
                    .service("ping", [RateLimit::per_minute(unlimited)]),
            ),
            other => {
                return Err(
                    format!("unknown mode `{other}`: bare, auth, policy, tower-http or headers").into(),
                )
            }
        };
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Appends a fixed response header.
fn static_header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::appending(HeaderName::from_static(name), HeaderValue::from_static(value))
}

/// 10 000 well-formed keys that fail: guesses at a real id's secret, and unknown ids.
async fn write_flood(path: &str, format: &KeyFormat, gate: &Gate) -> Result<(), Box<dyn std::error::Error>> {
    let victim = gate.keys().create(NewKey::new("acct_victim", "victim")).await?;
    let victim_id = victim.record.key_id.as_str();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..10_000 {
        let (_, fresh) = format.generate(Environment::Live);
        let line = if i % 2 == 0 {
            let secret = format.parse(fresh.expose_secret())?.secret().to_string();
            format.compose(victim_id, &secret)?.expose_secret().to_string()
        } else {
            fresh.expose_secret().to_string()
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
