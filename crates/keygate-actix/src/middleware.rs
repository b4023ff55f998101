//! [`ApiKeyMiddleware`]: admit or refuse each request through a [`Gate`].
//!
//! # Example
//! ```
//! use actix_web::{test, web, App, HttpResponse};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey};
//! use keygate_actix::ApiKeyMiddleware;
//!
//! # actix_web::rt::System::new().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let reader = gate.keys().create(NewKey::new("acct_1", "reader").scopes(["read"])).await.unwrap();
//!
//! let app = test::init_service(
//!     App::new().service(
//!         web::scope("/v1")
//!             .wrap(ApiKeyMiddleware::new(gate).require(["write"]))
//!             .route("/chat", web::post().to(HttpResponse::Ok)),
//!     ),
//! )
//! .await;
//!
//! // A valid key without the `write` scope is refused with 403 by the gate.
//! let request = test::TestRequest::post()
//!     .uri("/v1/chat")
//!     .insert_header(("x-api-key", reader.key.expose_secret()))
//!     .to_request();
//! assert_eq!(test::call_service(&app, request).await.status().as_u16(), 403);
//! # });
//! ```

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, HttpMessage};
use futures_util::future::LocalBoxFuture;
use keygate_core::gate::{After, Charge, Decision, Finish};
use keygate_core::{Cost, Gate, RateLimit, RoutePolicy};
use pin_project_lite::pin_project;

use crate::headers::{append_rate_headers, rejection_response, ActixHeaders, Names};

/// Wraps an actix app, scope or resource: every request must carry a key the [`Gate`]
/// admits under this middleware's [`RoutePolicy`].
///
/// Builders take `self` by value and edit the policy: [`require`](Self::require),
/// [`limits_for`](Self::limits_for), [`cost`](Self::cost), [`optional`](Self::optional), or
/// a whole [`policy`](Self::policy).
///
/// Give each scope one middleware, carrying that scope's whole policy: two on one route
/// would authenticate twice and count the key's rate limits twice.
#[derive(Clone, Debug)]
pub struct ApiKeyMiddleware {
    gate: Gate,
    policy: RoutePolicy,
}

impl ApiKeyMiddleware {
    /// A middleware admitting any valid key: no scope, the key's own limits, no cost.
    pub fn new(gate: Gate) -> Self {
        Self {
            gate,
            policy: RoutePolicy::new(),
        }
    }

    /// Replaces the route policy.
    pub fn policy(mut self, policy: RoutePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Requires these scopes (all of them), in addition to any already required.
    pub fn require<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.policy = self.policy.require(scopes);
        self
    }

    /// Counts requests in a service with limits of its own ("chat": 50/min), per key.
    pub fn limits_for(mut self, name: &str, limits: impl Into<Vec<RateLimit>>) -> Self {
        self.policy = self.policy.limits_for(name, limits);
        self
    }

    /// Charges a fixed cost in micro-cents per admitted request, unless the handler
    /// declares another with a [`Cost`] response extension.
    pub fn cost(mut self, micro_cents: u64) -> Self {
        self.policy = self.policy.cost(micro_cents);
        self
    }

    /// Optional mode: a request without a keygate-formatted key passes with no
    /// principal; one that looks like ours but fails is still refused.
    pub fn optional(mut self, optional: bool) -> Self {
        self.policy = self.policy.optional(optional);
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for ApiKeyMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = ApiKeyMiddlewareService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ApiKeyMiddlewareService {
            service: Rc::new(service),
            gate: self.gate.clone(),
            policy: self.policy.clone(),
            names: Rc::new(Names::of(&self.gate)),
        }))
    }
}

/// The service [`ApiKeyMiddleware`] wraps around the inner one.
///
/// Admitted: the [`Principal`](keygate_core::Principal) (when there is one) goes into the
/// request extensions, the gate's headers (`X-RateLimit-*`) are appended to the
/// response, and the request is charged: the response's [`Cost`] extension, or the
/// policy's fixed cost. Refused: the gate's rendered rejection, as it is.
pub struct ApiKeyMiddlewareService<S> {
    service: Rc<S>,
    gate: Gate,
    policy: RoutePolicy,
    names: Rc<Names>,
}

impl<S> std::fmt::Debug for ApiKeyMiddlewareService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyMiddlewareService")
            .field("gate", &self.gate)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

type Answer<B> = Result<ServiceResponse<EitherBody<B>>, Error>;

pin_project! {
    /// The future of [`ApiKeyMiddlewareService`].
    ///
    /// A request decided at once (a cached key) costs no allocation here: a refusal is a
    /// ready response, an admission the inner service's own future with the headers to
    /// add. Only a cold key, or a response with a cost to charge, is boxed.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Refused { response: Option<ServiceResponse<EitherBody<B>>> },
        Admitted { #[pin] inner: F, after: After, names: Rc<Names> },
        Boxed { future: LocalBoxFuture<'static, Answer<B>> },
    }
}

impl<F, B> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: 'static,
{
    type Output = Answer<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let charging: LocalBoxFuture<'static, Answer<B>> = match state.as_mut().project() {
                StateProj::Refused { response } => {
                    let response = response.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response));
                }
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
                StateProj::Admitted { inner, after, names } => {
                    let response = ready!(inner.poll(cx))?;
                    match finish(std::mem::take(after), names, response) {
                        (response, None) => return Poll::Ready(Ok(response)),
                        (response, Some(charge)) => Box::pin(async move {
                            charge.apply().await;
                            Ok(response)
                        }),
                    }
                }
            };
            state.set(State::Boxed { future: charging });
        }
    }
}

impl<S, B> Service<ServiceRequest> for ApiKeyMiddlewareService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let headers = ActixHeaders {
            map: req.headers(),
            names: &self.names,
        };
        let cold = match self.gate.decide(&headers, &self.policy) {
            Decision::Now(Err(rejection)) => {
                let response = req.into_response(rejection_response(&rejection));
                let response = Some(response.map_into_right_body());
                return ResponseFuture {
                    state: State::Refused { response },
                };
            }
            // A cached key: the inner service is called at once, with no box.
            Decision::Now(Ok(admission)) => {
                let (principal, after) = admission.into_parts();
                if let Some(principal) = principal {
                    req.extensions_mut().insert(principal);
                }
                let inner = self.service.call(req);
                let names = Rc::clone(&self.names);
                return ResponseFuture {
                    state: State::Admitted { inner, after, names },
                };
            }
            Decision::Later(cold) => cold,
        };
        let service = Rc::clone(&self.service);
        let names = Rc::clone(&self.names);
        let future = Box::pin(async move {
            let (principal, after) = match cold.await {
                Ok(admission) => admission.into_parts(),
                Err(rejection) => {
                    let response = req.into_response(rejection_response(&rejection));
                    return Ok(response.map_into_right_body());
                }
            };
            if let Some(principal) = principal {
                req.extensions_mut().insert(principal);
            }
            let (response, charge) = finish(after, &names, service.call(req).await?);
            if let Some(charge) = charge {
                charge.apply().await;
            }
            Ok(response)
        });
        ResponseFuture {
            state: State::Boxed { future },
        }
    }
}

/// Step two of core's protocol: the admission's headers go into the response, and the
/// charge, if any, is what is left to await.
fn finish<B>(
    after: After,
    names: &Names,
    mut response: ServiceResponse<B>,
) -> (ServiceResponse<EitherBody<B>>, Option<Charge>) {
    let declared = || response.response().extensions().get::<Cost>().copied();
    let status = response.status().as_u16();
    let Finish { headers, charge } = after.finish(status, declared);
    if let Some(headers) = headers {
        append_rate_headers(&headers, names, response.headers_mut());
    }
    (response.map_into_left_body(), charge)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use actix_web::http::header::HeaderValue;
    use actix_web::http::StatusCode;
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::{web, App, HttpResponse};
    use chrono::Utc;
    use keygate_core::credential::CredentialSource;
    use keygate_core::hash::Argon2Hasher;
    use keygate_core::rate::MemoryRateLimiter;
    use keygate_core::spend::{MemorySpendMeter, Month};
    use keygate_core::{MemoryStore, NewKey, Principal};

    use super::*;

    fn gate() -> Gate {
        Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .build()
    }

    /// Creates a key and returns its id and its plaintext.
    async fn key(gate: &Gate, new: NewKey) -> (String, String) {
        let created = gate.keys().create(new).await.expect("create a key");
        (
            created.record.key_id.to_string(),
            created.key.expose_secret().to_owned(),
        )
    }

    fn get(uri: &str, key: Option<&str>) -> TestRequest {
        let request = TestRequest::get().uri(uri);
        match key {
            Some(key) => request.insert_header(("authorization", format!("Bearer {key}"))),
            None => request,
        }
    }

    fn header<B>(response: &ServiceResponse<B>, name: &str) -> String {
        let value = response.headers().get(name).map(HeaderValue::to_str);
        value.and_then(Result::ok).unwrap_or("<absent>").to_owned()
    }

    async fn key_id(principal: Principal) -> String {
        principal.key_id().to_string()
    }

    /// An app answering `/me` with the caller's key id, behind `ApiKeyMiddleware` on `gate`.
    async fn me_app(
        gate: Gate,
    ) -> impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = Error> {
        init_service(
            App::new()
                .wrap(ApiKeyMiddleware::new(gate))
                .route("/me", web::get().to(key_id)),
        )
        .await
    }

    #[actix_web::test]
    async fn app_wrap_puts_the_principal_in_the_request_extensions() {
        let gate = gate();
        let (id, key) = key(&gate, NewKey::new("acct_1", "test")).await;
        let app = me_app(gate).await;
        let response = call_service(&app, get("/me", Some(&key)).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(read_body(response).await, id.as_bytes());
    }

    #[actix_web::test]
    async fn a_refusal_is_the_gates_rejection_and_never_reaches_the_handler() {
        let calls = Rc::new(Cell::new(0));
        let seen = calls.clone();
        let app = init_service(App::new().wrap(ApiKeyMiddleware::new(gate())).route(
            "/me",
            web::get().to(move || {
                seen.set(seen.get() + 1);
                async { HttpResponse::Ok().finish() }
            }),
        ))
        .await;
        let response = call_service(&app, get("/me", None).to_request()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&response, "content-type"), "application/json");
        assert_eq!(header(&response, "www-authenticate"), r#"Bearer realm="api""#);
        assert_eq!(
            read_body(response).await,
            r#"{"success":false,"error":{"code":"MISSING_API_KEY","message":"API key is required","details":{"header":"Authorization"}}}"#
                .as_bytes()
        );
        assert_eq!(calls.get(), 0, "a refused request must not reach the handler");
    }

    #[actix_web::test]
    async fn scope_wrap_guards_only_its_scope() {
        let app = init_service(
            App::new()
                .service(
                    web::scope("/private")
                        .wrap(ApiKeyMiddleware::new(gate()))
                        .route("/me", web::get().to(key_id)),
                )
                .route("/health", web::get().to(|| async { "ok" })),
        )
        .await;
        let private = call_service(&app, get("/private/me", None).to_request()).await;
        assert_eq!(private.status(), StatusCode::UNAUTHORIZED);
        let health = call_service(&app, get("/health", None).to_request()).await;
        assert_eq!(health.status(), StatusCode::OK);
    }

    #[actix_web::test]
    async fn admitted_responses_carry_the_rate_limit_headers() {
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .rate_limiter(MemoryRateLimiter::new(), [RateLimit::per_minute(100)])
            .build();
        let (_, key) = key(&gate, NewKey::new("acct_1", "test")).await;
        let app = me_app(gate).await;
        let response = call_service(&app, get("/me", Some(&key)).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-limit"), "100");
        assert_eq!(header(&response, "x-ratelimit-remaining"), "99");
        let reset: i64 = header(&response, "x-ratelimit-reset").parse().unwrap();
        assert!(reset >= Utc::now().timestamp(), "reset is a future Unix time");
    }

    #[actix_web::test]
    async fn the_handlers_declared_cost_is_charged_over_the_routes_fixed_cost() {
        let meter = MemorySpendMeter::new();
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .spend_meter(meter.clone())
            .build();
        let (key_id, key) = key(&gate, NewKey::new("acct_1", "capped").spend_cap(1_000_000)).await;
        let key_id = keygate_core::KeyId::from(key_id.as_str());
        let app = init_service(
            App::new()
                .wrap(ApiKeyMiddleware::new(gate).cost(1000))
                .route(
                    "/declared",
                    web::get().to(|| async {
                        let mut response = HttpResponse::Ok().body("declared");
                        response.extensions_mut().insert(Cost(250));
                        response
                    }),
                )
                .route("/fixed", web::get().to(|| async { "fixed" })),
        )
        .await;
        let declared = call_service(&app, get("/declared", Some(&key)).to_request()).await;
        assert_eq!(declared.status(), StatusCode::OK);
        let fixed = call_service(&app, get("/fixed", Some(&key)).to_request()).await;
        assert_eq!(fixed.status(), StatusCode::OK);
        // 250 declared + 1000 fixed: a declared cost replaces the fixed one.
        assert_eq!(meter.spent_now(&key_id, Month::of(Utc::now())), 1250);
    }

    #[actix_web::test]
    async fn a_handler_error_is_not_charged_the_routes_fixed_cost() {
        let meter = MemorySpendMeter::new();
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .spend_meter(meter.clone())
            .build();
        let (key_id, key) = key(&gate, NewKey::new("acct_1", "capped")).await;
        let key_id = keygate_core::KeyId::from(key_id.as_str());
        let app = init_service(
            App::new()
                .wrap(ApiKeyMiddleware::new(gate).cost(1000))
                .route(
                    "/fails",
                    web::get().to(|| async { HttpResponse::InternalServerError().body("boom") }),
                )
                .route(
                    "/declares",
                    web::get().to(|| async {
                        let mut response = HttpResponse::BadGateway().body("upstream failed");
                        response.extensions_mut().insert(Cost(7));
                        response
                    }),
                ),
        )
        .await;
        for uri in ["/fails", "/fails", "/declares"] {
            let response = call_service(&app, get(uri, Some(&key)).to_request()).await;
            assert!(response.status().is_server_error());
        }
        // Neither 5xx pays the fixed cost; a cost the handler declares is its own call.
        assert_eq!(meter.spent_now(&key_id, Month::of(Utc::now())), 7);
    }

    #[actix_web::test]
    async fn optional_mode_lets_a_request_without_a_key_through_without_a_principal() {
        let app = init_service(
            App::new()
                .wrap(ApiKeyMiddleware::new(gate()).optional(true))
                .route(
                    "/maybe",
                    web::get().to(|principal: Option<Principal>| async move {
                        principal.map_or("anonymous".to_owned(), |p| p.key_id().to_string())
                    }),
                ),
        )
        .await;
        let response = call_service(&app, get("/maybe", None).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(read_body(response).await, "anonymous".as_bytes());
    }

    #[actix_web::test]
    async fn principal_extractor_without_the_middleware_is_a_500_that_says_why() {
        let app = init_service(App::new().route("/me", web::get().to(key_id))).await;
        let response = call_service(&app, get("/me", None).to_request()).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            read_body(response).await,
            "Principal missing: is ApiKeyLayer (axum) or ApiKeyMiddleware (actix) applied to this route?"
                .as_bytes()
        );
    }

    #[actix_web::test]
    async fn a_custom_credential_header_is_read() {
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .sources([CredentialSource::Header("X-Custom-Key")])
            .build();
        let (id, key) = key(&gate, NewKey::new("acct_1", "test")).await;
        let app = me_app(gate).await;
        let request = TestRequest::get()
            .uri("/me")
            .insert_header(("x-custom-key", key.as_str()))
            .to_request();
        let response = call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(read_body(response).await, id.as_bytes());
        let bearer_only = call_service(&app, get("/me", Some(&key)).to_request()).await;
        assert_eq!(bearer_only.status(), StatusCode::UNAUTHORIZED);
    }
}
