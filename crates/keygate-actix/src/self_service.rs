//! [`self_service_scope`]: the self-service key API as an actix-web [`Scope`], to mount
//! with `App::service`.
//!
//! The scope wraps itself in [`ApiKeyMiddleware::new(gate)`](ApiKeyMiddleware), as the
//! axum router does, so it cannot be mounted unauthenticated by mistake: every call is
//! authenticated by the caller's own key, and acts on that key's owner's keys only.
//! Every decision and every byte of every answer comes from
//! [`keygate_self_service::SelfService`]; the handlers only hand it the caller, the path, the
//! query and the raw body. The routes and answers are those of the axum router:
//! `POST ""` (create), `GET ""` (list, `?offset=&limit=`), `DELETE /{key_id}` (revoke)
//! and `POST /{key_id}/rotate` (rotate).
//!
//! # Example
//! ```
//! use actix_web::{test, App};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey};
//! use keygate_actix::self_service_scope;
//!
//! # actix_web::rt::System::new().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let admin = gate.keys().create(NewKey::new("acct_1", "console").scopes(["admin"])).await.unwrap();
//! let app = test::init_service(App::new().service(self_service_scope("/api/v1/api-keys", gate))).await;
//!
//! let request = test::TestRequest::post()
//!     .uri("/api/v1/api-keys")
//!     .insert_header(("authorization", format!("Bearer {}", admin.key.expose_secret())))
//!     .set_payload(r#"{"name":"CI","scopes":["read"]}"#)
//!     .to_request();
//! assert_eq!(test::call_service(&app, request).await.status().as_u16(), 201);
//!
//! let anonymous = test::TestRequest::get().uri("/api/v1/api-keys").to_request();
//! assert_eq!(test::call_service(&app, anonymous).await.status().as_u16(), 401);
//! # });
//! ```

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::web::{self, Bytes, Data};
use actix_web::{Error, HttpRequest, HttpResponse, Scope};
use keygate_core::{Gate, Principal};
use keygate_self_service::{ApiResponse, SelfService};

use crate::middleware::{core_response, ApiKeyMiddleware};

/// The self-service key API over `gate`, mounted at `path` and wrapped in
/// `ApiKeyMiddleware::new(gate)` (any valid key; no scope required).
pub fn self_service_scope(
    path: &str,
    gate: Gate,
) -> Scope<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<EitherBody<BoxBody>>,
        Error = Error,
        InitError = (),
    >,
> {
    web::scope(path)
        .app_data(Data::new(SelfService::new(gate.clone())))
        .service(
            web::resource("")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(web::resource("/{key_id}").route(web::delete().to(revoke)))
        .service(web::resource("/{key_id}/rotate").route(web::post().to(rotate)))
        .wrap(ApiKeyMiddleware::new(gate))
}

async fn create(api: Data<SelfService>, caller: Principal, body: Bytes) -> HttpResponse {
    respond(api.create(&caller, &body).await)
}

async fn list(api: Data<SelfService>, caller: Principal, req: HttpRequest) -> HttpResponse {
    let query = Some(req.query_string()).filter(|q| !q.is_empty());
    respond(api.list_query(&caller, query).await)
}

async fn revoke(api: Data<SelfService>, caller: Principal, key_id: web::Path<String>) -> HttpResponse {
    respond(api.revoke(&caller, &key_id).await)
}

async fn rotate(
    api: Data<SelfService>,
    caller: Principal,
    key_id: web::Path<String>,
    body: Bytes,
) -> HttpResponse {
    respond(api.rotate(&caller, &key_id, &body).await)
}

/// Copies core's response (http 1 types) into actix's (http 0.2 types) by status code,
/// header bytes and body. Core's headers are valid header text, so no conversion fails in
/// practice; a pair that did would be skipped rather than panic.
fn respond(response: ApiResponse) -> HttpResponse {
    let (status, headers, body) = response.into_parts();
    core_response(status, &headers, body)
}
