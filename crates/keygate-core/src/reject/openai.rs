//! [`OpenAiFormat`]: OpenAI-compatible bodies, so OpenAI's SDKs raise their usual
//! exceptions.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{rfc3339, to_json, Denial, ErrorFormat};
use crate::account::Holder;
use crate::record::Scopes;

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

pub(super) fn scope_list(scopes: &Scopes) -> String {
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
            Denial::QuotaExceeded { resets_at, holder } => (
                format!(
                    "You exceeded your {} quota, please check your plan and billing details. \
                     The quota resets at {}.",
                    if *holder == Holder::Account { "account's" } else { "current" },
                    rfc3339(*resets_at)
                ),
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            Denial::RateLimited { retry_after, holder } => (
                format!(
                    "Rate limit reached for {}. Please try again in {retry_after}s.",
                    if *holder == Holder::Account { "the account's requests" } else { "requests" }
                ),
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
