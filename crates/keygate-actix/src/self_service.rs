//! [`self_service_scope`]: the self-service key API as an actix-web [`Scope`], to mount
//! with `App::service`.
//!
//! The API serves two kinds of caller: an [`Account`] that the host application's own
//! authentication (its session or JWT layer) put into the request's extensions
//! (`req.extensions_mut().insert(..)` in a middleware around the scope), with full
//! rights over its owner's keys; and an API key holding the manage scope (`admin` by
//! default), which never makes a key stronger than itself. The scope wraps itself in
//! [`ApiKeyMiddleware::new(gate)`](ApiKeyMiddleware) in optional mode, as the axum
//! router does: a key in the gate's format is verified (401 when it fails), other
//! credentials are left to the host. A request with neither an account nor a key gets
//! 401 `MISSING_API_KEY`, and a key without the manage scope 403, on every route. Every
//! decision and every byte of every answer comes from
//! [`keygate_self_service::SelfService`]; the handlers only hand it the caller (the
//! account from the extensions, else the key's [`Principal`]), the path, the query and
//! the raw body. The routes and answers are those of the axum router: `POST ""`
//! (create), `GET ""` (list, `?offset=&limit=`), `DELETE /{key_id}` (revoke) and
//! `POST /{key_id}/rotate` (rotate).
//!
//! # Example
//! ```
//! use actix_web::dev::Service;
//! use actix_web::{test, App, HttpMessage};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey};
//! use keygate_actix::self_service_scope;
//! use keygate_self_service::Account;
//!
//! # actix_web::rt::System::new().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let admin = gate.keys().create(NewKey::new("acct_1", "console").scopes(["admin"])).await.unwrap();
//! let app = App::new()
//!     // The host's own login: here, a stand-in for a session check that knows the user.
//!     .wrap_fn(|req, srv| {
//!         if req.headers().get("cookie").is_some_and(|c| c == "session=acct_1") {
//!             req.extensions_mut().insert(Account::new("acct_1"));
//!         }
//!         srv.call(req)
//!     })
//!     .service(self_service_scope("/api/v1/api-keys", gate));
//! let app = test::init_service(app).await;
//!
//! // An admin key manages its owner's keys.
//! let request = test::TestRequest::post()
//!     .uri("/api/v1/api-keys")
//!     .insert_header(("authorization", format!("Bearer {}", admin.key.expose_secret())))
//!     .set_payload(r#"{"name":"CI","scopes":["read"]}"#)
//!     .to_request();
//! assert_eq!(test::call_service(&app, request).await.status().as_u16(), 201);
//!
//! // So does a signed-in user, with no key at all.
//! let signed_in = test::TestRequest::get()
//!     .uri("/api/v1/api-keys")
//!     .insert_header(("cookie", "session=acct_1"))
//!     .to_request();
//! assert_eq!(test::call_service(&app, signed_in).await.status().as_u16(), 200);
//!
//! let anonymous = test::TestRequest::get().uri("/api/v1/api-keys").to_request();
//! assert_eq!(test::call_service(&app, anonymous).await.status().as_u16(), 401);
//! # });
//! ```

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::web::{self, Bytes, Data};
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, Scope};
use keygate_core::Principal;
use keygate_self_service::{Account, ApiResponse, Caller, SelfService};

use crate::headers::core_response;
use crate::middleware::ApiKeyMiddleware;

/// The self-service key API, mounted at `path` and wrapped in
/// `ApiKeyMiddleware::new(gate)` with [`SelfService::route_policy`] (optional mode, free
/// of spend caps). Takes a [`Gate`](keygate_core::Gate),
/// or a [`SelfService`] to configure (its manage scope). Insert the host's [`Account`]
/// in a middleware around it.
pub fn self_service_scope(
    path: &str,
    api: impl Into<SelfService>,
) -> Scope<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<EitherBody<BoxBody>>,
        Error = Error,
        InitError = (),
    >,
> {
    let api = api.into();
    let gate = api.gate().clone();
    web::scope(path)
        .app_data(Data::new(api))
        .service(
            web::resource("")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(web::resource("/{key_id}").route(web::delete().to(revoke)))
        .service(web::resource("/{key_id}/rotate").route(web::post().to(rotate)))
        .wrap(ApiKeyMiddleware::new(gate).policy(SelfService::route_policy()))
}

/// The account routes of the self-service API, mounted at `path` (`/api/v1`): `GET
/// /account` shows the caller's owner's own limits (shared by all its keys) and this
/// month's spend of its keys together, `PUT /account` tightens them
/// ([`SelfService::account`], [`SelfService::set_account`]); `GET /usage?days=30` gives
/// each key's requests per day, spend and flags of unusual activity
/// ([`SelfService::usage`]). The same callers and middleware as [`self_service_scope`].
///
/// An actix scope answers every path below it (404 for one it does not route): register
/// what else lives under `path` before it, `self_service_scope("/api/v1/api-keys", …)`
/// and the OpenAPI document at `/api/v1/openapi.json`.
pub fn account_scope(
    path: &str,
    api: impl Into<SelfService>,
) -> Scope<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<EitherBody<BoxBody>>,
        Error = Error,
        InitError = (),
    >,
> {
    let api = api.into();
    let gate = api.gate().clone();
    web::scope(path)
        .app_data(Data::new(api))
        .service(
            web::resource("/account")
                .route(web::get().to(account))
                .route(web::put().to(set_account)),
        )
        .service(web::resource("/usage").route(web::get().to(usage)))
        .wrap(ApiKeyMiddleware::new(gate).policy(SelfService::route_policy()))
}

async fn account(api: Data<SelfService>, req: HttpRequest) -> HttpResponse {
    respond(api.account(&caller(&req)).await)
}

async fn usage(api: Data<SelfService>, req: HttpRequest) -> HttpResponse {
    let query = Some(req.query_string()).filter(|q| !q.is_empty());
    respond(api.usage(&caller(&req), query).await)
}

async fn set_account(api: Data<SelfService>, req: HttpRequest, body: Bytes) -> HttpResponse {
    respond(api.set_account(&caller(&req), &body).await)
}

/// The caller from the request's extensions: the host's account, else the key's principal.
fn caller(req: &HttpRequest) -> Caller {
    let extensions = req.extensions();
    Caller::new(extensions.get::<Account>(), extensions.get::<Principal>())
}

async fn create(api: Data<SelfService>, req: HttpRequest, body: Bytes) -> HttpResponse {
    respond(api.create(&caller(&req), &body).await)
}

async fn list(api: Data<SelfService>, req: HttpRequest) -> HttpResponse {
    let query = Some(req.query_string()).filter(|q| !q.is_empty());
    respond(api.list_query(&caller(&req), query).await)
}

async fn revoke(api: Data<SelfService>, req: HttpRequest, key_id: web::Path<String>) -> HttpResponse {
    respond(api.revoke(&caller(&req), &key_id).await)
}

async fn rotate(
    api: Data<SelfService>,
    req: HttpRequest,
    key_id: web::Path<String>,
    body: Bytes,
) -> HttpResponse {
    respond(api.rotate(&caller(&req), &key_id, &body).await)
}

/// Copies core's response (http 1 types) into actix's (http 0.2 types) by status code,
/// header bytes and body. Core's headers are valid header text, so no conversion fails in
/// practice; a pair that did would be skipped rather than panic.
fn respond(response: ApiResponse) -> HttpResponse {
    let (status, headers, body) = response.into_parts();
    core_response(status, &headers, body)
}
