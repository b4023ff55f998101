//! The embeddable key and usage pages of keygate: a "Keys" page (create, filter, rotate,
//! revoke, the new key shown once) and a "Usage" page (requests per key as an inline SVG
//! chart beside a table), mounted in one line in axum (`dashboard_at`, feature
//! `axum`) or actix-web (`dashboard_scope`, feature `actix`).
//!
//! Everything is served from the binary: two HTML pages, one stylesheet and one small
//! script, compiled in. No CDN, no build step. The pages decide nothing: the script calls
//! the self-service JSON API (`keygate-self-service`, at [`Dashboard::api_base`], `/api/v1`
//! by default), so who may create, rotate or revoke what stays in one place.
//!
//! Who is signed in:
//!
//! - **The host's account.** When the host application's login put a
//!   [`keygate_self_service::Account`] into the request's extensions (the same layer that
//!   serves the self-service API), `GET {mount}/session` says so and the script sends no
//!   `Authorization` header: the API answers as that account, from the same cookie.
//! - **An API key**, for apps without a login of their own (and the examples): a
//!   sign-in form takes a key with the manage scope (`admin`), kept in the tab's
//!   `sessionStorage` only and sent as `Authorization: Bearer`. It is never written
//!   back into the page.
//!
//! | path below the mount | answer |
//! | --- | --- |
//! | the mount point itself, or `/` | 302 to `keys` (axum routes no `/app/` to a router nested at `/app`) |
//! | `/keys`, `/usage` | the pages (`text/html`) |
//! | `/assets/dashboard.css`, `/assets/dashboard.js`, `/assets/icon.svg` | the assets |
//! | `/session` | `{"account":bool,"owner":string or null,"api_base":"/api/v1"}`, `no-store` |
//! | anything else | 404 |
//!
//! Every answer carries a `Content-Security-Policy` that allows scripts, styles and
//! requests from the page's own origin only (no inline script), `X-Content-Type-Options:
//! nosniff`, `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`. Pages and assets
//! are `Cache-Control: no-cache` with an `ETag` (a new build shows at once; an unchanged
//! one costs a 304); `session` and the OpenAPI document are `no-store`. Methods other than
//! `GET` and `HEAD` get 405.
//!
//! [`Dashboard::openapi`] serves the OpenAPI 3.1 document of the self-service API
//! (`openapi_route` in axum, `openapi_resource` in actix-web), its server URL the
//! API base.
//!
//! # Example
//! ```
//! # #[cfg(feature = "axum")]
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use axum::{body::Body, extract::Request, Router};
//! use keygate_dashboard::{dashboard_at, Dashboard};
//! use tower::ServiceExt;
//!
//! let app = Router::new().merge(dashboard_at("/app", Dashboard::new()));
//!
//! let page = app.clone().oneshot(Request::get("/app/keys").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(page.status(), 200);
//! assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
//! assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
//!
//! let missing = app.oneshot(Request::get("/app/assets/nope.js").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(missing.status(), 404);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use keygate_self_service::Account;

mod assets;
#[cfg(feature = "axum")]
mod router;
#[cfg(feature = "actix")]
mod scope;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use router::{dashboard_at, dashboard_router, openapi_route};
#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub use scope::{dashboard_scope, openapi_resource};

/// The policy of every answer: the page's own origin for scripts, styles, images and
/// requests; no inline script or style, no plugin, no framing, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's settings: where the self-service API is. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dashboard {
    inner: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    api_base: String,
    /// The OpenAPI document with the API base as its server.
    openapi: Bytes,
}

impl Default for Dashboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Dashboard {
    /// The dashboard of an API served at `/api/v1` (keys at `/api/v1/api-keys`), as the
    /// examples mount it.
    pub fn new() -> Self {
        Self::with_base("/api/v1")
    }

    /// The path under which the self-service API is mounted on the same origin: the key
    /// routes are `{base}/api-keys`. A trailing `/` is dropped.
    ///
    /// # Panics
    ///
    /// When `base` is not an absolute path (starting with `/`) of visible ASCII without
    /// quotes, backslashes, `?` or `#`: a configuration error, found at start-up. The page
    /// may only call its own origin (`connect-src 'self'`).
    pub fn api_base(self, base: &str) -> Self {
        let valid = base.starts_with('/')
            && !base.starts_with("//")
            && base
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'?' | b'#' | b'<' | b'>'));
        assert!(
            valid,
            "Dashboard::api_base: `{base}` is not an absolute path on this origin"
        );
        Self::with_base(base.trim_end_matches('/'))
    }

    fn with_base(base: &str) -> Self {
        let quoted = serde_json::Value::from(base).to_string();
        let openapi = assets::OPENAPI.replace("\"{{api_base}}\"", &quoted);
        Self {
            inner: Arc::new(Settings {
                api_base: base.to_string(),
                openapi: Bytes::from(openapi),
            }),
        }
    }

    /// The API base path the pages call (`/api/v1` by default).
    pub fn base(&self) -> &str {
        &self.inner.api_base
    }

    /// Answers one request below the mount point. Adapters call it and only translate.
    pub fn respond(&self, request: &DashboardRequest<'_>) -> Served {
        let head = match request.method {
            "GET" => false,
            "HEAD" => true,
            _ => {
                return Served::text(405, "Method not allowed\n")
                    .header("allow", "GET, HEAD")
                    .without_body(false)
            }
        };
        let served = match request.path {
            "" | "/" => Served::redirect(root_location(request.full_path)),
            "/session" => self.session(request.account),
            path => match assets::find(path) {
                Some(asset) => {
                    let etag = format!("\"kg-{:016x}\"", asset.etag);
                    let fresh = request
                        .if_none_match
                        .is_some_and(|tags| matches_etag(tags, &etag));
                    let served = if fresh {
                        Served::new(304, Bytes::new())
                    } else {
                        Served::new(200, Bytes::from_static(asset.body))
                            .header("content-type", asset.content_type)
                    };
                    served.header("etag", etag).header("cache-control", "no-cache")
                }
                None => Served::text(404, "Not found\n"),
            },
        };
        served.without_body(head)
    }

    /// The OpenAPI 3.1 document of the self-service API, for `GET` and `HEAD`.
    pub fn openapi(&self, method: &str) -> Served {
        match method {
            "GET" | "HEAD" => Served::new(200, self.inner.openapi.clone())
                .header("content-type", "application/json")
                .header("cache-control", "no-store")
                .without_body(method == "HEAD"),
            _ => Served::text(405, "Method not allowed\n").header("allow", "GET, HEAD"),
        }
    }

    fn session(&self, account: Option<&Account>) -> Served {
        let body = serde_json::json!({
            "account": account.is_some(),
            "owner": account.map(|a| a.owner().as_str()),
            "api_base": self.inner.api_base,
        });
        Served::new(200, Bytes::from(body.to_string()))
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
    }
}

/// What an adapter hands to [`Dashboard::respond`]: framework types already read.
#[derive(Clone, Copy, Debug)]
pub struct DashboardRequest<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The path below the mount point: `""` or `/` for the root, `/keys`, ...
    pub path: &'a str,
    /// The path the browser asked for, mount point included: the root's redirect is
    /// relative to it.
    pub full_path: &'a str,
    /// The raw `If-None-Match` header, if any.
    pub if_none_match: Option<&'a [u8]>,
    /// The host's account, if its login put one into the request's extensions.
    pub account: Option<&'a Account>,
}

/// A rendered answer: status, headers (the security headers included) and body.
#[derive(Clone, Debug)]
pub struct Served {
    status: u16,
    headers: Vec<(&'static str, Cow<'static, str>)>,
    body: Bytes,
}

impl Served {
    fn new(status: u16, body: Bytes) -> Self {
        let headers = vec![
            ("content-security-policy", Cow::Borrowed(CONTENT_SECURITY_POLICY)),
            ("x-content-type-options", Cow::Borrowed("nosniff")),
            ("x-frame-options", Cow::Borrowed("DENY")),
            ("referrer-policy", Cow::Borrowed("no-referrer")),
        ];
        Self {
            status,
            headers,
            body,
        }
    }

    fn text(status: u16, body: &'static str) -> Self {
        Self::new(status, Bytes::from_static(body.as_bytes()))
            .header("content-type", "text/plain; charset=utf-8")
            .header("cache-control", "no-store")
    }

    fn redirect(location: String) -> Self {
        Self::new(302, Bytes::new())
            .header("location", location)
            .header("cache-control", "no-store")
    }

    fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn without_body(mut self, head: bool) -> Self {
        if head {
            self.body = Bytes::new();
        }
        self
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Every header, by lower-case name.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.headers.iter().map(|(name, value)| (*name, value.as_ref()))
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Status, headers and body.
    pub fn into_parts(self) -> (u16, Vec<(&'static str, Cow<'static, str>)>, Bytes) {
        (self.status, self.headers, self.body)
    }
}

/// Where the root sends the browser: `keys` next to the mount point, relative to the path
/// it asked for (`/app` -> `app/keys`, `/app/` -> `keys`), so it works under any mount.
fn root_location(full_path: &str) -> String {
    if full_path.ends_with('/') {
        return "keys".to_string();
    }
    let last = full_path.rsplit('/').next().unwrap_or_default();
    if last.is_empty() {
        "keys".to_string()
    } else {
        format!("{last}/keys")
    }
}

/// Whether an `If-None-Match` list names `etag` (weak tags compare equal, `*` matches).
fn matches_etag(header: &[u8], etag: &str) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    header.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == etag
    })
}

#[cfg(test)]
mod tests;
