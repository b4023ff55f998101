//! Refusals: why ([`Denial`]), how a format writes the body ([`ErrorFormat`]), and the
//! rendered answer ([`Rejection`]). Every byte of every error body comes from here, so
//! all adapters answer alike. One file per format: [`DefaultFormat`] (the documented
//! table), [`OpenAiFormat`], [`ProblemFormat`] (RFC 9457), and [`ErrorFormatKind`] to
//! choose one by name.
//!
//! # Example
//! ```
//! use keygate_core::reject::{DefaultFormat, Denial, ErrorFormat};
//!
//! let body = DefaultFormat.body(&Denial::MissingKey { header: "Authorization" }, chrono::Utc::now());
//! assert_eq!(
//!     body,
//!     r#"{"success":false,"error":{"code":"MISSING_API_KEY","message":"API key is required","details":{"header":"Authorization"}}}"#
//! );
//! ```

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::StatusCode;
use serde::Serialize;

use crate::account::Holder;
use crate::key::KeyId;
use crate::record::Scopes;

mod default;
mod kind;
mod openai;
mod problem;

pub use default::DefaultFormat;
pub use kind::ErrorFormatKind;
pub use openai::OpenAiFormat;
pub use problem::ProblemFormat;

/// Why a request was refused: the decision, before it is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// No credential was presented.
    MissingKey {
        /// The header the client should send.
        header: &'static str,
    },
    /// The credential is malformed, unknown, wrong, revoked, or one of two different
    /// keys. All of these answer with the same bytes, so a key id's existence is
    /// never revealed.
    InvalidKey {
        /// The public part as presented, if it was readable.
        key_id: Option<KeyId>,
    },
    /// The key is past its expiry.
    ExpiredKey {
        /// When it expired.
        expired_at: DateTime<Utc>,
    },
    /// The key lacks a scope the route requires.
    InsufficientScope {
        /// The scopes the route requires.
        required: Scopes,
    },
    /// The key's monthly spend cap is used up.
    QuotaExceeded {
        /// The first instant of the next month (UTC).
        resets_at: DateTime<Utc>,
        /// Whose cap: the key's, or its owner's account-wide one (said in the body).
        holder: Holder,
    },
    /// A rate limit is exhausted.
    RateLimited {
        /// Whole seconds to wait, at least 1.
        retry_after: u64,
        /// Whose window refused: the key's, or its owner's account-wide one (said in
        /// the body).
        holder: Holder,
    },
    /// Verification is saturated or the store is down; retry later.
    Unavailable {
        /// Whole seconds to wait, at least 1.
        retry_after: u64,
    },
    /// A request to keygate's own API (the self-service key API) is malformed: bad JSON,
    /// a missing name, an unknown environment, a bad rate or duration.
    BadRequest {
        /// What is wrong, for the client; never contains a key.
        message: String,
    },
    /// A resource of keygate's own API does not exist, or is not the caller's.
    NotFound {
        /// What was not found (`API key`).
        what: &'static str,
    },
}

impl Denial {
    /// The HTTP status for this denial.
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::MissingKey { .. } | Denial::InvalidKey { .. } | Denial::ExpiredKey { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Denial::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Denial::QuotaExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
            Denial::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Denial::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Denial::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Denial::NotFound { .. } => StatusCode::NOT_FOUND,
        }
    }

    /// The stable machine-readable code (`MISSING_API_KEY`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingKey { .. } => "MISSING_API_KEY",
            Denial::InvalidKey { .. } => "INVALID_API_KEY",
            Denial::ExpiredKey { .. } => "EXPIRED_API_KEY",
            Denial::InsufficientScope { .. } => "INSUFFICIENT_PERMISSIONS",
            Denial::QuotaExceeded { .. } => "INSUFFICIENT_QUOTA",
            Denial::RateLimited { .. } => "RATE_LIMIT_EXCEEDED",
            Denial::Unavailable { .. } => "SERVICE_UNAVAILABLE",
            Denial::BadRequest { .. } => "INVALID_REQUEST",
            Denial::NotFound { .. } => "NOT_FOUND",
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &'static str {
        match self {
            Denial::MissingKey { .. } => "API key is required",
            Denial::InvalidKey { .. } => "The provided API key is invalid",
            Denial::ExpiredKey { .. } => "The API key has expired",
            Denial::InsufficientScope { .. } => "The API key lacks the scopes this route requires",
            Denial::QuotaExceeded {
                holder: Holder::Account,
                ..
            } => "The account's monthly spend cap is exhausted",
            Denial::QuotaExceeded { .. } => "The API key's monthly spend cap is exhausted",
            Denial::RateLimited { .. } => "Rate limit exceeded",
            Denial::Unavailable { .. } => "Authentication is temporarily unavailable, retry later",
            Denial::BadRequest { .. } => "The request is invalid",
            Denial::NotFound { .. } => "Not found",
        }
    }

    /// The message a body shows: [`message`](Self::message), or the specific text of a
    /// [`BadRequest`](Denial::BadRequest) or [`NotFound`](Denial::NotFound).
    pub fn detail(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Denial::BadRequest { message } => message.as_str().into(),
            Denial::NotFound { what } => format!("{what} not found").into(),
            _ => self.message().into(),
        }
    }

    /// Seconds for a `Retry-After` header, when the denial has one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Denial::RateLimited { retry_after, .. } | Denial::Unavailable { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

/// RFC 3339 in UTC with a `Z`, whole seconds: `2024-01-01T00:00:00Z`.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Renders a [`Denial`] as a body. Status and headers are the gate's; the format chooses
/// the body and its content type.
pub trait ErrorFormat: Send + Sync + 'static {
    /// The `content-type` of bodies in this format.
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    /// The body for `denial`, rendered at `now`.
    fn body(&self, denial: &Denial, now: DateTime<Utc>) -> String;
}

/// Serialising these plain structs cannot fail; an empty object is the safe fallback.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Room for the usual body at once, so that it is not grown as it is written.
    let mut out = Vec::with_capacity(256);
    match serde_json::to_writer(&mut out, value) {
        // serde_json writes UTF-8 only.
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| "{}".into()),
        Err(_) => "{}".into(),
    }
}

/// A refused request, fully rendered: status, headers and body. Adapters copy it into
/// their response type and add nothing.
#[derive(Clone)]
pub struct Rejection(Box<Rendered>);

/// Boxed so that `Result<_, Rejection>` stays small on the admitted path.
#[derive(Clone)]
struct Rendered {
    denial: Denial,
    headers: HeaderMap,
    body: Bytes,
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("status", &self.status())
            .field("denial", &self.0.denial)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.0.denial.code())
    }
}

impl std::error::Error for Rejection {}

/// How rejections are rendered: the error format, and the realm of `WWW-Authenticate`.
#[derive(Clone)]
pub struct Renderer {
    pub(crate) format: Arc<dyn ErrorFormat>,
    realm: Arc<str>,
    /// The challenges that depend on the realm alone, made once: a flood of wrong keys
    /// formats none. For a missing key, and for an invalid or expired one.
    missing: Option<HeaderValue>,
    invalid: Option<HeaderValue>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new(Arc::new(DefaultFormat), "api")
    }
}

impl Renderer {
    pub(crate) fn new(format: Arc<dyn ErrorFormat>, realm: &str) -> Self {
        // Realms are cleaned of quotes and control characters; a value that still
        // fails is dropped, not allowed to panic.
        let challenge = |value: String| HeaderValue::try_from(value).ok();
        Self {
            format,
            missing: challenge(format!("Bearer realm=\"{realm}\"")),
            invalid: challenge(format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")),
            realm: realm.into(),
        }
    }

    /// The same format with another realm.
    pub(crate) fn with_realm(&self, realm: &str) -> Self {
        Self::new(self.format.clone(), realm)
    }

    /// Renders `denial` at `now`, with `extra` headers (the rate-limit fields of a 429).
    pub fn render(&self, denial: Denial, now: DateTime<Utc>, extra: Option<HeaderMap>) -> Rejection {
        let mut headers = extra.unwrap_or_default();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.format.content_type()));
        if let Some(challenge) = self.challenge(&denial) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = denial.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        let body = Bytes::from(self.format.body(&denial, now));
        Rejection(Box::new(Rendered {
            denial,
            headers,
            body,
        }))
    }

    fn challenge(&self, denial: &Denial) -> Option<HeaderValue> {
        let realm = &self.realm;
        let value = match denial {
            Denial::MissingKey { .. } => return self.missing.clone(),
            Denial::InvalidKey { .. } | Denial::ExpiredKey { .. } => return self.invalid.clone(),
            Denial::InsufficientScope { required } => {
                let scope: Vec<&str> = required.iter().collect();
                format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                    scope.join(" ")
                )
            }
            _ => return None,
        };
        // Realm and scopes are validated text; a value that still fails is dropped,
        // not allowed to panic.
        HeaderValue::try_from(value).ok()
    }
}

impl Rejection {
    /// The decision behind this rejection.
    pub fn denial(&self) -> &Denial {
        &self.0.denial
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.denial.status()
    }

    /// Every header of the response, `content-type` included.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.0.body
    }

    /// Adds a header (the adapters' admission headers, for example).
    pub fn insert_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.headers.insert(name, value);
    }

    /// Into an `http::Response` with any body type built from `Bytes`.
    pub fn into_response<B: From<Bytes>>(self) -> http::Response<B> {
        let Rendered {
            denial,
            headers,
            body,
        } = *self.0;
        let mut response = http::Response::new(B::from(body));
        *response.status_mut() = denial.status();
        *response.headers_mut() = headers;
        response
    }
}
