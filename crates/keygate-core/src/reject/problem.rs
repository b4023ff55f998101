//! [`ProblemFormat`]: RFC 9457 problem details, `application/problem+json`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::default::account;
use super::openai::scope_list;
use super::{rfc3339, to_json, Denial, ErrorFormat};
use crate::account::Holder;
use crate::key::KeyId;
use crate::record::Scopes;

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
/// use keygate_core::reject::{ErrorFormat, ProblemFormat};
/// use keygate_core::Denial;
///
/// let format = ProblemFormat::new().type_base("https://api.example.com/problems/");
/// let body = format.body(
///     &Denial::RateLimited { retry_after: 3, holder: keygate_core::account::Holder::Key },
///     chrono::Utc::now(),
/// );
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
            Denial::QuotaExceeded { resets_at, holder } => {
                #[derive(Serialize)]
                struct E {
                    resets_at: String,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    limit: Option<Holder>,
                }
                let resets_at = rfc3339(*resets_at);
                let whose = whose(*holder);
                let detail = format!("{whose} monthly spend cap is exhausted until {resets_at}.");
                let limit = account(*holder);
                self.problem(denial, detail, E { resets_at, limit })
            }
            Denial::RateLimited { retry_after, holder } => {
                #[derive(Serialize)]
                struct E {
                    retry_after: u64,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    limit: Option<Holder>,
                }
                let retry_after = (*retry_after).max(1);
                let whom = if *holder == Holder::Account {
                    "this account"
                } else {
                    "this API key"
                };
                let detail = format!(
                    "Too many requests for {whom}; retry in {retry_after} {}.",
                    secs(retry_after)
                );
                let limit = account(*holder);
                self.problem(denial, detail, E { retry_after, limit })
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

/// The owner of a cap, as a sentence starts.
fn whose(holder: Holder) -> &'static str {
    match holder {
        Holder::Key => "The API key's",
        Holder::Account => "The account's",
    }
}

fn secs(n: u64) -> &'static str {
    if n == 1 {
        "second"
    } else {
        "seconds"
    }
}
