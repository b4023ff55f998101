//! Sends `n` requests through the load server's axum app in process, with no sockets:
//! `requests <bare|auth|policy> <n>`. `scripts/instructions.sh` runs it under callgrind
//! twice per mode and divides the difference by the extra requests, which gives the
//! instructions one request costs: an exact count, unlike timings on a shared machine.

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use keygate_core::{Argon2Hasher, Gate, MemoryRateLimiter, MemoryStore, NewKey, RateLimit};
use keygate_tower::ApiKeyLayer;
use tower::ServiceExt;

async fn ping() -> &'static str {
    "pong"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "auth".into());
    let n: usize = args.next().unwrap_or_else(|| "1000".into()).parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let unlimited = u32::MAX;
    let mut builder = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast());
    if mode == "policy" {
        builder = builder.rate_limiter(
            MemoryRateLimiter::new(),
            [RateLimit::per_minute(unlimited), RateLimit::per_hour(unlimited)],
        );
    }
    let gate = builder.build();
    let created = rt.block_on(
        gate.keys()
            .create(NewKey::new("acct_load", "load").scopes(["read"])),
    )?;
    let routes = Router::new().route("/v1/ping", get(ping));
    let app = match mode.as_str() {
        "bare" => routes,
        "auth" => routes.route_layer(ApiKeyLayer::new(gate)),
        "policy" => routes.route_layer(
            ApiKeyLayer::new(gate)
                .require(["read"])
                .service("ping", [RateLimit::per_minute(unlimited)]),
        ),
        other => return Err(format!("unknown mode `{other}`: bare, auth or policy").into()),
    };
    // What `axum::serve` does once per connection: handlers become routes once.
    let app = app.with_state::<()>(());
    let authorization = format!("Bearer {}", created.key.expose_secret());
    rt.block_on(async {
        for _ in 0..n {
            let request = Request::get("/v1/ping")
                .header("authorization", authorization.as_str())
                .body(Body::empty())?;
            let response = app.clone().oneshot(request).await?;
            if !response.status().is_success() {
                return Err(format!("unexpected {}", response.status()).into());
            }
        }
        Ok(())
    })
}
