//! [`dashboard_scope`]: the pages as an actix-web [`Scope`], to mount with `App::service`;
//! [`openapi_resource`]: the OpenAPI document as a resource.

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, IF_NONE_MATCH};
use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, Resource, Scope};
use keygate_self_service::Account;

use crate::{Dashboard, DashboardRequest, Served};

/// The dashboard's pages and assets, mounted at `path` (`"/app"`). A host with its own
/// login inserts its [`Account`] with `req.extensions_mut()` in a middleware around it,
/// as around `self_service_scope`, and the page needs no key.
///
/// # Example
/// ```
/// use actix_web::{test, App};
/// use keygate_dashboard::{dashboard_scope, openapi_resource, Dashboard};
///
/// # actix_web::rt::System::new().block_on(async {
/// let app = App::new()
///     .service(openapi_resource("/api/v1/openapi.json", Dashboard::new()))
///     .service(dashboard_scope("/app", Dashboard::new()));
/// let app = test::init_service(app).await;
/// let page = test::call_service(&app, test::TestRequest::get().uri("/app/usage").to_request()).await;
/// assert_eq!(page.status().as_u16(), 200);
/// let doc = test::call_service(&app, test::TestRequest::get().uri("/api/v1/openapi.json").to_request()).await;
/// assert_eq!(doc.status().as_u16(), 200);
/// # });
/// ```
pub fn dashboard_scope(
    path: &str,
    dashboard: Dashboard,
) -> Scope<
    impl ServiceFactory<ServiceRequest, Config = (), Response = ServiceResponse, Error = Error, InitError = ()>,
> {
    web::scope(path)
        .app_data(Data::new(dashboard))
        .service(web::resource("").to(serve))
        .service(web::resource("/{rest:.*}").to(serve))
}

/// `GET` the OpenAPI 3.1 document of the self-service API at `path`:
/// `.service(openapi_resource("/api/v1/openapi.json", dashboard))`.
pub fn openapi_resource(path: &str, dashboard: Dashboard) -> Resource {
    web::resource(path).app_data(Data::new(dashboard)).to(openapi)
}

async fn serve(dashboard: Data<Dashboard>, req: HttpRequest) -> HttpResponse {
    // `rest` is the path below the mount point, without its leading `/`.
    let rest = req.match_info().get("rest").map(|rest| format!("/{rest}"));
    let extensions = req.extensions();
    let served = dashboard.respond(&DashboardRequest {
        method: req.method().as_str(),
        path: rest.as_deref().unwrap_or(""),
        full_path: req.path(),
        if_none_match: req.headers().get(IF_NONE_MATCH).map(HeaderValue::as_bytes),
        account: extensions.get::<Account>(),
    });
    response(served)
}

async fn openapi(dashboard: Data<Dashboard>, req: HttpRequest) -> HttpResponse {
    response(dashboard.openapi(req.method().as_str()))
}

/// The core's answer as an actix-web response. Its header names and values are static,
/// valid text; one that did not convert would be skipped rather than panic.
fn response(served: Served) -> HttpResponse {
    let (status, headers, body) = served.into_parts();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status).body(body);
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
    use actix_web::dev::Service;
    use actix_web::{test, App};

    use super::*;

    macro_rules! app {
        () => {
            test::init_service(
                App::new()
                    .service(dashboard_scope("/app", Dashboard::new()))
                    .service(openapi_resource("/api/v1/openapi.json", Dashboard::new())),
            )
            .await
        };
    }

    fn header<'a>(response: &'a ServiceResponse, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[actix_web::test]
    async fn the_mount_point_with_or_without_its_slash_leads_to_the_keys_page() {
        let app = app!();
        for (path, location) in [("/app", "app/keys"), ("/app/", "keys")] {
            let response = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::FOUND, "{path}");
            assert_eq!(header(&response, "location"), location, "{path}");
        }
    }

    #[actix_web::test]
    async fn pages_and_assets_are_served_with_their_content_types_and_the_policy() {
        let app = app!();
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
            let response = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&response, "content-type"), content_type, "{path}");
            assert_eq!(
                header(&response, "content-security-policy"),
                crate::CONTENT_SECURITY_POLICY
            );
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");
            assert_eq!(header(&response, "cache-control"), "no-cache");
            let body = test::read_body(response).await;
            assert!(String::from_utf8_lossy(&body).contains(needle), "{path}");
        }
    }

    #[actix_web::test]
    async fn unknown_assets_are_404_with_the_policy_and_other_methods_405() {
        let app = app!();
        for path in ["/app/assets/nope.js", "/app/keys/", "/app/assets/"] {
            let response = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(header(&response, "content-type"), "text/plain; charset=utf-8");
            assert_eq!(
                header(&response, "content-security-policy"),
                crate::CONTENT_SECURITY_POLICY
            );
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        }
        let post = test::TestRequest::post().uri("/app/keys").to_request();
        let response = test::call_service(&app, post).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&response, "allow"), "GET, HEAD");
    }

    #[actix_web::test]
    async fn the_root_redirects_to_keys_relative_to_the_path_asked() {
        let app = app!();
        let response = test::call_service(&app, test::TestRequest::get().uri("/app").to_request()).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(header(&response, "location"), "app/keys");
        let response = test::call_service(&app, test::TestRequest::get().uri("/app/").to_request()).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(header(&response, "location"), "keys");
    }

    #[actix_web::test]
    async fn the_session_names_the_hosts_account_when_there_is_one() {
        let app = app!();
        let response =
            test::call_service(&app, test::TestRequest::get().uri("/app/session").to_request()).await;
        assert_eq!(header(&response, "cache-control"), "no-store");
        let body = test::read_body(response).await;
        assert_eq!(body, r#"{"account":false,"api_base":"/api/v1","owner":null}"#);

        let signed_in = test::init_service(
            App::new()
                .wrap_fn(|req, srv| {
                    req.extensions_mut().insert(Account::new("acct_1"));
                    srv.call(req)
                })
                .service(dashboard_scope("/app", Dashboard::new())),
        )
        .await;
        let response = test::call_service(
            &signed_in,
            test::TestRequest::get().uri("/app/session").to_request(),
        )
        .await;
        let body = test::read_body(response).await;
        assert_eq!(body, r#"{"account":true,"api_base":"/api/v1","owner":"acct_1"}"#);
    }

    #[actix_web::test]
    async fn the_openapi_document_names_the_api_base_as_its_server() {
        let app = app!();
        let request = test::TestRequest::get().uri("/api/v1/openapi.json").to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "application/json");
        let doc: serde_json::Value = serde_json::from_slice(&test::read_body(response).await).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "/api/v1");
    }
}
