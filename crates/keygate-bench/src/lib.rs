//! The apps of keygate's throughput budget, in each of its modes ([`Mode`]), shared by
//! the `load_server` binary (`scripts/load.sh`, `scripts/paired.sh`), the `requests` and
//! `requests_actix` examples (`scripts/instructions.sh`), the `router` bench and the
//! tests, so that all of them measure the same thing.
//!
//! Every mode serves `GET /v1/ping` ("pong"):
//! - `bare`: the app alone;
//! - `auth`: behind `ApiKeyLayer` (in-memory store, cached key), no limiter;
//! - `policy`: the same, plus a required scope and in-memory rate limits (two windows
//!   per key and a service window, high enough never to refuse), so every response
//!   carries `X-RateLimit-*`;
//! - `tower-http`: behind tower-http's `ValidateRequestHeaderLayer::bearer` (one fixed
//!   token compared), the floor of any per-request authentication layer;
//! - `governor`: `tower-http` plus tower_governor, keyed by the presented token, with its
//!   rate-limit headers (limits that never refuse): what a user would hand-build instead
//!   of `policy` (feature `governor`, on by default);
//! - `headers`: one layer (tower's `map_response`) that adds three static
//!   `X-RateLimit-*` headers, the floor of what the rate-limit headers cost;
//! - `floor`: [`FloorLayer`], the least any layer can do that keeps keygate's two
//!   fixed costs: the SHA-256 of the presented key (the cache's key) and a
//!   `Principal` in the request's extensions. No clock, no expiry, no usage, no
//!   second header: a measure of how much of `auth` is inherent, not a product.
//! - `redis-policy`: `policy` with its windows counted on Redis (`RedisRateLimiter`,
//!   windows the script counts exactly, never refusing), at `KEYGATE_BENCH_REDIS_URL`;
//!   served only when that is set (and `actix-redis-policy`, its actix twin);
//! - `floor-headers`: `floor` and `headers` together, the same least for `policy`:
//!   a key hashed, a principal inserted and three rate-limit headers added.
//!
//! Every mode above puts its layer on the route (`Router::route_layer`), as an app whose
//! route groups need different scopes does ([`Framework::AxumRouteLayer`], built by
//! [`app`]); axum then boxes the layered route and its future on each request, which is a
//! cost of any layer there (`tower-http` pays it too). `auth-around` and `policy-around`
//! ([`Framework::AxumAround`]) apply `auth`'s and `policy`'s `ApiKeyLayer` around the
//! whole bare app instead ([`around_app`]), as `ServiceBuilder` does: the same work with
//! nothing boxed.
//!
//! The same app on actix-web ([`Framework::Actix`]): `actix-bare`, `actix-auth`
//! (`ApiKeyMiddleware` on the app) and `actix-policy` (with `policy`'s scope and
//! limits), compared with `actix-bare`.
#![forbid(unsafe_code)]

mod governor;
mod mode;

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

pub use mode::{redis_url, Framework, Mode, UnknownMode};

async fn ping() -> &'static str {
    "pong"
}

/// A gate builder for `mode`: in-memory store and fast hashing (the key is cached after
/// the first request), and the default limits only in the policy modes, which alone count.
/// `redis-policy` counts them on the Redis of [`redis_url`], connected on the first
/// request; it fails without that URL, with a malformed one, or outside a Tokio runtime.
pub fn gate_builder(mode: Mode) -> Result<GateBuilder, String> {
    let builder = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast());
    Ok(match mode {
        Mode::RedisPolicy | Mode::ActixRedisPolicy => {
            let url = redis_url().ok_or("redis-policy needs KEYGATE_BENCH_REDIS_URL")?;
            let limiter = keygate_redis::RedisRateLimiter::connect_lazy(&url)
                .map_err(|e| format!("redis-policy: {e}"))?;
            builder.rate_limiter(limiter, [REDIS_NEVER_PER_MINUTE, REDIS_NEVER_PER_HOUR])
        }
        mode if mode.is_policy() => builder.rate_limiter(
            MemoryRateLimiter::new(),
            [RateLimit::per_minute(u32::MAX), RateLimit::per_hour(u32::MAX)],
        ),
        _ => builder,
    })
}

/// `redis-policy`'s windows that never refuse. `u32::MAX` per minute is beyond what the
/// Redis script counts exactly (see `RedisRateLimiter`'s bounds); one per microsecond of
/// the period always passes, and is as far out of reach.
const REDIS_NEVER_PER_MINUTE: RateLimit = RateLimit::per_minute(60_000_000);
const REDIS_NEVER_PER_HOUR: RateLimit = RateLimit::per_hour(3_600_000_000);

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

/// The app of a [`Framework::AxumRouteLayer`] mode, guarded by `gate` (or, in
/// `tower-http` and `governor`, by the fixed `key`, and in `floor`, by `key` with the
/// principal it was admitted with).
pub fn app(mode: Mode, gate: &Gate, key: &str, principal: &Principal) -> Result<Router, String> {
    let routes = bare_routes();
    Ok(match mode {
        Mode::Bare => routes,
        Mode::Auth | Mode::Policy => routes.route_layer(api_key_layer(mode, gate)),
        // Like `governor` without its feature: not served by a build that cannot.
        Mode::RedisPolicy if !mode.is_available() => {
            return Err("redis-policy needs KEYGATE_BENCH_REDIS_URL".into())
        }
        Mode::RedisPolicy => routes.route_layer(api_key_layer(mode, gate)),
        #[allow(deprecated)] // "too basic for real applications": a floor, here.
        Mode::TowerHttp => routes.route_layer(ValidateRequestHeaderLayer::bearer(key)),
        Mode::Governor => governor::guard(routes, key)?,
        Mode::Headers => routes.route_layer(ServiceBuilder::new().map_response(add_static_headers)),
        Mode::Floor => routes.route_layer(FloorLayer::new(key, principal.clone())),
        Mode::FloorHeaders => routes.route_layer(
            ServiceBuilder::new()
                .map_response(add_static_headers)
                .layer(FloorLayer::new(key, principal.clone())),
        ),
        Mode::AuthAround
        | Mode::PolicyAround
        | Mode::ActixBare
        | Mode::ActixAuth
        | Mode::ActixPolicy
        | Mode::ActixRedisPolicy => return Err(served_elsewhere(mode, "app")),
    })
}

/// The error of a builder asked for a mode of another framework.
fn served_elsewhere(mode: Mode, asked: &str) -> String {
    format!(
        "`{mode}` is served by {}, not {asked}",
        mode.framework().builder()
    )
}

/// `auth`'s or `policy`'s layer: any valid key, or the `read` scope and a service
/// window on top of the gate's default limits.
fn api_key_layer(mode: Mode, gate: &Gate) -> ApiKeyLayer {
    let layer = ApiKeyLayer::new(gate.clone());
    match mode {
        Mode::RedisPolicy => layer
            .require(["read"])
            .limits_for("ping", [REDIS_NEVER_PER_MINUTE]),
        mode if mode.is_policy() => layer
            .require(["read"])
            .limits_for("ping", [RateLimit::per_minute(u32::MAX)]),
        _ => layer,
    }
}

/// The app of a [`Framework::AxumAround`] mode: the bare app inside `auth`'s or
/// `policy`'s `ApiKeyLayer`, applied once around it (as
/// `ServiceBuilder::new().layer(..).service(app)` does) rather than on its route.
pub fn around_app(mode: Mode, gate: &Gate) -> Result<ApiKeyService<Router>, String> {
    match mode.framework() {
        Framework::AxumAround => Ok(api_key_layer(mode, gate).layer(bare_routes())),
        Framework::AxumRouteLayer | Framework::Actix => Err(served_elsewhere(mode, "around_app")),
    }
}

/// The app of `bare`, which every mode guards.
fn bare_routes() -> Router {
    Router::new().route("/v1/ping", get(ping))
}

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

/// The middleware of an actix mode over `gate` (built by [`gate_builder`] for the same
/// mode): `None` for `actix-bare`, which [`actix_bare`] serves as it is.
pub fn actix_middleware(mode: Mode, gate: &Gate) -> Result<Option<ApiKeyMiddleware>, String> {
    match mode {
        Mode::ActixBare => Ok(None),
        Mode::ActixAuth => Ok(Some(ApiKeyMiddleware::new(gate.clone()))),
        Mode::ActixPolicy => Ok(Some(
            ApiKeyMiddleware::new(gate.clone())
                .require(["read"])
                .limits_for("ping", [RateLimit::per_minute(u32::MAX)]),
        )),
        Mode::ActixRedisPolicy => Ok(Some(
            ApiKeyMiddleware::new(gate.clone())
                .require(["read"])
                .limits_for("ping", [REDIS_NEVER_PER_MINUTE]),
        )),
        Mode::Bare
        | Mode::Auth
        | Mode::Policy
        | Mode::AuthAround
        | Mode::PolicyAround
        | Mode::TowerHttp
        | Mode::Governor
        | Mode::Headers
        | Mode::Floor
        | Mode::FloorHeaders
        | Mode::RedisPolicy => Err(served_elsewhere(mode, "actix_middleware")),
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
