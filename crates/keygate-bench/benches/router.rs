//! The user-space cost of `ApiKeyLayer` in an axum app, without sockets: the same
//! router as `load_server` (bare, auth, policy) called with `oneshot`.
//! `cargo bench -p keygate-bench --bench router`.

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use keygate_core::{Argon2Hasher, Gate, MemoryRateLimiter, MemoryStore, NewKey, RateLimit};
use keygate_tower::ApiKeyLayer;
use tower::ServiceExt;

async fn ping() -> &'static str {
    "pong"
}

fn router(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let unlimited = u32::MAX;
    let auth_gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let policy_gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .rate_limiter(
            MemoryRateLimiter::new(),
            [RateLimit::per_minute(unlimited), RateLimit::per_hour(unlimited)],
        )
        .build();
    let new = || NewKey::new("acct_bench", "bench").scopes(["read"]);
    let auth_key = rt.block_on(auth_gate.keys().create(new())).expect("key");
    let policy_key = rt.block_on(policy_gate.keys().create(new())).expect("key");

    let routes = Router::new().route("/v1/ping", get(ping));
    let apps = [
        ("bare", routes.clone(), auth_key.key.expose_secret().to_string()),
        (
            "auth",
            routes.clone().route_layer(ApiKeyLayer::new(auth_gate)),
            auth_key.key.expose_secret().to_string(),
        ),
        (
            "policy",
            routes.route_layer(
                ApiKeyLayer::new(policy_gate)
                    .require(["read"])
                    .service("ping", [RateLimit::per_minute(unlimited)]),
            ),
            policy_key.key.expose_secret().to_string(),
        ),
    ];
    let mut group = c.benchmark_group("router");
    for (name, app, key) in apps {
        // What `axum::serve` does once per connection: handlers become routes (and
        // layers are applied) once, not on every request.
        let app = app.with_state::<()>(());
        let request = move || {
            Request::get("/v1/ping")
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .expect("request")
        };
        rt.block_on(app.clone().oneshot(request())).expect("warm");
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { app.clone().oneshot(request()).await.map(|r| r.status()) })
        });
    }
    group.finish();
}

criterion_group!(benches, router);
criterion_main!(benches);
