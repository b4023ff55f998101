//! The OpenAPI document of the self-service API against the API itself: every route of
//! the route table in `crates/keygate-self-service/src/lib.rs` is described, nothing else
//! is, and each answer's fields are exactly the properties its schema lists (the schemas
//! forbid others, so a field added to a record, or a leaked hash, fails here first).
#![cfg(all(feature = "axum", feature = "actix", feature = "dashboard"))]

use std::collections::BTreeSet;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use keygate::hash::Argon2Hasher;
use keygate::{
    account_router, dashboard_scope, openapi_resource, openapi_route, self_service_router,
    self_service_scope, Dashboard, Gate, MemoryStore, NewKey,
};
use serde_json::Value;
use tower::ServiceExt;

const SELF_SERVICE_DOCS: &str = include_str!("../crates/keygate-self-service/src/lib.rs");

fn document() -> Value {
    serde_json::from_slice(Dashboard::new().openapi("GET").body()).expect("the document is JSON")
}

/// `(method, path)` of every operation the document describes, paths below the server.
fn described(doc: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

/// The routes of the crate's route table (`//! | \`POST /\` | ...`), mounted at `/api-keys`.
fn routed() -> BTreeSet<(String, String)> {
    SELF_SERVICE_DOCS
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `"))
        .filter_map(|row| row.split_once('`').map(|(route, _)| route))
        .filter_map(|route| route.split_once(' '))
        .map(|(method, path)| {
            let path = path.split('?').next().unwrap_or_default().trim_end_matches('/');
            // The account routes are mounted beside the key API, at the server's root.
            if path.starts_with("/account") || path.starts_with("/usage") {
                return (method.to_string(), path.to_string());
            }
            (method.to_string(), format!("/api-keys{path}"))
        })
        .collect()
}

#[test]
fn the_document_describes_every_route_of_the_self_service_api_and_no_other() {
    let routes = routed();
    assert_eq!(routes.len(), 7, "the route tables were read: {routes:?}");
    assert_eq!(described(&document()), routes);
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let text = doc.to_string();
    let mut refs = 0;
    for piece in text.split("\"$ref\":\"").skip(1) {
        let target = piece.split('"').next().unwrap_or_default();
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
        refs += 1;
    }
    assert!(refs > 10, "{refs} references");
}

/// The properties a schema of the document lists, `$ref`s followed.
fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
    let schema = &doc["components"]["schemas"][schema];
    assert_eq!(schema["additionalProperties"], false, "{schema}");
    let listed: BTreeSet<String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default();
    assert_eq!(listed, required, "every field is always present");
    listed
}

fn fields(value: &Value) -> BTreeSet<String> {
    value.as_object().expect("an object").keys().cloned().collect()
}

async fn call(app: &Router, method: &str, path: &str, key: &str, body: &str) -> (u16, Value) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("answer");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_exactly_the_fields_of_its_schema() {
    let doc = document();
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let admin = gate
        .keys()
        .create(NewKey::new("acct_1", "console").scopes(["read", "admin"]))
        .await
        .expect("admin key");
    let key = admin.key.expose_secret().to_string();
    let app = Router::new()
        .nest("/api/v1/api-keys", self_service_router(gate.clone()))
        .nest("/api/v1", account_router(gate));
    let base = "/api/v1/api-keys";

    let (status, created) = call(
        &app,
        "POST",
        base,
        &key,
        r#"{"name":"CI Pipeline","scopes":["read"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(fields(&created), properties(&doc, "CreatedKey"));
    let id = created["key_id"].as_str().expect("key_id").to_string();

    let (status, list) = call(&app, "GET", &format!("{base}?limit=10"), &key, "").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(fields(&list), properties(&doc, "KeyList"));
    for record in list["data"].as_array().expect("data") {
        assert_eq!(fields(record), properties(&doc, "ApiKey"));
    }

    let (status, rotated) = call(&app, "POST", &format!("{base}/{id}/rotate"), &key, "").await;
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(fields(&rotated), properties(&doc, "RotatedKey"));
    assert_eq!(fields(&rotated["old"]), properties(&doc, "ApiKey"));

    let new_id = rotated["key_id"].as_str().expect("key_id");
    let (status, revoked) = call(&app, "DELETE", &format!("{base}/{new_id}"), &key, "").await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(fields(&revoked), properties(&doc, "ApiKey"));

    let (status, missing) = call(&app, "DELETE", &format!("{base}/kg_live_nothere0"), &key, "").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(fields(&missing), properties(&doc, "Error"));
    assert_eq!(
        fields(&missing["error"]),
        BTreeSet::from(["code", "details", "message"].map(String::from))
    );

    let (status, account) = call(&app, "GET", "/api/v1/account", &key, "").await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(fields(&account), properties(&doc, "Account"));
    let (status, tightened) = call(&app, "PUT", "/api/v1/account", &key, r#"{"spend_cap":1000}"#).await;
    assert_eq!(status, 200, "{tightened}");
    assert_eq!(fields(&tightened), properties(&doc, "Account"));
    let (status, usage) = call(&app, "GET", "/api/v1/usage?days=7", &key, "").await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(fields(&usage), properties(&doc, "Usage"));
    for key_usage in usage["keys"].as_array().expect("keys") {
        assert_eq!(fields(key_usage), properties(&doc, "KeyUsage"));
    }
}

#[actix_web::test]
async fn the_actix_resource_serves_the_same_document_as_the_axum_route() {
    use actix_web::{test, App};

    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let app = test::init_service(
        App::new()
            .service(self_service_scope("/api/v1/api-keys", gate))
            .service(openapi_resource("/api/v1/openapi.json", Dashboard::new()))
            .service(dashboard_scope("/app", Dashboard::new())),
    )
    .await;
    let request = test::TestRequest::get().uri("/api/v1/openapi.json").to_request();
    let actix = test::call_and_read_body(&app, request).await;

    let axum_app = Router::new().route("/api/v1/openapi.json", openapi_route(Dashboard::new()));
    let request = axum::http::Request::get("/api/v1/openapi.json")
        .body(Body::empty())
        .expect("request");
    let response = axum_app.oneshot(request).await.expect("answer");
    let axum = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(actix, axum);
    assert_eq!(
        serde_json::from_slice::<Value>(&actix).expect("json")["servers"][0]["url"],
        "/api/v1"
    );
}
