//! # axum_service: an axum API protected by keygate
//!
//! Routes (the example-service contract in `docs/ARCHITECTURE.md`): `GET /v1/health` (no key),
//! `GET /v1/whoami` (any key), `GET /v1/models` (scope `read`), `POST /v1/translate`
//! (scope `read`, service `translation` 100/min), `POST /v1/chat/completions` (scope
//! `write`, service `chat` 50/min, 1000 micro-cents declared by the handler),
//! `GET /v1/hello` (optional mode: greets a key's owner, or a guest with no key), and
//! the self-service key API at `/api/v1/api-keys`, with the account's own limits at
//! `/api/v1/account` (`GET`; `PUT` tightens them), usage per key per day at
//! `/api/v1/usage?days=30`, its OpenAPI document at `/api/v1/openapi.json`, the key
//! dashboard at `/app/keys` and `/app/usage`, and `/metrics` (Prometheus).
//!
//! ```sh
//! cargo run --example axum_service
//! curl -H "Authorization: Bearer $KEY" http://127.0.0.1:3000/v1/whoami
//! ```
//!
//! On first start it prints `demo key: …` once: the account's admin key (owner `demo`,
//! scopes `read,write,admin`), which also manages the owner's keys at `/api/v1/api-keys`.
//! A host with its own login (sessions, JWTs) would also put a `keygate::Account` into
//! the request's extensions in a layer around that router, so signed-in users manage
//! their keys without one. Settings: `KEYGATE_ADDR`,
//! `KEYGATE_DATABASE_URL` (`sqlite://FILE` or `postgres://…`), `KEYGATE_ERROR_FORMAT`,
//! and `KEYGATE_REDIS_URL` (feature `redis`): limits, spend and revocations shared by
//! every instance on one Redis (README, "Running many instances").
//!
//! Optional mode lets API keys coexist with another scheme on the same routes: put
//! `ApiKeyLayer::new(gate).optional(true)` next to, say, a JWT layer; a request without
//! a keygate-formatted credential passes with no `Principal` (handlers take
//! `Option<Principal>`), while one that looks like a keygate key but fails is refused.

#[path = "common/mod.rs"]
mod common;

use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json, Router};
use keygate::{
    account_router, dashboard_at, openapi_route, self_service_router, ApiKeyLayer, Cost, Dashboard,
    Principal, RoutePolicy,
};

async fn health() -> Json<serde_json::Value> {
    Json(common::health())
}

async fn whoami(principal: Principal) -> Json<Principal> {
    Json(principal)
}

async fn models() -> Json<serde_json::Value> {
    Json(common::models())
}

async fn translate(Json(request): Json<common::TranslateRequest>) -> Json<serde_json::Value> {
    Json(common::translate(&request))
}

/// Declares its cost as a response extension; the layer charges it to the key.
async fn chat(Json(request): Json<common::ChatRequest>) -> (Extension<Cost>, Json<serde_json::Value>) {
    (Extension(Cost(common::CHAT_COST)), Json(common::chat(&request)))
}

async fn hello(principal: Option<Principal>) -> Json<serde_json::Value> {
    Json(common::hello(principal.as_ref().map(|p| p.owner().as_str())))
}

/// Ctrl-C or SIGTERM: stop accepting, finish in-flight requests, then flush usage.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (settings, gate, background) = common::start().await?;
    let metrics = common::metrics_recorder()?;
    let metrics_gate = gate.clone();

    let policies = common::Policies::new();
    // One route, behind the layer with that route's policy (scopes, service limits).
    let guarded = |path: &str, route: MethodRouter, policy: RoutePolicy| {
        Router::new()
            .route(path, route)
            .route_layer(ApiKeyLayer::new(gate.clone()).policy(policy))
    };
    let app = Router::new()
        .route("/v1/health", get(health))
        .route(
            "/metrics",
            get(move || async move { common::render_metrics(&metrics_gate, &metrics) }),
        )
        .merge(guarded("/v1/whoami", get(whoami), policies.whoami))
        .merge(guarded("/v1/models", get(models), policies.models))
        .merge(guarded("/v1/translate", post(translate), policies.translate))
        .merge(guarded("/v1/chat/completions", post(chat), policies.chat))
        .merge(guarded("/v1/hello", get(hello), policies.hello))
        .nest("/api/v1/api-keys", self_service_router(gate.clone()))
        .nest("/api/v1", account_router(gate.clone()))
        // The OpenAPI document of that API, and the pages over it (they call `/api/v1`).
        .route("/api/v1/openapi.json", openapi_route(Dashboard::new()))
        .merge(dashboard_at("/app", Dashboard::new()));

    let listener = tokio::net::TcpListener::bind(&settings.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "axum_service listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    background.shutdown().await;
    Ok(())
}
