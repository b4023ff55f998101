//! # actix_service: an actix-web API protected by keygate
//!
//! The same API as `axum_service` (the example-service contract in `docs/ARCHITECTURE.md`):
//! `GET /v1/health`, `GET /v1/whoami`, `GET /v1/models`, `POST /v1/translate`,
//! `POST /v1/chat/completions` (declares a cost of 1000 micro-cents), `GET /v1/hello`
//! (optional mode), the self-service key API at `/api/v1/api-keys`, the account's own
//! limits at `/api/v1/account` (`GET`; `PUT` tightens them), usage per key per day at
//! `/api/v1/usage?days=30`, its OpenAPI document at `/api/v1/openapi.json`, the key
//! dashboard at `/app/keys` and `/metrics` (Prometheus). The demo key it
//! prints on first start is the account's admin key (owner `demo`, scopes
//! `read,write,admin`), so it manages the owner's keys there too. A host with its own
//! login would also insert a `keygate::Account` with `req.extensions_mut()` in a
//! middleware around that scope, so signed-in users manage their keys without one.
//! Settings as `axum_service`'s, `KEYGATE_REDIS_URL` (feature `redis`) included.
//!
//! ```sh
//! cargo run --example actix_service --features actix
//! curl -H "Authorization: Bearer $KEY" http://127.0.0.1:3000/v1/whoami
//! ```

#[path = "common/mod.rs"]
mod common;

use actix_web::dev::HttpServiceFactory;
use actix_web::{web, App, HttpResponse, HttpServer};
use keygate::{
    account_scope, dashboard_scope, openapi_resource, self_service_scope, ApiKeyMiddleware, Cost, Dashboard,
    Gate, Principal, RoutePolicy,
};

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(common::health())
}

async fn whoami(principal: Principal) -> HttpResponse {
    HttpResponse::Ok().json(principal)
}

async fn models() -> HttpResponse {
    HttpResponse::Ok().json(common::models())
}

async fn translate(request: web::Json<common::TranslateRequest>) -> HttpResponse {
    HttpResponse::Ok().json(common::translate(&request))
}

/// Declares its cost as a response extension; the middleware charges it to the key.
async fn chat(request: web::Json<common::ChatRequest>) -> HttpResponse {
    let mut response = HttpResponse::Ok().json(common::chat(&request));
    response.extensions_mut().insert(Cost(common::CHAT_COST));
    response
}

async fn hello(principal: Option<Principal>) -> HttpResponse {
    HttpResponse::Ok().json(common::hello(principal.as_ref().map(|p| p.owner().as_str())))
}

/// One route behind the middleware with its own policy.
fn guarded(gate: &Gate, path: &str, policy: RoutePolicy, route: actix_web::Route) -> impl HttpServiceFactory {
    web::scope(path)
        .wrap(ApiKeyMiddleware::new(gate.clone()).policy(policy))
        .route("", route)
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (settings, gate, background) = common::start().await?;
    let metrics = common::metrics_recorder()?;

    let server_gate = gate.clone();
    let dashboard = Dashboard::new();
    let server = HttpServer::new(move || {
        let gate = &server_gate;
        let policies = common::Policies::new();
        let (metrics_gate, metrics) = (gate.clone(), metrics.clone());
        App::new()
            .route("/v1/health", web::get().to(health))
            .route(
                "/metrics",
                web::get().to(move || {
                    let body = common::render_metrics(&metrics_gate, &metrics);
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4")
                            .body(body)
                    }
                }),
            )
            .service(guarded(
                gate,
                "/v1/whoami",
                policies.whoami,
                web::get().to(whoami),
            ))
            .service(guarded(
                gate,
                "/v1/models",
                policies.models,
                web::get().to(models),
            ))
            .service(guarded(
                gate,
                "/v1/translate",
                policies.translate,
                web::post().to(translate),
            ))
            .service(guarded(
                gate,
                "/v1/chat/completions",
                policies.chat,
                web::post().to(chat),
            ))
            .service(guarded(gate, "/v1/hello", policies.hello, web::get().to(hello)))
            // The OpenAPI document of the key API, and the pages over it (they call
            // `/api/v1`). A scope answers every path below it, 404 included, so the
            // resources under `/api/v1` come before the `/api/v1` scope.
            .service(openapi_resource("/api/v1/openapi.json", dashboard.clone()))
            .service(self_service_scope("/api/v1/api-keys", gate.clone()))
            .service(account_scope("/api/v1", gate.clone()))
            .service(dashboard_scope("/app", dashboard.clone()))
    })
    .bind(&settings.addr)?;
    tracing::info!(addr = %settings.addr, "actix_service listening");
    server.run().await?;
    background.shutdown().await;
    Ok(())
}
