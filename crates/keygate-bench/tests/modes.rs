//! Every mode of the load app measures what it claims: the key it was built with is
//! admitted, a request without it (or with another) is refused by the modes that
//! authenticate, and the modes that add rate-limit headers add them. A mode that
//! refused everything, or admitted everything, would make the load figures meaningless.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use keygate_bench::{Framework, Mode};
use tower::{Service, ServiceExt};

fn request(authorization: Option<String>) -> Request<Body> {
    let mut builder = Request::get("/v1/ping");
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    builder.body(Body::empty()).expect("a request")
}

/// What a mode should answer: whether it refuses a request without its key, and whether
/// it adds `X-RateLimit-Limit`. Stated here, not asked of the crate, and exhaustive, so
/// that a new mode has to say what it does.
fn expected(mode: Mode) -> (bool, bool) {
    match mode {
        Mode::Bare | Mode::ActixBare => (false, false),
        Mode::Headers => (false, true),
        Mode::Auth | Mode::AuthAround | Mode::TowerHttp | Mode::Floor | Mode::ActixAuth => (true, false),
        Mode::Policy
        | Mode::PolicyAround
        | Mode::Governor
        | Mode::FloorHeaders
        | Mode::ActixPolicy
        | Mode::RedisPolicy
        | Mode::ActixRedisPolicy => (true, true),
    }
}

#[tokio::test]
async fn each_mode_admits_its_key_and_refuses_or_passes_as_it_should() {
    for mode in Mode::ALL.into_iter().filter(|mode| mode.is_available()) {
        let framework = mode.framework();
        if framework == Framework::Actix {
            continue; // below, on actix's runtime
        }
        let gate = keygate_bench::gate_builder(mode).expect("a gate").build();
        let (created, principal) = keygate_bench::create_key(&gate).await.expect("a key");
        let key = created.key.expose_secret();
        if framework == Framework::AxumAround {
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

async fn check_mode<S>(mode: Mode, app: S, key: &str)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    let (authenticates, limited) = expected(mode);
    let admitted = app
        .clone()
        .oneshot(request(Some(format!("Bearer {key}"))))
        .await
        .unwrap();
    assert_eq!(admitted.status(), StatusCode::OK, "{mode}: its key");
    assert_eq!(
        admitted.headers().contains_key("x-ratelimit-limit"),
        limited,
        "{mode}: rate-limit headers"
    );
    if limited {
        assert!(
            admitted.headers().contains_key("x-ratelimit-remaining"),
            "{mode}: remaining"
        );
    }

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

#[test]
fn an_unknown_mode_is_an_error_that_lists_the_modes() {
    let error = "fast".parse::<Mode>().unwrap_err().to_string();
    assert!(error.contains("`fast`"), "{error}");
    for mode in Mode::ALL {
        assert!(error.contains(mode.name()), "{error} lacks {mode}");
    }
}

#[tokio::test]
async fn a_builder_refuses_a_mode_of_another_framework() {
    let gate = keygate_bench::gate_builder(Mode::Auth).expect("a gate").build();
    let (created, principal) = keygate_bench::create_key(&gate).await.expect("a key");
    let key = created.key.expose_secret();
    for mode in Mode::ALL {
        let framework = mode.framework();
        assert_eq!(
            keygate_bench::app(mode, &gate, key, &principal).is_ok(),
            framework == Framework::AxumRouteLayer && mode.is_available(),
            "{mode}: app"
        );
        assert_eq!(
            keygate_bench::around_app(mode, &gate).is_ok(),
            framework == Framework::AxumAround,
            "{mode}: around_app"
        );
        assert_eq!(
            keygate_bench::actix_middleware(mode, &gate).is_ok(),
            framework == Framework::Actix,
            "{mode}: actix_middleware"
        );
    }
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
        let (mode, app, key): (Mode, _, &str) = ($mode, $app, $key);
        let (authenticates, limited) = expected(mode);
        let (status, has_limit) = actix_answer!(app, Some(format!("Bearer {key}")));
        assert_eq!(status, 200, "{mode}: its key");
        assert_eq!(has_limit, limited, "{mode}: rate-limit headers");
        let refused = if authenticates { 401 } else { 200 };
        assert_eq!(actix_answer!(app, None::<String>).0, refused, "{mode}: no key");
        let other = actix_answer!(app, Some(format!("Bearer {key}x"))).0;
        assert_eq!(other, refused, "{mode}: another key");
    }};
}

#[actix_web::test]
async fn each_actix_mode_admits_its_key_and_refuses_or_passes_as_it_should() {
    for mode in Mode::ALL {
        if mode.framework() != Framework::Actix || !mode.is_available() {
            continue;
        }
        let gate = keygate_bench::gate_builder(mode).expect("a gate").build();
        let (created, _) = keygate_bench::create_key(&gate).await.expect("a key");
        let key = created.key.expose_secret();
        match keygate_bench::actix_middleware(mode, &gate).expect("an actix mode") {
            None => {
                let app = actix_web::test::init_service(keygate_bench::actix_bare()).await;
                check_actix_mode!(mode, &app, key);
            }
            Some(middleware) => {
                let app = actix_web::test::init_service(keygate_bench::actix_guarded(middleware)).await;
                check_actix_mode!(mode, &app, key);
            }
        }
    }
}
