//! [`ApiKeyLayer`] and [`ApiKeyService`]: admit or refuse each request through a [`Gate`].
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey, Principal};
//! use keygate_tower::ApiKeyLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let reader = gate.keys().create(NewKey::new("acct_1", "reader").scopes(["read"])).await.unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(ApiKeyLayer::new(gate).require(["write"]))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let owner = req.extensions().get::<Principal>().map(|p| p.owner().to_string());
//!         Ok::<_, Infallible>(Response::new(Bytes::from(owner.unwrap_or_default())))
//!     }));
//!
//! // A valid key without the `write` scope is refused with 403 by the gate.
//! let request = Request::builder()
//!     .header("x-api-key", reader.key.expose_secret())
//!     .body(())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use keygate_core::gate::{After, Charge, Decision, Finish};
use keygate_core::{Cost, Gate, RateLimit, RoutePolicy};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send + 'static>>;

pin_project! {
    /// The future of [`ApiKeyService`].
    ///
    /// A request decided at once (a cached key) costs no allocation here: a refusal is a
    /// ready response, an admission the inner service's own future (alone, when there
    /// is nothing to do after it). Only a cold key, or a response with a cost to charge,
    /// is boxed.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        Refused { response: Option<Response<B>> },
        Passed { #[pin] inner: F },
        Admitted { #[pin] inner: F, after: After },
        Boxed { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Send + 'static,
    E: 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let charging: BoxedResponse<B, E> = match state.as_mut().project() {
                StateProj::Refused { response } => {
                    let response = response.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response));
                }
                StateProj::Passed { inner } => return inner.poll(cx),
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
                StateProj::Admitted { inner, after } => {
                    // The response is finished where the inner future answered it, and
                    // that answer returned as it is: no copies of it on the way out.
                    let mut polled = inner.poll(cx);
                    let charge = match &mut polled {
                        Poll::Ready(Ok(response)) => finish(after, response),
                        _ => None,
                    };
                    let Some(charge) = charge else {
                        return polled;
                    };
                    let response = match polled {
                        Poll::Ready(Ok(response)) => response,
                        other => return other,
                    };
                    Box::pin(async move {
                        charge.apply().await;
                        Ok(response)
                    })
                }
            };
            state.set(State::Boxed { future: charging });
        }
    }
}

/// Step two of core's protocol: the admission's headers go into the response, and the
/// charge, if any, is what is left to await. The response is edited where it is, and
/// `after` taken here, not moved in and out.
fn finish<B>(after: &mut After, response: &mut Response<B>) -> Option<Charge> {
    let status = response.status().as_u16();
    let after = std::mem::take(after);
    let Finish { headers, charge } = after.finish(status, || response.extensions().get::<Cost>().copied());
    if let Some(headers) = headers {
        headers.append_to(response.headers_mut());
    }
    charge
}

/// Applies [`ApiKeyService`] to a service: every request must carry a key the
/// [`Gate`] admits under this layer's [`RoutePolicy`].
///
/// Builders take `self` by value and edit the policy: [`require`](Self::require),
/// [`limits_for`](Self::limits_for), [`cost`](Self::cost), [`optional`](Self::optional), or
/// a whole [`policy`](Self::policy).
///
/// With axum, `Router::route_layer` guards only the routes added before it (an unknown
/// path stays a 404), while `Router::layer` also guards the fallback (an unknown path
/// without a key is a 401).
///
/// Give each route one layer, carrying that route's whole policy: two layers on one
/// route would authenticate twice and count the key's rate limits twice.
#[derive(Clone, Debug)]
pub struct ApiKeyLayer {
    gate: Gate,
    policy: RoutePolicy,
}

impl ApiKeyLayer {
    /// A layer admitting any valid key: no scope, the key's own limits, no cost.
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

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyService::new(inner, self.gate.clone(), self.policy.clone())
    }
}

/// Authenticates each request with a [`Gate`] before the inner service sees it.
///
/// Admitted: the [`Principal`](keygate_core::Principal) (when there is one) goes into the
/// request extensions, the gate's headers (`X-RateLimit-*`) are appended to the
/// response, and the request is charged: the response's [`Cost`] extension, or the
/// policy's fixed cost. Refused: the gate's rendered rejection, as it is.
#[derive(Clone, Debug)]
pub struct ApiKeyService<S> {
    inner: S,
    /// One reference for both: axum clones the service for every request.
    shared: Arc<(Gate, RoutePolicy)>,
}

impl<S> ApiKeyService<S> {
    /// Wraps `inner`, admitting requests through `gate` under `policy`.
    pub fn new(inner: S, gate: Gate, policy: RoutePolicy) -> Self {
        Self {
            inner,
            shared: Arc::new((gate, policy)),
        }
    }

    /// A layer that wraps services in `ApiKeyService`; the same as [`ApiKeyLayer::new`].
    pub fn layer(gate: Gate) -> ApiKeyLayer {
        ApiKeyLayer::new(gate)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for ApiKeyService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let (gate, policy) = &*self.shared;
        let cold = match gate.decide(request.headers(), policy) {
            Decision::Now(Err(rejection)) => {
                let response = Some(rejection.into_response());
                return ResponseFuture {
                    state: State::Refused { response },
                };
            }
            // A cached key: the readied inner service is called directly, with no clone
            // of it and no future around the decision.
            Decision::Now(Ok(admission)) => {
                let (principal, after) = admission.into_parts();
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                }
                // One call site, so that the handler's future is built where it stays.
                let inner = self.inner.call(request);
                let state = if after.is_empty() {
                    State::Passed { inner }
                } else {
                    State::Admitted { inner, after }
                };
                return ResponseFuture { state };
            }
            Decision::Later(cold) => cold,
        };
        // A cold key: `poll_ready` readied `self.inner`, so that instance serves this
        // request and a fresh clone stays behind for the next `poll_ready`.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = Box::pin(async move {
            let (principal, mut after) = match cold.await {
                Ok(admission) => admission.into_parts(),
                Err(rejection) => return Ok(rejection.into_response()),
            };
            if let Some(principal) = principal {
                request.extensions_mut().insert(principal);
            }
            let mut response = inner.call(request).await?;
            if let Some(charge) = finish(&mut after, &mut response) {
                charge.apply().await;
            }
            Ok(response)
        });
        ResponseFuture {
            state: State::Boxed { future },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::body::Body;
    use axum::routing::get;
    use axum::{Extension, Router};
    use chrono::Utc;
    use http::{header, StatusCode};
    use http_body_util::BodyExt;
    use keygate_core::hash::Argon2Hasher;
    use keygate_core::rate::MemoryRateLimiter;
    use keygate_core::spend::{MemorySpendMeter, Month};
    use keygate_core::{MemoryStore, NewKey, Principal};
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    use super::*;

    fn gate() -> Gate {
        Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .build()
    }

    /// Creates a key and returns its id and its plaintext.
    async fn key(gate: &Gate, scopes: &[&str]) -> (String, String) {
        let created = gate
            .keys()
            .create(NewKey::new("acct_1", "test").scopes(scopes.iter().copied()))
            .await
            .expect("create a key");
        (
            created.record.key_id.to_string(),
            created.key.expose_secret().to_owned(),
        )
    }

    fn get_with(uri: &str, key: Option<&str>) -> Request<Body> {
        let mut builder = Request::get(uri);
        if let Some(key) = key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        builder.body(Body::empty()).expect("a valid request")
    }

    async fn text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.expect("a body").to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    async fn key_id(Extension(principal): Extension<Principal>) -> String {
        principal.key_id().to_string()
    }

    #[tokio::test]
    async fn router_layer_puts_the_principal_in_the_request_extensions() {
        let gate = gate();
        let (id, key) = key(&gate, &[]).await;
        let app = Router::new()
            .route("/me", get(key_id))
            .layer(ApiKeyLayer::new(gate));
        let response = app
            .oneshot(get_with("/me", Some(&key)))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, id);
    }

    #[tokio::test]
    async fn router_layer_answers_a_missing_key_with_the_gates_rejection() {
        let app = Router::new()
            .route("/me", get(key_id))
            .layer(ApiKeyLayer::new(gate()));
        let response = app.oneshot(get_with("/me", None)).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="api""#
        );
        assert_eq!(
            text(response).await,
            r#"{"success":false,"error":{"code":"MISSING_API_KEY","message":"API key is required","details":{"header":"Authorization"}}}"#
        );
    }

    #[tokio::test]
    async fn route_layer_guards_only_the_routes_before_it() {
        let gate = gate();
        let app = Router::new()
            .route("/private", get(key_id))
            .route_layer(ApiKeyLayer::new(gate))
            .route("/health", get(|| async { "ok" }));
        let private = app
            .clone()
            .oneshot(get_with("/private", None))
            .await
            .expect("infallible");
        assert_eq!(private.status(), StatusCode::UNAUTHORIZED);
        let health = app
            .clone()
            .oneshot(get_with("/health", None))
            .await
            .expect("infallible");
        assert_eq!(health.status(), StatusCode::OK);
        // route_layer runs only on matched routes, so an unknown path stays a 404.
        let unknown = app.oneshot(get_with("/nowhere", None)).await.expect("infallible");
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn service_builder_wraps_a_plain_tower_service() {
        let gate = gate();
        let (_, key) = key(&gate, &["read"]).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let service = ServiceBuilder::new()
            .layer(ApiKeyLayer::new(gate).require(["read"]))
            .service(service_fn(move |req: Request<()>| {
                seen.fetch_add(1, Ordering::SeqCst);
                let owner = req.extensions().get::<Principal>().map(|p| p.owner().to_string());
                async move { Ok::<_, Infallible>(Response::new(Bytes::from(owner.unwrap_or_default()))) }
            }));
        let refused = service
            .clone()
            .oneshot(Request::new(()))
            .await
            .expect("infallible");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "a refused request must not reach the inner service"
        );

        let request = Request::builder()
            .header("x-api-key", &key)
            .body(())
            .expect("a valid request");
        let admitted = service.oneshot(request).await.expect("infallible");
        assert_eq!(admitted.status(), StatusCode::OK);
        assert_eq!(admitted.body(), &Bytes::from("acct_1"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn admitted_responses_carry_the_rate_limit_headers() {
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .rate_limiter(MemoryRateLimiter::new(), [RateLimit::per_minute(100)])
            .build();
        let (_, key) = key(&gate, &[]).await;
        let app = Router::new()
            .route("/me", get(key_id))
            .layer(ApiKeyLayer::new(gate));
        let response = app
            .oneshot(get_with("/me", Some(&key)))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-limit"], "100");
        assert_eq!(response.headers()["x-ratelimit-remaining"], "99");
        let reset: i64 = response.headers()["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset >= Utc::now().timestamp(), "reset is a future Unix time");
    }

    #[tokio::test]
    async fn the_handlers_declared_cost_is_charged_over_the_routes_fixed_cost() {
        let meter = MemorySpendMeter::new();
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .spend_meter(meter.clone())
            .build();
        let created = gate
            .keys()
            .create(NewKey::new("acct_1", "capped").spend_cap(1_000_000))
            .await
            .expect("create a key");
        let key = created.key.expose_secret().to_owned();
        let key_id = created.record.key_id.clone();
        let app = Router::new()
            .route("/declared", get(|| async { (Extension(Cost(250)), "declared") }))
            .route("/fixed", get(|| async { "fixed" }))
            .layer(ApiKeyLayer::new(gate).cost(1000));
        let declared = app
            .clone()
            .oneshot(get_with("/declared", Some(&key)))
            .await
            .expect("infallible");
        assert_eq!(declared.status(), StatusCode::OK);
        let fixed = app
            .oneshot(get_with("/fixed", Some(&key)))
            .await
            .expect("infallible");
        assert_eq!(fixed.status(), StatusCode::OK);
        // 250 declared + 1000 fixed: a declared cost replaces the fixed one.
        assert_eq!(meter.spent_now(&key_id, Month::of(Utc::now())), 1250);
    }

    #[tokio::test]
    async fn a_handler_error_is_not_charged_the_routes_fixed_cost() {
        let meter = MemorySpendMeter::new();
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .spend_meter(meter.clone())
            .build();
        let created = gate
            .keys()
            .create(NewKey::new("acct_1", "capped"))
            .await
            .expect("create a key");
        let key = created.key.expose_secret().to_owned();
        let failing = || async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") };
        let declared = || async { (StatusCode::BAD_GATEWAY, Extension(Cost(7)), "upstream failed") };
        let app = Router::new()
            .route("/fails", get(failing))
            .route("/declares", get(declared))
            .layer(ApiKeyLayer::new(gate).cost(1000));
        for uri in ["/fails", "/fails", "/declares"] {
            let response = app
                .clone()
                .oneshot(get_with(uri, Some(&key)))
                .await
                .expect("infallible");
            assert!(response.status().is_server_error());
        }
        // Neither 5xx pays the fixed cost; a cost the handler declares is its own call.
        assert_eq!(meter.spent_now(&created.record.key_id, Month::of(Utc::now())), 7);
    }

    #[tokio::test]
    async fn optional_mode_lets_a_request_without_a_key_through_without_a_principal() {
        let app = Router::new()
            .route(
                "/maybe",
                get(|principal: Option<Extension<Principal>>| async move {
                    principal.map_or("anonymous".to_owned(), |Extension(p)| p.key_id().to_string())
                }),
            )
            .layer(ApiKeyLayer::new(gate()).optional(true));
        let response = app.oneshot(get_with("/maybe", None)).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, "anonymous");
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn principal_extractor_reads_what_the_layer_inserted() {
        let gate = gate();
        let (_, key) = key(&gate, &[]).await;
        let app = Router::new()
            .route("/me", get(|p: Principal| async move { p.owner().to_string() }))
            .route(
                "/maybe",
                get(|p: Option<Principal>| async move { p.is_some().to_string() }),
            )
            .layer(ApiKeyLayer::new(gate).optional(true));
        let me = app
            .clone()
            .oneshot(get_with("/me", Some(&key)))
            .await
            .expect("infallible");
        assert_eq!(text(me).await, "acct_1");
        let anonymous = app.oneshot(get_with("/maybe", None)).await.expect("infallible");
        assert_eq!(text(anonymous).await, "false");
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn principal_extractor_without_the_layer_is_a_500_that_says_why() {
        let app: Router =
            Router::new().route("/me", get(|p: Principal| async move { p.owner().to_string() }));
        let response = app.oneshot(get_with("/me", None)).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            text(response).await,
            "Principal missing: is ApiKeyLayer (axum) or ApiKeyMiddleware (actix) applied to this route?"
        );
    }
}
