//! [`dashboard_router`]: the pages as an axum [`Router`], to nest where you like (`/app`);
//! [`openapi_route`]: the OpenAPI document as a route.

use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::response::Response;
use axum::routing::{any, MethodRouter};
use axum::Router;
use http::header::{HeaderName, HeaderValue, IF_NONE_MATCH};
use http::StatusCode;
use keygate_self_service::Account;

use crate::{Dashboard, DashboardRequest, Served};

/// The dashboard's pages and assets. Nest it: `Router::new().nest("/app", router)`;
/// a host with its own login inserts its [`Account`] in a layer around it, as around
/// `self_service_router`, and the page needs no key.
///
/// # Example
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use axum::{body::Body, extract::Request, Router};
/// use keygate_dashboard::{dashboard_router, openapi_route, Dashboard};
/// use tower::ServiceExt;
///
/// let app = Router::new()
///     .route("/api/v1/openapi.json", openapi_route(Dashboard::new()))
///     .nest("/app", dashboard_router(Dashboard::new()));
/// let root = app.clone().oneshot(Request::get("/app").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(root.status(), 302);
/// assert_eq!(root.headers()["location"], "app/keys");
/// let doc = app.oneshot(Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(doc.headers()["content-type"], "application/json");
/// # });
/// ```
pub fn dashboard_router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", any(serve))
        .route("/{*rest}", any(serve))
        .with_state(dashboard)
}

/// The dashboard at `path` (`"/app"`), and at `path` with a trailing slash, which
/// `Router::nest` alone leaves unrouted in axum 0.8 (`/app/` would answer 404): merge it,
/// `app.merge(dashboard_at("/app", dashboard))`. A layer around it (a host's [`Account`])
/// covers both.
///
/// # Example
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use axum::{body::Body, extract::Request, Router};
/// use keygate_dashboard::{dashboard_at, Dashboard};
/// use tower::ServiceExt;
///
/// let app = Router::new().merge(dashboard_at("/app", Dashboard::new()));
/// let slash = app.oneshot(Request::get("/app/").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(slash.headers()["location"], "keys");
/// # });
/// ```
///
/// # Panics
/// As `Router::nest` does, when `path` is empty, `/`, or holds a wildcard.
pub fn dashboard_at(path: &str, dashboard: Dashboard) -> Router {
    let path = path.trim_end_matches('/');
    Router::new()
        .route(&format!("{path}/"), any(slash).with_state(dashboard.clone()))
        .nest(path, dashboard_router(dashboard))
}

/// `GET` the OpenAPI 3.1 document of the self-service API:
/// `.route("/api/v1/openapi.json", openapi_route(dashboard))`.
pub fn openapi_route(dashboard: Dashboard) -> MethodRouter {
    any(openapi).with_state(dashboard)
}

async fn serve(State(dashboard): State<Dashboard>, request: Request) -> Response {
    // Nested, axum hands the path below the mount point; the original one is in
    // the extensions (set by the outermost router).
    let full_path = match request.extensions().get::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri.path(),
        None => request.uri().path(),
    };
    answer(&dashboard, &request, request.uri().path(), full_path)
}

/// `path/`, routed beside the nested router: the mount point itself.
async fn slash(State(dashboard): State<Dashboard>, request: Request) -> Response {
    answer(&dashboard, &request, "/", request.uri().path())
}

/// The page or asset at `path` below the mount point (`full_path` as asked).
fn answer(dashboard: &Dashboard, request: &Request, path: &str, full_path: &str) -> Response {
    response(dashboard.respond(&DashboardRequest {
        method: request.method().as_str(),
        path,
        full_path,
        if_none_match: request.headers().get(IF_NONE_MATCH).map(HeaderValue::as_bytes),
        account: request.extensions().get::<Account>(),
    }))
}

async fn openapi(State(dashboard): State<Dashboard>, request: Request) -> Response {
    response(dashboard.openapi(request.method().as_str()))
}

/// The core's answer as an axum response. Its header names and values are static,
/// valid text; one that did not convert would be skipped rather than panic.
fn response(served: Served) -> Response {
    let (status, headers, body) = served.into_parts();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let map = response.headers_mut();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            map.append(HeaderName::from_static(name), value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .merge(dashboard_at("/app", Dashboard::new()))
            .route("/api/v1/openapi.json", openapi_route(Dashboard::new()))
    }

    async fn get(app: Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
        let response = app.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn at(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn the_mount_point_with_or_without_its_slash_leads_to_the_keys_page() {
        for (path, location) in [("/app", "app/keys"), ("/app/", "keys")] {
            let (status, headers, _) = get(app(), at(path)).await;
            assert_eq!(status, StatusCode::FOUND, "{path}");
            assert_eq!(headers["location"], location, "{path}");
        }
    }

    #[tokio::test]
    async fn pages_and_assets_are_served_with_their_content_types_and_the_policy() {
        for (path, content_type, needle) in [
            ("/app/keys", "text/html; charset=utf-8", "Create API key"),
            ("/app/usage", "text/html; charset=utf-8", "Usage"),
            (
                "/app/assets/dashboard.css",
                "text/css; charset=utf-8",
                "box-sizing",
            ),
            (
                "/app/assets/dashboard.js",
                "text/javascript; charset=utf-8",
                "sessionStorage",
            ),
            ("/app/assets/icon.svg", "image/svg+xml", "<svg"),
        ] {
            let (status, headers, body) = get(app(), at(path)).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers["content-type"], content_type, "{path}");
            assert_eq!(
                headers["content-security-policy"],
                crate::CONTENT_SECURITY_POLICY,
                "{path}"
            );
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["cache-control"], "no-cache", "{path}");
            assert!(headers.contains_key("etag"), "{path}");
            assert!(body.contains(needle), "{path}");
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_404_with_the_policy_and_other_methods_405() {
        for path in [
            "/app/assets/nope.js",
            "/app/keys/",
            "/app/../secret",
            "/app/assets/",
        ] {
            let (status, headers, _) = get(app(), at(path)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
            assert_eq!(headers["content-security-policy"], crate::CONTENT_SECURITY_POLICY);
            assert_eq!(headers["x-content-type-options"], "nosniff");
        }
        let post = Request::post("/app/keys").body(Body::empty()).unwrap();
        let (status, headers, _) = get(app(), post).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "GET, HEAD");
    }

    #[tokio::test]
    async fn an_unchanged_asset_is_answered_304() {
        let (_, headers, _) = get(app(), at("/app/assets/dashboard.js")).await;
        let etag = headers["etag"].clone();
        let again = Request::get("/app/assets/dashboard.js")
            .header("if-none-match", etag)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = get(app(), again).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn the_session_names_the_hosts_account_when_there_is_one() {
        let (status, headers, body) = get(app(), at("/app/session")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(body, r#"{"account":false,"api_base":"/api/v1","owner":null}"#);

        let signed_in = app().layer(axum::Extension(Account::new("acct_1")));
        let (_, _, body) = get(signed_in, at("/app/session")).await;
        assert_eq!(body, r#"{"account":true,"api_base":"/api/v1","owner":"acct_1"}"#);
    }

    #[tokio::test]
    async fn the_openapi_document_names_the_api_base_as_its_server() {
        let (status, headers, body) = get(app(), at("/api/v1/openapi.json")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "/api/v1");
    }
}
