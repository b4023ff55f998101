//! Every mode of the load app measures what it claims: the key it was built with is
//! admitted, a request without it (or with another) is refused by the modes that
//! authenticate, and the modes that add rate-limit headers add them. A mode that
//! refused everything, or admitted everything, would make the load figures meaningless.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use tower::{Service, ServiceExt};

fn request(authorization: Option<String>) -> Request<Body> {
    let mut builder = Request::get("/v1/ping");
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    builder.body(Body::empty()).expect("a request")
}

#[tokio::test]
async fn each_mode_admits_its_key_and_refuses_or_passes_as_it_should() {
    for mode in keygate_bench::MODES
        .into_iter()
        .chain(keygate_bench::AROUND_MODES)
    {
        let gate = keygate_bench::gate_builder(mode).build();
        let (created, principal) = keygate_bench::create_key(&gate).await.expect("a key");
        let key = created.key.expose_secret();
        if keygate_bench::AROUND_MODES.contains(&mode) {
            let app = keygate_bench::around_app(mode, &gate).expect("an around mode");
            check_mode(mode, app, key).await;
        } else {
            let app = keygate_bench::app(mode, &gate, key, &principal)
                .expect("a known mode")
                .with_state::<()>(());
            check_mode(mode, app, key).await;
        }
    }
}

async fn check_mode<S>(mode: &str, app: S, key: &str)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    let admitted = app
        .clone()
        .oneshot(request(Some(format!("Bearer {key}"))))
        .await
        .unwrap();
    assert_eq!(admitted.status(), StatusCode::OK, "{mode}: its key");
    let limited = admitted.headers().contains_key("x-ratelimit-limit");
    assert_eq!(
        limited,
        matches!(mode, "policy" | "policy-around" | "headers" | "floor-headers"),
        "{mode}: rate-limit headers"
    );

    let authenticates = !matches!(mode, "bare" | "headers");
    let refused = if authenticates {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let without = app.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(without.status(), refused, "{mode}: no key");
    let other = app
        .oneshot(request(Some(format!("Bearer {key}x"))))
        .await
        .unwrap();
    assert_eq!(other.status(), refused, "{mode}: another key");
}

#[tokio::test]
async fn an_unknown_mode_is_an_error_that_lists_the_modes() {
    let gate = keygate_bench::gate_builder("bare").build();
    let (created, principal) = keygate_bench::create_key(&gate).await.expect("a key");
    let error = keygate_bench::app("fast", &gate, created.key.expose_secret(), &principal).unwrap_err();
    assert!(error.contains("`fast`") && error.contains("floor"), "{error}");
}

/// Status and whether `X-RateLimit-Limit` came back, for one request to an actix app
/// (a macro: the request type of actix's test services is not nameable here).
macro_rules! actix_answer {
    ($app:expr, $authorization:expr) => {{
        let mut request = actix_web::test::TestRequest::get().uri("/v1/ping");
        if let Some(value) = $authorization {
            request = request.insert_header(("authorization", value));
        }
        let response = actix_web::test::call_service($app, request.to_request()).await;
        (
            response.status().as_u16(),
            response.headers().contains_key("x-ratelimit-limit"),
        )
    }};
}

/// The actix modes, checked as the axum ones above.
macro_rules! check_actix_mode {
    ($mode:expr, $app:expr, $key:expr) => {{
        let (mode, app, key): (&str, _, &str) = ($mode, $app, $key);
        let (status, limited) = actix_answer!(app, Some(format!("Bearer {key}")));
        assert_eq!(status, 200, "{mode}: its key");
        assert_eq!(limited, mode == "actix-policy", "{mode}: rate-limit headers");
        let refused = if mode == "actix-bare" { 200 } else { 401 };
        assert_eq!(actix_answer!(app, None::<String>).0, refused, "{mode}: no key");
        let other = actix_answer!(app, Some(format!("Bearer {key}x"))).0;
        assert_eq!(other, refused, "{mode}: another key");
    }};
}

#[actix_web::test]
async fn each_actix_mode_admits_its_key_and_refuses_or_passes_as_it_should() {
    for mode in keygate_bench::ACTIX_MODES {
        let gate = keygate_bench::gate_builder(mode.trim_start_matches("actix-")).build();
        let (created, _) = keygate_bench::create_key(&gate).await.expect("a key");
        let key = created.key.expose_secret();
        if mode == "actix-bare" {
            let app = actix_web::test::init_service(keygate_bench::actix_bare()).await;
            check_actix_mode!(mode, &app, key);
        } else {
            let middleware = keygate_bench::actix_middleware(mode, &gate).expect("a known mode");
            let app = actix_web::test::init_service(keygate_bench::actix_guarded(middleware)).await;
            check_actix_mode!(mode, &app, key);
        }
    }
    assert!(
        keygate_bench::actix_middleware("actix-bare", &keygate_bench::gate_builder("auth").build()).is_err()
    );
}
