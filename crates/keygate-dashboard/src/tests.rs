//! The serving rules, without a framework.

use super::*;

fn get(path: &str) -> DashboardRequest<'_> {
    DashboardRequest {
        method: "GET",
        path,
        full_path: path,
        if_none_match: None,
        account: None,
    }
}

fn header<'a>(served: &'a Served, name: &str) -> Option<&'a str> {
    served.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
}

#[test]
fn every_answer_carries_the_security_headers() {
    let dashboard = Dashboard::new();
    for path in ["/keys", "/session", "/nope", "", "/assets/dashboard.js"] {
        let served = dashboard.respond(&get(path));
        assert_eq!(
            header(&served, "content-security-policy"),
            Some(CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert_eq!(header(&served, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&served, "x-frame-options"), Some("DENY"));
        assert!(header(&served, "cache-control").is_some(), "{path}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
}

#[test]
fn head_answers_the_headers_without_the_body() {
    let served = Dashboard::new().respond(&DashboardRequest {
        method: "HEAD",
        ..get("/keys")
    });
    assert_eq!(served.status(), 200);
    assert_eq!(header(&served, "content-type"), Some("text/html; charset=utf-8"));
    assert!(served.body().is_empty());
}

#[test]
fn if_none_match_lists_are_read_as_rfc_9110_says() {
    let tag = "\"kg-00000000000000ff\"";
    assert!(matches_etag(tag.as_bytes(), tag));
    assert!(matches_etag(b"\"a\", W/\"kg-00000000000000ff\"", tag));
    assert!(matches_etag(b"*", tag));
    assert!(!matches_etag(b"\"kg-00000000000000fe\"", tag));
    assert!(!matches_etag(&[0xff, 0xfe], tag));
}

#[test]
fn the_root_redirect_is_relative_to_the_path_asked() {
    assert_eq!(root_location("/app"), "app/keys");
    assert_eq!(root_location("/app/"), "keys");
    assert_eq!(root_location("/admin/keygate"), "keygate/keys");
    assert_eq!(root_location("/"), "keys");
    assert_eq!(root_location(""), "keys");
}

#[test]
fn the_api_base_is_a_path_on_this_origin() {
    assert_eq!(Dashboard::new().base(), "/api/v1");
    assert_eq!(Dashboard::new().api_base("/keys/api/").base(), "/keys/api");
    for bad in [
        "api",
        "https://elsewhere.example/api",
        "//elsewhere.example",
        "/a\"b",
        "/a b",
        "/a?b",
    ] {
        let result = std::panic::catch_unwind(|| Dashboard::new().api_base(bad));
        assert!(result.is_err(), "{bad} accepted");
    }
    let session = Dashboard::new().api_base("/v2").respond(&get("/session"));
    assert_eq!(
        session.body().as_ref(),
        br#"{"account":false,"api_base":"/v2","owner":null}"#
    );
}

#[test]
fn the_session_of_an_account_names_its_owner_escaped() {
    let account = Account::new("acct \"1\"");
    let served = Dashboard::new().respond(&DashboardRequest {
        account: Some(&account),
        ..get("/session")
    });
    let body: serde_json::Value = serde_json::from_slice(served.body()).unwrap();
    assert_eq!(body["account"], true);
    assert_eq!(body["owner"], "acct \"1\"");
}

#[test]
fn the_openapi_document_parses_and_takes_the_api_base() {
    let served = Dashboard::new().api_base("/v2").openapi("GET");
    let doc: serde_json::Value = serde_json::from_slice(served.body()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/v2");
    assert_eq!(Dashboard::new().openapi("POST").status(), 405);
}
