//! Every mode of the load app measures what it claims: the key it was built with is
//! admitted, a request without it (or with another) is refused by the modes that
//! authenticate, and the modes that add rate-limit headers add them. A mode that
//! refused everything, or admitted everything, would make the load figures meaningless.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

fn request(authorization: Option<String>) -> Request<Body> {
    let mut builder = Request::get("/v1/ping");
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    builder.body(Body::empty()).expect("a request")
}

#[tokio::test]
async fn each_mode_admits_its_key_and_refuses_or_passes_as_it_should() {
    for mode in keygate_bench::MODES {
        let gate = keygate_bench::gate_builder(mode).build();
        let (created, principal) = keygate_bench::create_key(&gate).await.expect("a key");
        let key = created.key.expose_secret();
        let app = keygate_bench::app(mode, &gate, key, &principal)
            .expect("a known mode")
            .with_state::<()>(());

        let admitted = app
            .clone()
            .oneshot(request(Some(format!("Bearer {key}"))))
            .await
            .unwrap();
        assert_eq!(admitted.status(), StatusCode::OK, "{mode}: its key");
        let limited = admitted.headers().contains_key("x-ratelimit-limit");
        assert_eq!(
            limited,
            matches!(mode, "policy" | "headers" | "floor-headers"),
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
}

#[tokio::test]
async fn an_unknown_mode_is_an_error_that_lists_the_modes() {
    let gate = keygate_bench::gate_builder("bare").build();
    let (created, principal) = keygate_bench::create_key(&gate).await.expect("a key");
    let error = keygate_bench::app("fast", &gate, created.key.expose_secret(), &principal).unwrap_err();
    assert!(error.contains("`fast`") && error.contains("floor"), "{error}");
}
