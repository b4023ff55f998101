//! [`ErrorFormatKind`]: an error format chosen by name, as the examples read
//! `KEYGATE_ERROR_FORMAT`; and the tests that hold every format to the same denials.
//!
//! # Example
//! ```
//! use keygate_core::reject::{Denial, ErrorFormatKind};
//! use keygate_core::{Gate, MemoryStore};
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

use super::{DefaultFormat, Denial, ErrorFormat, OpenAiFormat, ProblemFormat};
use crate::invalid::InvalidValue;

/// Which error format to render with, chosen by name: `default`, `openai` or
/// `problem` (as the examples read `KEYGATE_ERROR_FORMAT`). It is itself an
/// [`ErrorFormat`], so [`GateBuilder::error_format`](crate::gate::GateBuilder::error_format)
/// takes it as is.
///
/// ```
/// use keygate_core::reject::ErrorFormatKind;
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
    use crate::account::Holder;
    use crate::record::Scopes;
    use crate::reject::Renderer;
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
                holder: Holder::Key,
            },
            Denial::RateLimited {
                retry_after: 60,
                holder: Holder::Key,
            },
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
        let denial = Denial::RateLimited {
            retry_after: 2,
            holder: Holder::Key,
        };
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
