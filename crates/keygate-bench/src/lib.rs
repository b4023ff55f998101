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
//!   `X-RateLimit-*` headers, the floor of what the rate-limit headers cost;
//! - `floor`: [`FloorLayer`], the least any layer can do that keeps keygate's two
//!   fixed costs: the SHA-256 of the presented key (the cache's key) and a
//!   `Principal` in the request's extensions. No clock, no expiry, no usage, no
//!   second header: a measure of how much of `auth` is inherent, not a product.
//! - `floor-headers`: `floor` and `headers` together, the same least for `policy`:
//!   a key hashed, a principal inserted and three rate-limit headers added.
//!
//! Every mode above puts its layer on the route (`Router::route_layer`), as an app whose
//! route groups need different scopes does; axum then boxes the layered route and its
//! future on each request, which is a cost of any layer there (`tower-http` pays it
//! too). [`AROUND_MODES`], `auth-around` and `policy-around`, apply `auth`'s and
//! `policy`'s `ApiKeyLayer` around the whole bare app instead ([`around_app`]), as
//! `ServiceBuilder` does: the same work with nothing boxed.
//!
//! The same app on actix-web, in [`ACTIX_MODES`]: `actix-bare`, `actix-auth`
//! (`ApiKeyMiddleware` on the app) and `actix-policy` (with `policy`'s scope and
//! limits), compared with `actix-bare`.
#![forbid(unsafe_code)]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::future::Either;
use keygate_actix::ApiKeyMiddleware;
use keygate_core::hash::Argon2Hasher;
use keygate_core::manage::CreatedKey;
use keygate_core::rate::MemoryRateLimiter;
use keygate_core::{Gate, GateBuilder, MemoryStore, NewKey, Principal, RateLimit, RoutePolicy};
use keygate_tower::{ApiKeyLayer, ApiKeyService};
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;
use tower::{Layer, Service};
use tower_http::validate_request::ValidateRequestHeaderLayer;

/// The modes, in the order the scripts report them; `bare` is the reference.
pub const MODES: [&str; 7] = [
    "bare",
    "auth",
    "policy",
    "tower-http",
    "headers",
    "floor",
    "floor-headers",
];

async fn ping() -> &'static str {
    "pong"
}

/// The modes served by [`around_app`]: `ApiKeyLayer` around the whole bare app.
pub const AROUND_MODES: [&str; 2] = ["auth-around", "policy-around"];

/// A gate builder for `mode`: in-memory store and fast hashing (the key is cached after
/// the first request), and the default limits only in `policy`, which alone counts.
pub fn gate_builder(mode: &str) -> GateBuilder {
    let builder = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast());
    match mode {
        "policy" | "policy-around" => builder.rate_limiter(
            MemoryRateLimiter::new(),
            [RateLimit::per_minute(u32::MAX), RateLimit::per_hour(u32::MAX)],
        ),
        _ => builder,
    }
}

/// The key the load is sent with, scoped `read`, and the principal `gate` admits it as
/// (which also caches it).
pub async fn create_key(gate: &Gate) -> Result<(CreatedKey, Principal), Box<dyn std::error::Error>> {
    let created = gate
        .keys()
        .create(NewKey::new("acct_load", "load").scopes(["read"]))
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        format!("Bearer {}", created.key.expose_secret()).parse()?,
    );
    let admission = gate
        .admit(&headers, &RoutePolicy::new())
        .await
        .map_err(|rejection| format!("the new key was refused: {}", rejection.status()))?;
    let principal = admission
        .principal()
        .ok_or("admitted without a principal")?
        .clone();
    Ok((created, principal))
}

/// The app of `mode`, guarded by `gate` (or, in `tower-http`, by the fixed `key`, and
/// in `floor`, by `key` with the principal it was admitted with).
pub fn app(mode: &str, gate: &Gate, key: &str, principal: &Principal) -> Result<Router, String> {
    let routes = bare_routes();
    Ok(match mode {
        "bare" => routes,
        "auth" | "policy" => routes.route_layer(api_key_layer(mode, gate)),
        #[allow(deprecated)] // "too basic for real applications": a floor, here.
        "tower-http" => routes.route_layer(ValidateRequestHeaderLayer::bearer(key)),
        "headers" => routes.route_layer(ServiceBuilder::new().map_response(add_static_headers)),
        "floor" => routes.route_layer(FloorLayer::new(key, principal.clone())),
        "floor-headers" => routes.route_layer(
            ServiceBuilder::new()
                .map_response(add_static_headers)
                .layer(FloorLayer::new(key, principal.clone())),
        ),
        other if AROUND_MODES.contains(&other) => {
            return Err(format!("`{other}` is served by around_app, not app"))
        }
        other => return Err(format!("unknown mode `{other}`: one of {}", MODES.join(", "))),
    })
}

/// `auth`'s or `policy`'s layer: any valid key, or the `read` scope and a service
/// window on top of the gate's default limits.
fn api_key_layer(mode: &str, gate: &Gate) -> ApiKeyLayer {
    let layer = ApiKeyLayer::new(gate.clone());
    if mode.starts_with("policy") {
        layer
            .require(["read"])
            .limits_for("ping", [RateLimit::per_minute(u32::MAX)])
    } else {
        layer
    }
}

/// The app of an [`AROUND_MODES`] mode: the bare app inside `auth`'s or `policy`'s
/// `ApiKeyLayer`, applied once around it (as `ServiceBuilder::new().layer(..).service(app)`
/// does) rather than on its route.
pub fn around_app(mode: &str, gate: &Gate) -> Result<ApiKeyService<Router>, String> {
    if !AROUND_MODES.contains(&mode) {
        return Err(format!(
            "unknown around mode `{mode}`: one of {}",
            AROUND_MODES.join(", ")
        ));
    }
    Ok(api_key_layer(mode, gate).layer(bare_routes()))
}

/// The app of `bare`, which every mode guards.
fn bare_routes() -> Router {
    Router::new().route("/v1/ping", get(ping))
}

/// The actix-web modes, in the order the scripts report them; `actix-bare` is their
/// reference.
pub const ACTIX_MODES: [&str; 3] = ["actix-bare", "actix-auth", "actix-policy"];

async fn actix_ping() -> &'static str {
    "pong"
}

/// The actix-web app of `actix-bare`.
pub fn actix_bare() -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    actix_web::App::new().route("/v1/ping", actix_web::web::get().to(actix_ping))
}

/// The actix-web app of `actix-auth` and `actix-policy`: [`actix_bare`]'s app with
/// `middleware` on it, as `App::wrap` puts it. (The two signatures repeat one return
/// type: stable Rust cannot name an `impl Trait` type once.)
pub fn actix_guarded(
    middleware: ApiKeyMiddleware,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    actix_bare().wrap(middleware)
}

/// The middleware of an authenticating actix mode, over `gate` (built by
/// [`gate_builder`] for the mode without its `actix-` prefix).
pub fn actix_middleware(mode: &str, gate: &Gate) -> Result<ApiKeyMiddleware, String> {
    match mode {
        "actix-auth" => Ok(ApiKeyMiddleware::new(gate.clone())),
        "actix-policy" => Ok(ApiKeyMiddleware::new(gate.clone())
            .require(["read"])
            .limits_for("ping", [RateLimit::per_minute(u32::MAX)])),
        other => Err(format!(
            "unknown authenticating actix mode `{other}`: one of {}",
            ACTIX_MODES[1..].join(", ")
        )),
    }
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

/// The `floor` mode's layer: `Authorization: Bearer <key>`, the SHA-256 of the key
/// compared with one known digest, and the principal cloned into the request's
/// extensions; 401 with an empty body otherwise.
#[derive(Clone)]
pub struct FloorLayer {
    known: Arc<([u8; 32], Principal)>,
}

impl FloorLayer {
    /// Admits `key` only, as `principal`.
    pub fn new(key: &str, principal: Principal) -> Self {
        Self {
            known: Arc::new((Sha256::digest(key.as_bytes()).into(), principal)),
        }
    }
}

impl<S> Layer<S> for FloorLayer {
    type Service = FloorService<S>;

    fn layer(&self, inner: S) -> FloorService<S> {
        FloorService {
            inner,
            known: self.known.clone(),
        }
    }
}

/// See [`FloorLayer`].
#[derive(Clone)]
pub struct FloorService<S> {
    inner: S,
    known: Arc<([u8; 32], Principal)>,
}

impl<S> Service<Request<Body>> for FloorService<S>
where
    S: Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let (digest, principal) = &*self.known;
        let admitted = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|key| Sha256::digest(key).as_slice() == digest);
        if !admitted {
            let mut refused = Response::new(Body::empty());
            *refused.status_mut() = StatusCode::UNAUTHORIZED;
            return Either::Right(std::future::ready(Ok(refused)));
        }
        request.extensions_mut().insert(principal.clone());
        Either::Left(self.inner.call(request))
    }
}
