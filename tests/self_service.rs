//! The self-service key API end to end, through axum (`self_service_router`) and
//! actix-web (`self_service_scope`): every scenario runs against both, with a fresh gate
//! each, and asserts the same statuses and bodies. Callers are API keys, or accounts
//! that a stand-in for the host's session layer puts into the request's extensions.
//!
//! Run with `cargo test --all-features --test self_service`.

#![cfg(all(feature = "axum", feature = "actix"))]

use actix_web::test as actix_test;
use axum::body::Body;
use http_body_util::BodyExt;
use keygate::hash::Argon2Hasher;
use keygate::reject::ErrorFormatKind;
use keygate::{
    self_service_router, self_service_scope, Account, ApiKeyLayer, ApiKeyMiddleware, Gate, MemoryStore,
    NewKey, Principal, RateLimit,
};
use serde_json::{json, Value};
use tower::ServiceExt;

const PATH: &str = "/api/v1/api-keys";

#[derive(Clone, Copy, Debug)]
enum Stack {
    Axum,
    Actix,
}

const STACKS: [Stack; 2] = [Stack::Axum, Stack::Actix];

/// What came back: status, content type and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn whoami(principal: Principal) -> String {
    principal.key_id().to_string()
}

/// The stand-in for the host's own login: the session it would read from a cookie, the
/// test sends in this header.
const SESSION: &str = "x-test-session";

/// The host's session layer on axum: a signed-in user's account goes into the extensions.
async fn axum_session(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let account = request
        .headers()
        .get(SESSION)
        .and_then(|v| v.to_str().ok())
        .map(Account::new);
    if let Some(account) = account {
        request.extensions_mut().insert(account);
    }
    next.run(request).await
}

/// Who sends a request: an API key (`Authorization: Bearer`), a signed-in account
/// (the host's session), both, or neither.
#[derive(Clone, Copy, Default)]
struct As<'a> {
    key: Option<&'a str>,
    account: Option<&'a str>,
}

/// Sends one request to an app that mounts the API at [`PATH`] and a protected
/// `GET /v1/whoami`, both over `gate`, behind the host's session layer.
async fn call(stack: Stack, gate: &Gate, method: &str, uri: &str, caller: As<'_>, body: &str) -> Reply {
    match stack {
        Stack::Axum => {
            let app = axum::Router::new()
                .nest(PATH, self_service_router(gate.clone()))
                .route(
                    "/v1/whoami",
                    axum::routing::get(whoami).layer(ApiKeyLayer::new(gate.clone())),
                )
                .layer(axum::middleware::from_fn(axum_session));
            let mut request = axum::http::Request::builder().method(method).uri(uri);
            if let Some(key) = caller.key {
                request = request.header("authorization", format!("Bearer {key}"));
            }
            if let Some(account) = caller.account {
                request = request.header(SESSION, account);
            }
            let request = request.body(Body::from(body.to_owned())).expect("request");
            let response = app.oneshot(request).await.expect("infallible");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let bytes = response.into_body().collect().await.expect("body").to_bytes();
            Reply {
                status,
                content_type,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }
        }
        Stack::Actix => {
            use actix_web::dev::Service;
            use actix_web::{web, App, HttpMessage};
            let app = actix_test::init_service(
                App::new()
                    // The host's session layer on actix-web.
                    .wrap_fn(|req, srv| {
                        let account = req
                            .headers()
                            .get(SESSION)
                            .and_then(|v| v.to_str().ok())
                            .map(Account::new);
                        if let Some(account) = account {
                            req.extensions_mut().insert(account);
                        }
                        srv.call(req)
                    })
                    .service(self_service_scope(PATH, gate.clone()))
                    .service(
                        web::scope("/v1")
                            .wrap(ApiKeyMiddleware::new(gate.clone()))
                            .route("/whoami", web::get().to(whoami)),
                    ),
            )
            .await;
            let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = actix_test::TestRequest::default().method(method).uri(uri);
            if let Some(key) = caller.key {
                request = request.insert_header(("authorization", format!("Bearer {key}")));
            }
            if let Some(account) = caller.account {
                request = request.insert_header((SESSION, account));
            }
            let request = request.set_payload(body.to_owned()).to_request();
            let response = actix_test::call_service(&app, request).await;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let bytes = actix_test::read_body(response).await;
            Reply {
                status,
                content_type,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }
        }
    }
}

/// A gate with four callers: `a` (owner `acct_a`, `read`+`write`: no manage scope), `b`
/// (owner `acct_b`, the same), `admin` (owner `acct_a`, `admin`) and `b_admin` (owner
/// `acct_b`, `admin`).
struct Fixture {
    stack: Stack,
    gate: Gate,
    a: String,
    b: String,
    admin: String,
    b_admin: String,
}

impl Fixture {
    async fn new(stack: Stack, format: ErrorFormatKind) -> Self {
        Self::with(stack, Gate::builder(MemoryStore::new()).error_format(format)).await
    }

    /// A fixture over a gate built by `builder` (the fast hasher is added here).
    async fn with(stack: Stack, builder: keygate::GateBuilder) -> Self {
        let gate = builder.hasher(Argon2Hasher::insecure_fast()).build();
        let key = |owner: &'static str, scopes: &'static [&'static str]| {
            let gate = gate.clone();
            async move {
                let created = gate
                    .keys()
                    .create(NewKey::new(owner, "fixture").scopes(scopes.iter().copied()))
                    .await
                    .expect("fixture key");
                created.key.expose_secret().to_owned()
            }
        };
        let a = key("acct_a", &["read", "write"]).await;
        let b = key("acct_b", &["read", "write"]).await;
        let admin = key("acct_a", &["admin"]).await;
        let b_admin = key("acct_b", &["admin"]).await;
        Self {
            stack,
            gate,
            a,
            b,
            admin,
            b_admin,
        }
    }

    /// A key made directly through the gate; returns its plaintext.
    async fn key(&self, new: NewKey) -> String {
        let created = self.gate.keys().create(new).await.expect("a key");
        created.key.expose_secret().to_owned()
    }

    async fn send(&self, method: &str, uri: &str, key: &str, body: &str) -> Reply {
        let caller = As {
            key: Some(key),
            account: None,
        };
        call(self.stack, &self.gate, method, uri, caller, body).await
    }

    /// Sends as the signed-in account of `owner`, with no API key.
    async fn as_account(&self, owner: &str, method: &str, uri: &str, body: &str) -> Reply {
        let caller = As {
            key: None,
            account: Some(owner),
        };
        call(self.stack, &self.gate, method, uri, caller, body).await
    }

    /// Creates a key as `caller` and returns (key id, plaintext).
    async fn create(&self, caller: &str, body: &str) -> (String, String) {
        let reply = self.send("POST", PATH, caller, body).await;
        assert_eq!(reply.status, 201, "{:?}: {}", self.stack, reply.body);
        let json = reply.json();
        let id = json["key_id"].as_str().expect("key_id").to_owned();
        let key = json["key"].as_str().expect("key").to_owned();
        (id, key)
    }

    async fn whoami(&self, key: &str) -> u16 {
        self.send("GET", "/v1/whoami", key, "").await.status
    }
}

const NOT_FOUND: &str =
    r#"{"success":false,"error":{"code":"NOT_FOUND","message":"API key not found","details":{}}}"#;
const NEEDS_ADMIN: &str = r#"{"success":false,"error":{"code":"INSUFFICIENT_PERMISSIONS","message":"The API key lacks the scopes this route requires","details":{"required":["admin"]}}}"#;

#[actix_web::test]
async fn a_created_key_is_returned_once_and_works_on_a_protected_route() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let body = r#"{"name":"deploy","scopes":["read"],"expires_in":"90d","environment":"test",
            "rate_limits":"100/min,1000/h","spend_cap":5000000,"metadata":{"team":"ci"}}"#;
        // Another environment, own limits and a cap: the account's to give.
        let reply = f.as_account("acct_a", "POST", PATH, body).await;
        assert_eq!(reply.status, 201, "{stack:?}: {}", reply.body);
        assert_eq!(reply.content_type, "application/json");
        let json = reply.json();
        let key = json["key"].as_str().expect("key").to_owned();
        let id = json["key_id"].as_str().expect("key_id").to_owned();
        assert!(key.starts_with("kg_test_"), "{stack:?}");
        assert_eq!(json["owner"], "acct_a");
        assert_eq!(json["name"], "deploy");
        assert_eq!(json["scopes"], json!(["read"]));
        assert_eq!(json["environment"], "test");
        assert_eq!(json["status"], "active");
        assert_eq!(json["spend_cap"], 5_000_000);
        assert_eq!(json["metadata"], json!({"team": "ci"}));
        assert_eq!(json["request_count"], 0);
        assert!(json["expires_at"].is_string() && json["revoked_at"].is_null());
        assert!(json.get("secret_hash").is_none() && !reply.body.contains("$argon2"));

        let whoami = f.send("GET", "/v1/whoami", &key, "").await;
        assert_eq!(
            (whoami.status, whoami.body.as_str()),
            (200, id.as_str()),
            "{stack:?}"
        );

        // Shown once: the listing has the key's id but never its plaintext again.
        let list = f.send("GET", PATH, &f.admin, "").await;
        assert!(list.body.contains(&id) && !list.body.contains(&key), "{stack:?}");
    }
}

#[actix_web::test]
async fn the_listing_shows_only_the_callers_owner_keys_and_never_a_secret_or_hash() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let (a_id, a_key) = f.create(&f.admin, r#"{"name":"a-key","scopes":["read"]}"#).await;
        let (b_id, b_key) = f.create(&f.b_admin, r#"{"name":"b-key"}"#).await;

        let list = f.send("GET", PATH, &f.admin, "").await;
        assert_eq!(list.status, 200, "{stack:?}: {}", list.body);
        let data = list.json()["data"].as_array().cloned().unwrap_or_default();
        // acct_a: the fixture `a`, the fixture `admin`, and `a-key`.
        assert_eq!(data.len(), 3, "{stack:?}: {}", list.body);
        assert!(data
            .iter()
            .all(|k| k["owner"] == "acct_a" && k["status"] == "active"));
        assert!(
            list.body.contains(&a_id) && !list.body.contains(&b_id),
            "{stack:?}"
        );
        for secret in [&a_key, &b_key, &f.a, &f.b, &f.admin, &f.b_admin] {
            assert!(
                !list.body.contains(secret.as_str()),
                "{stack:?}: a plaintext key was listed"
            );
        }
        assert!(!list.body.contains("$argon2") && !list.body.contains("secret_hash"));

        let b_list = f.send("GET", PATH, &f.b_admin, "").await;
        let b_data = b_list.json()["data"].as_array().cloned().unwrap_or_default();
        // acct_b: the fixtures `b` and `b_admin`, and `b-key`.
        assert_eq!(b_data.len(), 3, "{stack:?}: {}", b_list.body);
        assert!(!b_list.body.contains(&a_id) && b_list.body.contains(&b_id));

        let first = f
            .send("GET", &format!("{PATH}?limit=1"), &f.admin, "")
            .await
            .json();
        let second = f
            .send("GET", &format!("{PATH}?offset=1&limit=1"), &f.admin, "")
            .await
            .json();
        assert_eq!(first["data"].as_array().map(Vec::len), Some(1), "{stack:?}");
        assert_eq!(second["data"].as_array().map(Vec::len), Some(1), "{stack:?}");
        assert_ne!(first["data"][0]["key_id"], second["data"][0]["key_id"]);

        let bad = f.send("GET", &format!("{PATH}?limit=ten"), &f.admin, "").await;
        assert_eq!(bad.status, 400, "{stack:?}");
        assert_eq!(bad.json()["error"]["code"], "INVALID_REQUEST");
    }
}

#[actix_web::test]
async fn another_owner_can_neither_see_revoke_nor_rotate_a_key() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let (id, key) = f
            .create(&f.admin, r#"{"name":"precious","scopes":["read"]}"#)
            .await;
        assert_eq!(f.whoami(&key).await, 200);

        let revoke = f.send("DELETE", &format!("{PATH}/{id}"), &f.b_admin, "").await;
        assert_eq!(
            (revoke.status, revoke.body.as_str()),
            (404, NOT_FOUND),
            "{stack:?}"
        );
        assert_eq!(revoke.content_type, "application/json");
        let rotate = f
            .send("POST", &format!("{PATH}/{id}/rotate"), &f.b_admin, "")
            .await;
        assert_eq!(
            (rotate.status, rotate.body.as_str()),
            (404, NOT_FOUND),
            "{stack:?}"
        );
        // Another owner's key answers exactly like one that does not exist.
        let unknown = f
            .send("DELETE", &format!("{PATH}/kg_live_nosuchky"), &f.b_admin, "")
            .await;
        assert_eq!(
            (unknown.status, unknown.body.as_str()),
            (404, NOT_FOUND),
            "{stack:?}"
        );
        let listed = f.send("GET", PATH, &f.b_admin, "").await;
        assert!(!listed.body.contains(&id), "{stack:?}");

        assert_eq!(
            f.whoami(&key).await,
            200,
            "{stack:?}: B's attempts must not touch A's key"
        );
        let mine = f.send("GET", PATH, &f.admin, "").await.json();
        let record = mine["data"]
            .as_array()
            .and_then(|d| d.iter().find(|k| k["key_id"] == id.as_str()).cloned());
        assert_eq!(
            record.map(|r| r["status"].clone()),
            Some(json!("active")),
            "{stack:?}"
        );
    }
}

#[actix_web::test]
async fn a_revoked_key_is_refused_on_the_next_request() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let (id, key) = f.create(&f.admin, r#"{"name":"short-lived"}"#).await;
        // Cached as verified before the revocation.
        assert_eq!(f.whoami(&key).await, 200, "{stack:?}");

        let revoked = f.send("DELETE", &format!("{PATH}/{id}"), &f.admin, "").await;
        assert_eq!(revoked.status, 200, "{stack:?}: {}", revoked.body);
        let json = revoked.json();
        assert_eq!(
            (json["key_id"].as_str(), json["status"].as_str()),
            (Some(id.as_str()), Some("revoked"))
        );
        assert!(json["revoked_at"].is_string());

        let refused = f.send("GET", "/v1/whoami", &key, "").await;
        assert_eq!(refused.status, 401, "{stack:?}");
        assert_eq!(refused.json()["error"]["code"], "INVALID_API_KEY");
        assert_eq!(
            f.whoami(&f.admin).await,
            200,
            "{stack:?}: the caller's own key still works"
        );
    }
}

#[actix_web::test]
async fn rotation_returns_a_new_working_key_and_ends_the_old_one_after_its_grace() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let (id, key) = f
            .create(&f.admin, r#"{"name":"rotating","scopes":["read"]}"#)
            .await;
        assert_eq!(f.whoami(&key).await, 200);

        let rotated = f
            .send(
                "POST",
                &format!("{PATH}/{id}/rotate"),
                &f.admin,
                r#"{"grace":"24h"}"#,
            )
            .await;
        assert_eq!(rotated.status, 201, "{stack:?}: {}", rotated.body);
        let json = rotated.json();
        let new_key = json["key"].as_str().expect("key").to_owned();
        let new_id = json["key_id"].as_str().expect("key_id").to_owned();
        assert_ne!(new_key, key);
        assert_eq!(
            (json["name"].as_str(), json["scopes"].clone()),
            (Some("rotating"), json!(["read"]))
        );
        assert_eq!(json["old"]["key_id"], id.as_str());
        assert!(json["old"]["expires_at"].is_string() && json["old"].get("key").is_none());
        assert!(!rotated.body.contains("$argon2"));
        assert_eq!(f.whoami(&new_key).await, 200, "{stack:?}: the new key works");
        assert_eq!(
            f.whoami(&key).await,
            200,
            "{stack:?}: the old key works during its grace"
        );

        // Without a grace period the replaced key ends at once.
        let again = f
            .send("POST", &format!("{PATH}/{new_id}/rotate"), &f.admin, "")
            .await;
        assert_eq!(again.status, 201, "{stack:?}: {}", again.body);
        let newest = again.json()["key"].as_str().expect("key").to_owned();
        assert_eq!(f.whoami(&newest).await, 200, "{stack:?}");
        let ended = f.send("GET", "/v1/whoami", &new_key, "").await;
        assert_eq!(ended.status, 401, "{stack:?}");
        assert_eq!(ended.json()["error"]["code"], "EXPIRED_API_KEY");
    }
}

#[actix_web::test]
async fn malformed_bodies_get_a_400_in_the_default_format() {
    let cases = [
        ("POST", "", "{"),
        ("POST", "", ""),
        ("POST", "", r#"{"scopes":["read"]}"#),
        ("POST", "", r#"{"name":"   "}"#),
        ("POST", "", r#"{"name":"x","environment":"staging"}"#),
        ("POST", "", r#"{"name":"x","rate_limits":"lots"}"#),
        ("POST", "", r#"{"name":"x","expires_in":"soon"}"#),
        ("POST", "", r#"{"name":"x","scopes":["re ad"]}"#),
        ("POST", "", r#"{"name":"x","scopes":"read"}"#),
        ("POST", "", r#"{"name":"x","metadata":[1]}"#),
        // A body cannot choose the owner.
        ("POST", "", r#"{"name":"x","owner":"acct_b"}"#),
        ("POST", "/rotate", r#"{"grace":"later"}"#),
        ("POST", "/rotate", "[]"),
    ];
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let (id, _) = f.create(&f.admin, r#"{"name":"target"}"#).await;
        for (method, suffix, body) in cases {
            let uri = if suffix.is_empty() {
                PATH.to_owned()
            } else {
                format!("{PATH}/{id}{suffix}")
            };
            let reply = f.send(method, &uri, &f.admin, body).await;
            assert_eq!(reply.status, 400, "{stack:?} {body}: {}", reply.body);
            assert_eq!(reply.content_type, "application/json", "{stack:?} {body}");
            let json = reply.json();
            assert_eq!(json["success"], false, "{stack:?} {body}");
            assert_eq!(json["error"]["code"], "INVALID_REQUEST", "{stack:?} {body}");
            assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(json["error"]["details"], json!({}), "{stack:?} {body}");
        }
        let reply = f
            .send("POST", PATH, &f.admin, r#"{"name":"x","environment":"staging"}"#)
            .await;
        assert_eq!(
            reply.body,
            r#"{"success":false,"error":{"code":"INVALID_REQUEST","message":"invalid environment `staging`: expected `live` or `test`","details":{}}}"#
        );
        let b_keys = f.send("GET", PATH, &f.b_admin, "").await.json();
        assert_eq!(
            b_keys["data"].as_array().map(Vec::len),
            Some(2),
            "{stack:?}: no key was made for B"
        );
    }
}

#[actix_web::test]
async fn a_key_cannot_grant_scopes_its_creator_lacks_unless_the_creator_is_admin() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let refused = f
            .send("POST", PATH, &f.a, r#"{"name":"root","scopes":["read","admin"]}"#)
            .await;
        assert_eq!(refused.status, 403, "{stack:?}: {}", refused.body);
        assert_eq!(refused.content_type, "application/json");
        let json = refused.json();
        assert_eq!(json["error"]["code"], "INSUFFICIENT_PERMISSIONS");
        assert_eq!(json["error"]["details"]["required"], json!(["admin"]));
        let listed = f.send("GET", PATH, &f.admin, "").await;
        assert!(!listed.body.contains("\"root\""), "{stack:?}: no key was created");

        f.create(&f.admin, r#"{"name":"narrower","scopes":["read","write"]}"#)
            .await;
        f.create(&f.admin, r#"{"name":"billing","scopes":["billing","admin"]}"#)
            .await;

        // Rotating hands out a new plaintext, so it is bounded the same way.
        let (admin_id, _) = f.create(&f.admin, r#"{"name":"ops","scopes":["admin"]}"#).await;
        let rotate = f
            .send("POST", &format!("{PATH}/{admin_id}/rotate"), &f.a, "")
            .await;
        assert_eq!(rotate.status, 403, "{stack:?}: {}", rotate.body);
    }
}

#[actix_web::test]
async fn the_api_refuses_callers_without_a_key_and_answers_in_the_configured_format() {
    for stack in STACKS {
        let anonymous = call(
            stack,
            &Fixture::new(stack, ErrorFormatKind::Default).await.gate,
            "GET",
            PATH,
            As::default(),
            "",
        )
        .await;
        assert_eq!(anonymous.status, 401, "{stack:?}");
        assert_eq!(anonymous.json()["error"]["code"], "MISSING_API_KEY");

        let problem = Fixture::new(stack, ErrorFormatKind::Problem).await;
        let missing = problem
            .send("DELETE", &format!("{PATH}/kg_live_nosuchky"), &problem.admin, "")
            .await;
        assert_eq!(missing.status, 404, "{stack:?}");
        assert_eq!(missing.content_type, "application/problem+json");
        assert_eq!(
            missing.body,
            r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"API key not found","code":"NOT_FOUND"}"#
        );

        let openai = Fixture::new(stack, ErrorFormatKind::OpenAi).await;
        let bad = openai.send("POST", PATH, &openai.admin, "{").await;
        assert_eq!(bad.status, 400, "{stack:?}");
        assert_eq!(bad.json()["error"]["type"], "invalid_request_error");
    }
}

#[actix_web::test]
async fn keys_without_the_admin_scope_get_403_from_every_route() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let (id, _) = f.create(&f.admin, r#"{"name":"target","scopes":["read"]}"#).await;
        let scopeless = f.key(NewKey::new("acct_a", "bare")).await;
        for key in [&f.a, &scopeless] {
            for (method, uri, body) in [
                ("GET", PATH.to_owned(), ""),
                ("POST", PATH.to_owned(), r#"{"name":"child","scopes":["read"]}"#),
                ("DELETE", format!("{PATH}/{id}"), ""),
                ("POST", format!("{PATH}/{id}/rotate"), ""),
            ] {
                let reply = f.send(method, &uri, key, body).await;
                assert_eq!(reply.status, 403, "{stack:?} {method} {uri}: {}", reply.body);
                assert_eq!(reply.body, NEEDS_ADMIN, "{stack:?} {method} {uri}");
            }
        }
        // Nothing was touched: the target is still active, no child was made.
        let listed = f.send("GET", PATH, &f.admin, "").await;
        assert!(!listed.body.contains("\"child\""), "{stack:?}: {}", listed.body);
        assert!(
            !listed.body.contains(r#""status":"revoked""#),
            "{stack:?}: {}",
            listed.body
        );
    }
}

#[actix_web::test]
async fn admin_grants_all_false_is_honoured_by_the_api() {
    for stack in STACKS {
        let f = Fixture::with(stack, Gate::builder(MemoryStore::new()).admin_grants_all(false)).await;
        // `admin` is still the manage scope, but no longer every other scope.
        let refused = f
            .send(
                "POST",
                PATH,
                &f.admin,
                r#"{"name":"billing","scopes":["billing"]}"#,
            )
            .await;
        assert_eq!(refused.status, 403, "{stack:?}: {}", refused.body);
        assert_eq!(refused.json()["error"]["details"]["required"], json!(["billing"]));

        let billing = f
            .gate
            .keys()
            .create(NewKey::new("acct_a", "billing").scopes(["billing"]))
            .await
            .expect("billing key");
        let rotate = f
            .send(
                "POST",
                &format!("{PATH}/{}/rotate", billing.record.key_id),
                &f.admin,
                "",
            )
            .await;
        assert_eq!(rotate.status, 403, "{stack:?}: {}", rotate.body);
        let revoke = f
            .send(
                "DELETE",
                &format!("{PATH}/{}", billing.record.key_id),
                &f.admin,
                "",
            )
            .await;
        assert_eq!(revoke.status, 403, "{stack:?}: {}", revoke.body);

        // What it holds itself, it may hand out.
        f.create(&f.admin, r#"{"name":"ops","scopes":["admin"]}"#).await;
    }
}

#[actix_web::test]
async fn a_capped_admin_key_never_mints_or_rotates_a_key_stronger_than_itself() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let expires = f.gate.now() + std::time::Duration::from_secs(86_400);
        let capped = f
            .key(
                NewKey::new("acct_a", "capped admin")
                    .scopes(["admin"])
                    .environment(keygate::key::Environment::Test)
                    .expires_at(expires)
                    .spend_cap(1000)
                    .rate_limits([RateLimit::per_minute(5)]),
            )
            .await;
        for (body, what) in [
            (r#"{"name":"x","environment":"live"}"#, "another environment"),
            (r#"{"name":"x","expires_in":"30d"}"#, "a longer life"),
            (r#"{"name":"x","spend_cap":5000}"#, "a higher cap"),
            (r#"{"name":"x","rate_limits":"1000/min"}"#, "looser limits"),
            (
                r#"{"name":"x","rate_limits":"5/s"}"#,
                "looser limits in a shorter window",
            ),
        ] {
            let refused = f.send("POST", PATH, &capped, body).await;
            assert_eq!(refused.status, 403, "{stack:?} {what}: {}", refused.body);
            assert_eq!(refused.body, NEEDS_ADMIN, "{stack:?} {what}");
        }

        // Asked for nothing, the child gets no more than its creator.
        let (_, child) = f.create(&capped, r#"{"name":"child"}"#).await;
        let listed = f.send("GET", PATH, &capped, "").await.json();
        let named = |name: &str| {
            listed["data"]
                .as_array()
                .and_then(|d| d.iter().find(|k| k["name"] == name).cloned())
                .unwrap_or_default()
        };
        let (record, creator) = (named("child"), named("capped admin"));
        assert_eq!(record["environment"], "test", "{stack:?}: {record}");
        assert_eq!(record["spend_cap"], 1000, "{stack:?}");
        assert_eq!(
            record["rate_limits"],
            json!([{"limit": 5, "period": 60}]),
            "{stack:?}"
        );
        assert!(record["expires_at"].is_string(), "{stack:?}: {record}");
        assert_eq!(record["expires_at"], creator["expires_at"], "{stack:?}");
        assert!(child.starts_with("kg_test_"), "{stack:?}");
        // Tighter than its own, it may ask for.
        f.create(
            &capped,
            r#"{"name":"tight","spend_cap":10,"rate_limits":"1/min"}"#,
        )
        .await;

        // Rotating hands out a new plaintext: never of a key stronger than the caller,
        // such as one on the gate's default limits when the caller has tighter ones.
        let limited = f
            .key(
                NewKey::new("acct_a", "limited admin")
                    .scopes(["admin"])
                    .spend_cap(1000)
                    .rate_limits([RateLimit::per_minute(5)]),
            )
            .await;
        let on_defaults = f
            .gate
            .keys()
            .create(NewKey::new("acct_a", "defaults").spend_cap(1000))
            .await
            .expect("a key on the gate's default limits");
        let path = format!("{PATH}/{}/rotate", on_defaults.record.key_id);
        let rotate = f.send("POST", &path, &limited, "").await;
        assert_eq!(rotate.status, 403, "{stack:?}: {}", rotate.body);
        assert_eq!(rotate.body, NEEDS_ADMIN, "{stack:?}");
        let revoke = f
            .send(
                "DELETE",
                &format!("{PATH}/{}", on_defaults.record.key_id),
                &limited,
                "",
            )
            .await;
        assert_eq!(revoke.status, 403, "{stack:?}: {}", revoke.body);
        // One no stronger than the caller, it may rotate.
        let tighter = f
            .gate
            .keys()
            .create(
                NewKey::new("acct_a", "tighter")
                    .spend_cap(10)
                    .rate_limits([RateLimit::per_minute(1)]),
            )
            .await
            .expect("a tighter key");
        let path = format!("{PATH}/{}/rotate", tighter.record.key_id);
        let rotated = f.send("POST", &path, &limited, "").await;
        assert_eq!(rotated.status, 201, "{stack:?}: {}", rotated.body);
    }
}

#[actix_web::test]
async fn metadata_larger_than_4_kib_is_refused_with_400() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let big = "x".repeat(10 * 1024);
        let reply = f
            .send(
                "POST",
                PATH,
                &f.admin,
                &format!(r#"{{"name":"big","metadata":{{"blob":"{big}"}}}}"#),
            )
            .await;
        assert_eq!(
            reply.status,
            400,
            "{stack:?}: {}",
            &reply.body[..reply.body.len().min(200)]
        );
        assert_eq!(reply.json()["error"]["code"], "INVALID_REQUEST");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("4096"), "{stack:?}: {message}");
        // Just under the limit is fine.
        let fits = "x".repeat(4000);
        f.create(
            &f.admin,
            &format!(r#"{{"name":"fits","metadata":{{"blob":"{fits}"}}}}"#),
        )
        .await;
    }
}

#[actix_web::test]
async fn a_nul_byte_in_a_name_or_metadata_is_a_400_and_in_a_key_id_a_404() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        refuses_nul_bytes(&f).await;
    }
}

/// The NUL checks, against whatever store `f` runs on.
async fn refuses_nul_bytes(f: &Fixture) {
    let stack = f.stack;
    for body in [
        r#"{"name":"a\u0000b"}"#,
        r#"{"name":"x","metadata":{"team":"c\u0000i"}}"#,
        r#"{"name":"x","metadata":{"te\u0000am":"ci"}}"#,
        r#"{"name":"x","metadata":{"deep":[{"k":["\u0000"]}]}}"#,
    ] {
        let reply = f.send("POST", PATH, &f.admin, body).await;
        assert_eq!(reply.status, 400, "{stack:?} {body}: {}", reply.body);
        assert_eq!(
            reply.json()["error"]["code"],
            "INVALID_REQUEST",
            "{stack:?} {body}"
        );
    }
    for (method, uri) in [
        ("DELETE", format!("{PATH}/kg_live_%00abc")),
        ("POST", format!("{PATH}/kg_live_%00abc/rotate")),
    ] {
        let reply = f.send(method, &uri, &f.admin, "").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (404, NOT_FOUND),
            "{stack:?} {uri}"
        );
    }
}

#[cfg(feature = "postgres")]
#[actix_web::test]
async fn a_nul_byte_never_reaches_postgres() {
    use keygate::keygate_sqlx::sqlx::postgres::PgConnectOptions;
    use keygate::keygate_sqlx::sqlx::PgPool;
    use keygate::SqlStore;
    use std::str::FromStr;

    let Ok(url) = std::env::var("KEYGATE_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("KEYGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "KEYGATE_REQUIRE_SERVICES=1 but KEYGATE_TEST_POSTGRES_URL is not set"
        );
        println!("skipped: set KEYGATE_TEST_POSTGRES_URL to run the PostgreSQL case");
        return;
    };
    let options = PgConnectOptions::from_str(&url).expect("KEYGATE_TEST_POSTGRES_URL");
    let admin = PgPool::connect_with(options.clone()).await.expect("connect");
    for stack in STACKS {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!("kg_self_service_{}_{nanos}", std::process::id());
        keygate::keygate_sqlx::sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create schema");
        let store = SqlStore::connect_postgres(options.clone().options([("search_path", schema.as_str())]))
            .await
            .expect("connect to the schema");
        store.migrate().await.expect("migrate");
        let f = Fixture::with(stack, Gate::builder(store)).await;
        // Run the checks in a task, so that the schema is dropped even when one fails.
        let outcome = tokio::task::spawn_local(async move { refuses_nul_bytes(&f).await }).await;
        let _ = keygate::keygate_sqlx::sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await;
        if let Err(failure) = outcome {
            std::panic::resume_unwind(failure.into_panic());
        }
    }
}

#[actix_web::test]
async fn an_account_manages_its_owners_keys_without_any_api_key() {
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let listed = f.as_account("acct_a", "GET", PATH, "").await;
        assert_eq!(listed.status, 200, "{stack:?}: {}", listed.body);
        // acct_a's two fixture keys, nothing of acct_b.
        assert_eq!(
            listed.json()["data"].as_array().map(Vec::len),
            Some(2),
            "{stack:?}"
        );
        assert!(listed.body.contains("\"acct_a\"") && !listed.body.contains("acct_b"));

        // Full rights: any scope, limits of its own, metadata.
        let made = f
            .as_account(
                "acct_a",
                "POST",
                PATH,
                r#"{"name":"dash","scopes":["admin","billing"],"rate_limits":"1000/min","metadata":{"plan":"pro"}}"#,
            )
            .await;
        assert_eq!(made.status, 201, "{stack:?}: {}", made.body);
        let json = made.json();
        let (id, key) = (
            json["key_id"].as_str().unwrap_or_default(),
            json["key"].as_str().unwrap_or_default(),
        );
        assert_eq!(json["owner"], "acct_a");
        assert_eq!(f.whoami(key).await, 200, "{stack:?}");

        let rotated = f
            .as_account("acct_a", "POST", &format!("{PATH}/{id}/rotate"), "")
            .await;
        assert_eq!(rotated.status, 201, "{stack:?}: {}", rotated.body);
        let new_id = rotated.json()["key_id"].as_str().unwrap_or_default().to_owned();

        // Another account sees none of it.
        let theirs = f
            .as_account("acct_b", "DELETE", &format!("{PATH}/{new_id}"), "")
            .await;
        assert_eq!(
            (theirs.status, theirs.body.as_str()),
            (404, NOT_FOUND),
            "{stack:?}"
        );

        let revoked = f
            .as_account("acct_a", "DELETE", &format!("{PATH}/{new_id}"), "")
            .await;
        assert_eq!(revoked.status, 200, "{stack:?}: {}", revoked.body);
        assert_eq!(revoked.json()["status"], "revoked");
    }
}

#[actix_web::test]
async fn without_an_account_a_request_needs_a_valid_key() {
    const MISSING: &str = r#"{"success":false,"error":{"code":"MISSING_API_KEY","message":"API key is required","details":{"header":"Authorization"}}}"#;
    for stack in STACKS {
        let f = Fixture::new(stack, ErrorFormatKind::Default).await;
        let send = |caller: As<'static>| {
            let gate = f.gate.clone();
            async move { call(stack, &gate, "GET", PATH, caller, "").await }
        };
        let nobody = send(As::default()).await;
        assert_eq!((nobody.status, nobody.body.as_str()), (401, MISSING), "{stack:?}");

        // A key in the gate's format that fails is refused by the gate.
        let unknown = send(As {
            key: Some("kg_live_nosuchky_0123456789abcdefghijklmn"),
            account: None,
        })
        .await;
        assert_eq!(unknown.status, 401, "{stack:?}: {}", unknown.body);
        assert_eq!(unknown.json()["error"]["code"], "INVALID_API_KEY", "{stack:?}");

        // The host's own bearer token is not keygate's: alone it is no caller...
        let foreign = send(As {
            key: Some("eyJhbGciOiJIUzI1NiJ9.host-session-token"),
            account: None,
        })
        .await;
        assert_eq!(
            (foreign.status, foreign.body.as_str()),
            (401, MISSING),
            "{stack:?}"
        );
        // ...and beside the account its layer established, it is left alone.
        let signed_in = send(As {
            key: Some("eyJhbGciOiJIUzI1NiJ9.host-session-token"),
            account: Some("acct_a"),
        })
        .await;
        assert_eq!(signed_in.status, 200, "{stack:?}: {}", signed_in.body);
    }
}
