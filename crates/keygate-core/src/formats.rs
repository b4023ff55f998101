//! Error formats besides [`DefaultFormat`]: [`OpenAiFormat`], so OpenAI's SDKs raise
//! their usual exceptions, and [`ProblemFormat`], RFC 9457 problem details; and
//! [`ErrorFormatKind`], to choose one from configuration.
//!
//! # Example
//! ```
//! use keygate_core::{Denial, ErrorFormat, ErrorFormatKind, Gate, MemoryStore};
//!
//! // As the examples read `KEYGATE_ERROR_FORMAT`:
//! let kind: ErrorFormatKind = "openai".parse().unwrap();
//! let gate = Gate::builder(MemoryStore::new()).error_format(kind).build();
//!
//! let refused = gate.reject(Denial::InvalidKey { key_id: Some("kg_live_a1b2c3d4".into()) });
//! assert_eq!(
//!     refused.body(),
//!     r#"{"error":{"message":"Incorrect API key provided: kg_live_a1b2c3d4.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#
//! );
//! assert!("xml".parse::<ErrorFormatKind>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{rfc3339, to_json, DefaultFormat, Denial, ErrorFormat};
use crate::key::KeyId;
use crate::record::{InvalidValue, Scopes};

/// OpenAI-compatible bodies: `{"error":{"message","type","param","code"}}`.
///
/// Types and codes follow what OpenAI's API returns, so OpenAI's SDKs and the tools
/// built on them react as they do to OpenAI itself:
///
/// | denial | status | `type` | `code` |
/// | --- | --- | --- | --- |
/// | missing key | 401 | `invalid_request_error` | `null` (as OpenAI) |
/// | invalid or expired key | 401 | `invalid_request_error` | `invalid_api_key` |
/// | missing scope | 403 | `invalid_request_error` | `missing_scope` |
/// | spend cap | 402 | `insufficient_quota` | `insufficient_quota` |
/// | rate limit | 429 | `requests` | `rate_limit_exceeded` |
/// | unavailable | 503 | `service_unavailable_error` | `server_is_overloaded` |
/// | bad request, not found (keygate's own API) | 400, 404 | `invalid_request_error` | `null` |
///
/// OpenAI answers an exhausted quota with 429; keygate keeps 402 (the status is the
/// gate's), and the `insufficient_quota` type tells the two apart as OpenAI's does.
/// `param` is always `null`; details (key id, expiry, scopes, reset) are in `message`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAiFormat;

#[derive(Serialize)]
struct OpenAiEnvelope<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

fn scope_list(scopes: &Scopes) -> String {
    scopes.iter().collect::<Vec<_>>().join(", ")
}

impl ErrorFormat for OpenAiFormat {
    fn body(&self, denial: &Denial, _now: DateTime<Utc>) -> String {
        let (message, kind, code) = match denial {
            Denial::MissingKey { header } => {
                let how = if header.eq_ignore_ascii_case("authorization") {
                    "in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)"
                        .to_string()
                } else {
                    format!("in the {header} header")
                };
                (
                    format!("You didn't provide an API key. You need to provide your API key {how}."),
                    "invalid_request_error",
                    None,
                )
            }
            Denial::InvalidKey { key_id } => (
                match key_id {
                    Some(key_id) => format!("Incorrect API key provided: {key_id}."),
                    None => "Incorrect API key provided.".to_string(),
                },
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            Denial::ExpiredKey { expired_at } => (
                format!("The API key expired at {}.", rfc3339(*expired_at)),
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            Denial::InsufficientScope { required } => (
                format!(
                    "You have insufficient permissions for this operation. Required scopes: {}.",
                    scope_list(required)
                ),
                "invalid_request_error",
                Some("missing_scope"),
            ),
            Denial::QuotaExceeded { resets_at } => (
                format!(
                    "You exceeded your current quota, please check your plan and billing details. \
                     The quota resets at {}.",
                    rfc3339(*resets_at)
                ),
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            Denial::RateLimited { retry_after } => (
                format!("Rate limit reached for requests. Please try again in {retry_after}s."),
                "requests",
                Some("rate_limit_exceeded"),
            ),
            Denial::Unavailable { retry_after } => (
                format!(
                    "The server is temporarily unable to authenticate requests. Please try again in {retry_after}s."
                ),
                "service_unavailable_error",
                Some("server_is_overloaded"),
            ),
            Denial::BadRequest { .. } | Denial::NotFound { .. } => {
                (denial.detail().into_owned(), "invalid_request_error", None)
            }
        };
        to_json(&OpenAiEnvelope {
            error: OpenAiError {
                message,
                kind,
                param: None,
                code,
            },
        })
    }
}

/// RFC 9457 problem details, `application/problem+json`: `type`, `title`, `status`,
/// `detail`, then extension members: `code` (`INVALID_API_KEY`, …) and the denial's
/// details (`header`, `key_id`, `expired_at`, `required`, `resets_at`, `retry_after`).
///
/// By default `type` is `about:blank` and `title` the status phrase, as RFC 9457 asks
/// when a problem has no type of its own. With [`type_base`](Self::type_base), each
/// code gets a type URI (`<base>invalid-api-key`) and a title of its own; point it at
/// your API's documentation.
///
/// ```
/// use keygate_core::{Denial, ErrorFormat, ProblemFormat};
///
/// let format = ProblemFormat::new().type_base("https://api.example.com/problems/");
/// let body = format.body(&Denial::RateLimited { retry_after: 3 }, chrono::Utc::now());
/// assert_eq!(
///     body,
///     r#"{"type":"https://api.example.com/problems/rate-limit-exceeded","title":"Rate limit exceeded","status":429,"detail":"Too many requests for this API key; retry in 3 seconds.","code":"RATE_LIMIT_EXCEEDED","retry_after":3}"#
/// );
/// assert_eq!(format.content_type(), "application/problem+json");
/// ```
#[derive(Clone, Debug, Default)]
pub struct ProblemFormat {
    type_base: Option<Arc<str>>,
}

#[derive(Serialize)]
struct Problem<'a, E: Serialize> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(flatten)]
    extensions: E,
}

impl ProblemFormat {
    /// Problems typed `about:blank`, titled with the HTTP status phrase.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives every code a type URI, `base` followed by the code in kebab case
    /// (`https://api.example.com/problems/invalid-api-key`), and a title of its own.
    pub fn type_base(mut self, base: &str) -> Self {
        self.type_base = Some(base.into());
        self
    }

    fn problem<E: Serialize>(&self, denial: &Denial, detail: String, extensions: E) -> String {
        let status = denial.status();
        let (kind, title) = match &self.type_base {
            Some(base) => (format!("{base}{}", slug(denial.code())), title(denial)),
            None => (
                "about:blank".to_string(),
                status.canonical_reason().unwrap_or("Error"),
            ),
        };
        to_json(&Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
            code: denial.code(),
            extensions,
        })
    }
}

/// `INVALID_API_KEY` -> `invalid-api-key`.
fn slug(code: &str) -> String {
    code.chars()
        .map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() })
        .collect()
}

fn title(denial: &Denial) -> &'static str {
    match denial {
        Denial::MissingKey { .. } => "Missing API key",
        Denial::InvalidKey { .. } => "Invalid API key",
        Denial::ExpiredKey { .. } => "Expired API key",
        Denial::InsufficientScope { .. } => "Insufficient permissions",
        Denial::QuotaExceeded { .. } => "Insufficient quota",
        Denial::RateLimited { .. } => "Rate limit exceeded",
        Denial::Unavailable { .. } => "Service unavailable",
        Denial::BadRequest { .. } => "Invalid request",
        Denial::NotFound { .. } => "Not found",
    }
}

impl ErrorFormat for ProblemFormat {
    fn content_type(&self) -> &'static str {
        "application/problem+json"
    }

    fn body(&self, denial: &Denial, _now: DateTime<Utc>) -> String {
        match denial {
            Denial::MissingKey { header } => {
                #[derive(Serialize)]
                struct E<'a> {
                    header: &'a str,
                }
                let detail = format!("An API key is required in the {header} header.");
                self.problem(denial, detail, E { header })
            }
            Denial::InvalidKey { key_id } => {
                #[derive(Serialize)]
                struct E<'a> {
                    key_id: Option<&'a KeyId>,
                }
                let detail = "The provided API key is invalid.".to_string();
                self.problem(
                    denial,
                    detail,
                    E {
                        key_id: key_id.as_ref(),
                    },
                )
            }
            Denial::ExpiredKey { expired_at } => {
                #[derive(Serialize)]
                struct E {
                    expired_at: String,
                }
                let expired_at = rfc3339(*expired_at);
                let detail = format!("The API key expired at {expired_at}.");
                self.problem(denial, detail, E { expired_at })
            }
            Denial::InsufficientScope { required } => {
                #[derive(Serialize)]
                struct E<'a> {
                    required: &'a Scopes,
                }
                let detail = format!("This request requires the scopes: {}.", scope_list(required));
                self.problem(denial, detail, E { required })
            }
            Denial::QuotaExceeded { resets_at } => {
                #[derive(Serialize)]
                struct E {
                    resets_at: String,
                }
                let resets_at = rfc3339(*resets_at);
                let detail = format!("The API key's monthly spend cap is exhausted until {resets_at}.");
                self.problem(denial, detail, E { resets_at })
            }
            Denial::RateLimited { retry_after } => {
                #[derive(Serialize)]
                struct E {
                    retry_after: u64,
                }
                let retry_after = (*retry_after).max(1);
                let detail = format!(
                    "Too many requests for this API key; retry in {retry_after} {}.",
                    secs(retry_after)
                );
                self.problem(denial, detail, E { retry_after })
            }
            Denial::Unavailable { retry_after } => {
                #[derive(Serialize)]
                struct E {
                    retry_after: u64,
                }
                let retry_after = (*retry_after).max(1);
                let detail = format!(
                    "Authentication is temporarily unavailable; retry in {retry_after} {}.",
                    secs(retry_after)
                );
                self.problem(denial, detail, E { retry_after })
            }
            Denial::BadRequest { .. } | Denial::NotFound { .. } => {
                #[derive(Serialize)]
                struct E {}
                self.problem(denial, denial.detail().into_owned(), E {})
            }
        }
    }
}

fn secs(n: u64) -> &'static str {
    if n == 1 {
        "second"
    } else {
        "seconds"
    }
}

/// Which error format to render with, chosen by name: `default`, `openai` or
/// `problem` (as the examples read `KEYGATE_ERROR_FORMAT`). It is itself an
/// [`ErrorFormat`], so [`GateBuilder::error_format`](crate::GateBuilder::error_format)
/// takes it as is.
///
/// ```
/// use keygate_core::ErrorFormatKind;
///
/// let kind = std::env::var("KEYGATE_ERROR_FORMAT")
///     .ok()
///     .map(|name| name.parse::<ErrorFormatKind>())
///     .transpose()
///     .expect("KEYGATE_ERROR_FORMAT")
///     .unwrap_or_default();
/// assert_eq!("problem".parse::<ErrorFormatKind>(), Ok(ErrorFormatKind::Problem));
/// assert_eq!(
///     "xml".parse::<ErrorFormatKind>().unwrap_err().to_string(),
///     "invalid error format `xml`: expected `default`, `openai` or `problem`"
/// );
/// # let _ = kind;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ErrorFormatKind {
    /// [`DefaultFormat`], the documented keygate bodies.
    #[default]
    Default,
    /// [`OpenAiFormat`].
    OpenAi,
    /// [`ProblemFormat`] with `about:blank` types.
    Problem,
}

impl ErrorFormatKind {
    /// The name it is parsed from: `default`, `openai` or `problem`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorFormatKind::Default => "default",
            ErrorFormatKind::OpenAi => "openai",
            ErrorFormatKind::Problem => "problem",
        }
    }

    /// The format itself, shared.
    pub fn into_format(self) -> Arc<dyn ErrorFormat> {
        match self {
            ErrorFormatKind::Default => Arc::new(DefaultFormat),
            ErrorFormatKind::OpenAi => Arc::new(OpenAiFormat),
            ErrorFormatKind::Problem => Arc::new(ProblemFormat::new()),
        }
    }
}

impl fmt::Display for ErrorFormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `default`, `openai` or `problem`, ignoring case and surrounding spaces.
impl FromStr for ErrorFormatKind {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(ErrorFormatKind::Default),
            "openai" => Ok(ErrorFormatKind::OpenAi),
            "problem" => Ok(ErrorFormatKind::Problem),
            _ => Err(InvalidValue::new(
                "error format",
                s,
                "expected `default`, `openai` or `problem`",
            )),
        }
    }
}

impl ErrorFormat for ErrorFormatKind {
    fn content_type(&self) -> &'static str {
        match self {
            ErrorFormatKind::Default => DefaultFormat.content_type(),
            ErrorFormatKind::OpenAi => OpenAiFormat.content_type(),
            ErrorFormatKind::Problem => ProblemFormat::new().content_type(),
        }
    }

    fn body(&self, denial: &Denial, now: DateTime<Utc>) -> String {
        match self {
            ErrorFormatKind::Default => DefaultFormat.body(denial, now),
            ErrorFormatKind::OpenAi => OpenAiFormat.body(denial, now),
            ErrorFormatKind::Problem => ProblemFormat::new().body(denial, now),
        }
    }
}

/// A shared format (`Arc<dyn ErrorFormat>`, from [`ErrorFormatKind::into_format`], say)
/// is a format.
impl<F: ErrorFormat + ?Sized> ErrorFormat for Arc<F> {
    fn content_type(&self) -> &'static str {
        (**self).content_type()
    }

    fn body(&self, denial: &Denial, now: DateTime<Utc>) -> String {
        (**self).body(denial, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Renderer;
    use http::header::{CONTENT_TYPE, RETRY_AFTER};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn denials() -> Vec<Denial> {
        vec![
            Denial::MissingKey {
                header: "Authorization",
            },
            Denial::InvalidKey {
                key_id: Some("kova_a1b2c3d4".into()),
            },
            Denial::InvalidKey { key_id: None },
            Denial::ExpiredKey {
                expired_at: at("2024-01-01T00:00:00Z"),
            },
            Denial::InsufficientScope {
                required: Scopes::new(["write", "read"]),
            },
            Denial::QuotaExceeded {
                resets_at: at("2026-12-01T00:00:00Z"),
            },
            Denial::RateLimited { retry_after: 60 },
            Denial::Unavailable { retry_after: 1 },
            Denial::BadRequest {
                message: "name is required".into(),
            },
            Denial::NotFound { what: "API key" },
        ]
    }

    #[test]
    fn openai_bodies_match_openai_exactly() {
        let now = at("2025-08-30T09:19:31.245Z");
        let expected = [
            r#"{"error":{"message":"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).","type":"invalid_request_error","param":null,"code":null}}"#,
            r#"{"error":{"message":"Incorrect API key provided: kova_a1b2c3d4.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            r#"{"error":{"message":"The API key expired at 2024-01-01T00:00:00Z.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            r#"{"error":{"message":"You have insufficient permissions for this operation. Required scopes: read, write.","type":"invalid_request_error","param":null,"code":"missing_scope"}}"#,
            r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. The quota resets at 2026-12-01T00:00:00Z.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            r#"{"error":{"message":"Rate limit reached for requests. Please try again in 60s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            r#"{"error":{"message":"The server is temporarily unable to authenticate requests. Please try again in 1s.","type":"service_unavailable_error","param":null,"code":"server_is_overloaded"}}"#,
            r#"{"error":{"message":"name is required","type":"invalid_request_error","param":null,"code":null}}"#,
            r#"{"error":{"message":"API key not found","type":"invalid_request_error","param":null,"code":null}}"#,
        ];
        assert_eq!(denials().len(), expected.len());
        for (denial, expected) in denials().iter().zip(expected) {
            assert_eq!(OpenAiFormat.body(denial, now), expected);
        }
    }

    #[test]
    fn openai_names_a_custom_header_for_a_missing_key() {
        let body = OpenAiFormat.body(&Denial::MissingKey { header: "X-Api-Key" }, Utc::now());
        assert!(
            body.contains("You need to provide your API key in the X-Api-Key header."),
            "{body}"
        );
    }

    #[test]
    fn problem_bodies_follow_rfc_9457_with_extension_members() {
        let now = at("2025-08-30T09:19:31.245Z");
        let expected = [
            r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"An API key is required in the Authorization header.","code":"MISSING_API_KEY","header":"Authorization"}"#,
            r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"The provided API key is invalid.","code":"INVALID_API_KEY","key_id":"kova_a1b2c3d4"}"#,
            r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"The provided API key is invalid.","code":"INVALID_API_KEY","key_id":null}"#,
            r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"The API key expired at 2024-01-01T00:00:00Z.","code":"EXPIRED_API_KEY","expired_at":"2024-01-01T00:00:00Z"}"#,
            r#"{"type":"about:blank","title":"Forbidden","status":403,"detail":"This request requires the scopes: read, write.","code":"INSUFFICIENT_PERMISSIONS","required":["read","write"]}"#,
            r#"{"type":"about:blank","title":"Payment Required","status":402,"detail":"The API key's monthly spend cap is exhausted until 2026-12-01T00:00:00Z.","code":"INSUFFICIENT_QUOTA","resets_at":"2026-12-01T00:00:00Z"}"#,
            r#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Too many requests for this API key; retry in 60 seconds.","code":"RATE_LIMIT_EXCEEDED","retry_after":60}"#,
            r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"Authentication is temporarily unavailable; retry in 1 second.","code":"SERVICE_UNAVAILABLE","retry_after":1}"#,
            r#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"name is required","code":"INVALID_REQUEST"}"#,
            r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"API key not found","code":"NOT_FOUND"}"#,
        ];
        assert_eq!(denials().len(), expected.len());
        for (denial, expected) in denials().iter().zip(expected) {
            assert_eq!(ProblemFormat::new().body(denial, now), expected);
        }
    }

    #[test]
    fn problem_types_can_point_at_documentation() {
        let format = ProblemFormat::new().type_base("https://docs.example.com/errors/");
        let body = format.body(
            &Denial::ExpiredKey {
                expired_at: at("2024-01-01T00:00:00Z"),
            },
            Utc::now(),
        );
        assert_eq!(
            body,
            r#"{"type":"https://docs.example.com/errors/expired-api-key","title":"Expired API key","status":401,"detail":"The API key expired at 2024-01-01T00:00:00Z.","code":"EXPIRED_API_KEY","expired_at":"2024-01-01T00:00:00Z"}"#
        );
    }

    #[test]
    fn rendered_rejections_carry_each_formats_content_type() {
        let denial = Denial::RateLimited { retry_after: 2 };
        let now = Utc::now();
        for (kind, content_type) in [
            (ErrorFormatKind::Default, "application/json"),
            (ErrorFormatKind::OpenAi, "application/json"),
            (ErrorFormatKind::Problem, "application/problem+json"),
        ] {
            let renderer = Renderer::new(Arc::new(kind), "api");
            let rejection = renderer.render(denial.clone(), now, None);
            assert_eq!(rejection.headers()[CONTENT_TYPE], content_type);
            assert_eq!(rejection.headers()[RETRY_AFTER], "2");
            assert_eq!(rejection.body(), &kind.into_format().body(&denial, now));
        }
    }

    #[test]
    fn format_kinds_parse_by_name_and_refuse_others_clearly() {
        assert_eq!("default".parse(), Ok(ErrorFormatKind::Default));
        assert_eq!(" OpenAI ".parse(), Ok(ErrorFormatKind::OpenAi));
        assert_eq!("problem".parse(), Ok(ErrorFormatKind::Problem));
        for kind in [
            ErrorFormatKind::Default,
            ErrorFormatKind::OpenAi,
            ErrorFormatKind::Problem,
        ] {
            assert_eq!(kind.to_string().parse(), Ok(kind));
        }
        let err = "json".parse::<ErrorFormatKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid error format `json`: expected `default`, `openai` or `problem`"
        );
    }

    #[test]
    fn a_kind_renders_exactly_as_its_format() {
        let now = at("2025-08-30T09:19:31.245Z");
        for denial in denials() {
            assert_eq!(
                ErrorFormatKind::Default.body(&denial, now),
                DefaultFormat.body(&denial, now)
            );
            assert_eq!(
                ErrorFormatKind::OpenAi.body(&denial, now),
                OpenAiFormat.body(&denial, now)
            );
            assert_eq!(
                ErrorFormatKind::Problem.body(&denial, now),
                ProblemFormat::new().body(&denial, now)
            );
        }
    }
}
