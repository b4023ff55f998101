//! Extractors for [`Principal`](crate::Principal): axum (feature `axum`) and actix-web (feature `actix`).
//!
//! They live here, not in the adapter crates, because the orphan rule allows a foreign
//! trait to be implemented only in the crate that owns the type. They read the
//! `Principal` the adapter put into the request extensions and decide nothing.

use std::fmt;

/// A handler asked for a [`Principal`](crate::Principal) on a route where no keygate layer or middleware
/// ran: a wiring mistake, answered with `500 Internal Server Error` and a message saying
/// how to fix it.
///
/// Routes where a request may pass without a key (optional mode) should take
/// `Option<Principal>` instead, which never fails.
#[cfg_attr(
    feature = "axum",
    doc = r#"
# Example
```
use axum_core::extract::FromRequestParts;
use axum_core::response::IntoResponse;
use keygate_core::Principal;

# tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
// No layer ran, so the request has no principal.
let (mut parts, ()) = http::Request::new(()).into_parts();
let missing = Principal::from_request_parts(&mut parts, &()).await.unwrap_err();
assert_eq!(missing.into_response().status(), http::StatusCode::INTERNAL_SERVER_ERROR);
# });
```
"#
)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MissingPrincipal;

impl MissingPrincipal {
    /// The message of the 500 response.
    pub const MESSAGE: &'static str =
        "Principal missing: is ApiKeyLayer (axum) or ApiKeyMiddleware (actix) applied to this route?";
}

impl fmt::Display for MissingPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for MissingPrincipal {}

#[cfg(feature = "axum")]
mod axum_impl {
    use std::convert::Infallible;
    use std::future::{ready, Future};

    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;
    use http::StatusCode;

    use super::MissingPrincipal;
    use crate::principal::Principal;

    impl IntoResponse for MissingPrincipal {
        fn into_response(self) -> Response {
            // A `&'static str` body is sent as `text/plain; charset=utf-8`.
            (StatusCode::INTERNAL_SERVER_ERROR, MissingPrincipal::MESSAGE).into_response()
        }
    }

    /// The principal the layer admitted; a 500 ([`MissingPrincipal`]) where no layer ran.
    impl<S> FromRequestParts<S> for Principal {
        type Rejection = MissingPrincipal;

        fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> impl Future<Output = Result<Self, Self::Rejection>> + Send {
            ready(
                parts
                    .extensions
                    .get::<Principal>()
                    .cloned()
                    .ok_or(MissingPrincipal),
            )
        }
    }

    /// `Option<Principal>`: `None` when the request passed without a key (optional mode).
    impl<S> OptionalFromRequestParts<S> for Principal {
        type Rejection = Infallible;

        fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> impl Future<Output = Result<Option<Self>, Self::Rejection>> + Send {
            ready(Ok(parts.extensions.get::<Principal>().cloned()))
        }
    }
}

#[cfg(feature = "actix")]
mod actix_impl {
    use std::future::{ready, Ready};

    use actix_web::dev::Payload;
    use actix_web::{FromRequest, HttpMessage, HttpRequest};

    use super::MissingPrincipal;
    use crate::principal::Principal;

    /// The principal the middleware admitted; a 500 with [`MissingPrincipal::MESSAGE`]
    /// where no middleware ran. `Option<Principal>` (actix's blanket impl) is `None` then.
    impl FromRequest for Principal {
        type Error = actix_web::Error;
        type Future = Ready<Result<Self, Self::Error>>;

        fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
            let principal = req.extensions().get::<Principal>().cloned();
            ready(
                principal
                    .ok_or_else(|| actix_web::error::ErrorInternalServerError(MissingPrincipal::MESSAGE)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::hash::SecretHash;
    use crate::key::Environment;
    use crate::principal::Principal;
    use crate::record::{KeyRecord, Scopes, Usage};

    fn principal() -> Principal {
        Principal::from_record(&KeyRecord {
            key_id: "kg_test_abcd1234".into(),
            owner: "acct_1".into(),
            name: "test".into(),
            scopes: Scopes::new(["read"]),
            environment: Environment::Test,
            secret_hash: SecretHash::new("$argon2id$unused"),
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
            metadata: serde_json::Value::Null,
            rate_limits: None,
            spend_cap: None,
            usage: Usage::default(),
        })
    }

    #[test]
    fn the_message_says_how_to_fix_the_wiring() {
        assert_eq!(
            MissingPrincipal.to_string(),
            "Principal missing: is ApiKeyLayer (axum) or ApiKeyMiddleware (actix) applied to this route?"
        );
    }

    #[cfg(feature = "axum")]
    mod axum {
        use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
        use axum_core::response::IntoResponse;
        use http::StatusCode;

        use super::*;

        fn parts(with: Option<Principal>) -> http::request::Parts {
            let (mut parts, ()) = http::Request::new(()).into_parts();
            if let Some(principal) = with {
                parts.extensions.insert(principal);
            }
            parts
        }

        #[tokio::test]
        async fn principal_is_read_from_the_request_extensions() {
            let mut parts = parts(Some(principal()));
            let found = <Principal as FromRequestParts<()>>::from_request_parts(&mut parts, &()).await;
            assert_eq!(
                found.map(|p| p.key_id().to_string()).ok().as_deref(),
                Some("kg_test_abcd1234")
            );
        }

        #[tokio::test]
        async fn missing_principal_is_a_500_that_names_the_layer() {
            let mut parts = parts(None);
            let refused = <Principal as FromRequestParts<()>>::from_request_parts(&mut parts, &())
                .await
                .map(|_| ())
                .unwrap_err()
                .into_response();
            assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                refused.headers()[http::header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
        }

        #[tokio::test]
        async fn optional_principal_is_none_without_a_layer_and_some_with_one() {
            let mut without = parts(None);
            let none =
                <Principal as OptionalFromRequestParts<()>>::from_request_parts(&mut without, &()).await;
            assert!(matches!(none, Ok(None)));
            let mut with = parts(Some(principal()));
            let some = <Principal as OptionalFromRequestParts<()>>::from_request_parts(&mut with, &()).await;
            assert!(matches!(some, Ok(Some(p)) if p.owner().as_str() == "acct_1"));
        }
    }

    #[cfg(feature = "actix")]
    mod actix {
        use actix_web::test::TestRequest;
        use actix_web::{FromRequest, HttpMessage};

        use super::*;

        #[test]
        fn principal_is_read_from_the_request_extensions() {
            let req = TestRequest::default().to_http_request();
            req.extensions_mut().insert(principal());
            let found = Principal::extract(&req).into_inner();
            assert_eq!(
                found.map(|p| p.key_id().to_string()).ok().as_deref(),
                Some("kg_test_abcd1234")
            );
        }

        #[test]
        fn missing_principal_is_a_500_that_names_the_middleware_wiring() {
            let req = TestRequest::default().to_http_request();
            let Err(error) = Principal::extract(&req).into_inner() else {
                panic!("a request without a principal must be refused");
            };
            assert_eq!(error.as_response_error().status_code().as_u16(), 500);
            assert_eq!(error.to_string(), MissingPrincipal::MESSAGE);
        }
    }
}
