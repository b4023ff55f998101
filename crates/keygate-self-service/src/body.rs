//! Request bodies and queries of the self-service routes: parsed with limits, every
//! failure a 400 that says what is wrong.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keygate_core::key::Environment;
use keygate_core::record::parse_duration;
use keygate_core::store::Page;
use keygate_core::{Denial, NewKey, RateLimit, Scopes};
use serde::Deserialize;
use serde_json::Value;

use crate::rules::Manager;

/// Request bodies larger than this are refused before parsing.
const MAX_BODY: usize = 64 * 1024;
/// Largest `metadata` accepted, in bytes of JSON: it is cloned into every cached key.
const MAX_METADATA: usize = 4 * 1024;
/// Longest key name accepted, in characters.
pub(crate) const MAX_NAME: usize = 200;
/// Most scopes one key may carry.
const MAX_SCOPES: usize = 64;
/// Key ids longer than this are answered 404 without a store lookup.
pub(crate) const MAX_KEY_ID: usize = 128;
pub(crate) const API_KEY: &str = "API key";

/// The body of `POST /`. The owner is never read from it: it is the caller's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires_in: Option<String>,
    environment: Option<String>,
    rate_limits: Option<String>,
    spend_cap: Option<u64>,
    metadata: Option<Value>,
}

/// The body of `POST /{key_id}/rotate`; it may be absent.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    grace: Option<String>,
}

pub(crate) fn bad(message: impl ToString) -> Denial {
    Denial::BadRequest {
        message: message.to_string(),
    }
}

/// The key a `POST /` body asks for, owned by the caller's owner, before the rules
/// narrow it to the caller's reach.
pub(crate) fn new_key(caller: &Manager<'_>, now: DateTime<Utc>, body: &[u8]) -> Result<NewKey, Denial> {
    let body: CreateBody = parse_json(body)?.ok_or_else(|| bad("a JSON body is required"))?;
    let name = body.name.trim();
    if name.is_empty() {
        return Err(bad("`name` must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(bad(format!("`name` is longer than {MAX_NAME} characters")));
    }
    // PostgreSQL refuses NUL in text: refused here, it is a 400 on every store.
    if name.contains('\0') {
        return Err(bad("`name` must not contain a NUL character"));
    }
    let scopes = scopes(&body.scopes)?;
    let environment = match body.environment.as_deref() {
        Some(environment) => environment.parse::<Environment>().map_err(bad)?,
        None => caller.environment().unwrap_or_default(),
    };
    let expires_at = match body.expires_in.as_deref() {
        Some(expires_in) => {
            let lifetime = parse_duration(expires_in).map_err(bad)?;
            if lifetime.is_zero() {
                return Err(bad("`expires_in` must be longer than zero"));
            }
            let lifetime =
                chrono::Duration::from_std(lifetime).map_err(|_| bad("`expires_in` is too long"))?;
            let at = now.checked_add_signed(lifetime);
            Some(at.ok_or_else(|| bad("`expires_in` is too long"))?)
        }
        None => None,
    };
    let rate_limits = match body.rate_limits.as_deref() {
        Some(rates) => Some(RateLimit::parse_list(rates).map_err(bad)?),
        None => None,
    };
    let metadata = metadata(body.metadata)?;
    let new = NewKey {
        owner: Some(caller.owner().clone()),
        name: name.to_string(),
        scopes,
        environment,
        expires_at,
        rate_limits,
        spend_cap: body.spend_cap,
        metadata,
    };
    Ok(new)
}

/// A JSON object of at most [`MAX_METADATA`] bytes with no NUL in any key or string.
fn metadata(metadata: Option<Value>) -> Result<Option<Value>, Denial> {
    let metadata = match metadata {
        None | Some(Value::Null) => return Ok(None),
        Some(object @ Value::Object(_)) => object,
        Some(_) => return Err(bad("`metadata` must be a JSON object")),
    };
    let size = serde_json::to_vec(&metadata).map_or(usize::MAX, |json| json.len());
    if size > MAX_METADATA {
        return Err(bad(format!(
            "`metadata` is larger than {MAX_METADATA} bytes of JSON"
        )));
    }
    if holds_nul(&metadata) {
        return Err(bad("`metadata` must not contain a NUL character"));
    }
    Ok(Some(metadata))
}

/// Whether a key or string anywhere in `value` holds a NUL. The depth is bounded by
/// serde_json's recursion limit when the body was parsed.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `None` for an empty (or blank) body; 400 for one that is too large or not this JSON.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, Denial> {
    if body.len() > MAX_BODY {
        return Err(bad(format!("the request body is larger than {MAX_BODY} bytes")));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| bad(format!("invalid JSON body: {e}")))
}

pub(crate) fn scopes(names: &[String]) -> Result<Scopes, Denial> {
    if names.len() > MAX_SCOPES {
        return Err(bad(format!("a key may carry at most {MAX_SCOPES} scopes")));
    }
    for name in names {
        // One name per element: a comma would smuggle in a second scope.
        if name.contains(',') {
            return Err(bad(format!(
                "invalid scope `{}`: one scope per element",
                truncate(name)
            )));
        }
        name.parse::<Scopes>().map_err(bad)?;
    }
    Ok(Scopes::new(names.iter().map(String::as_str)))
}

pub(crate) fn rotate_grace(body: &[u8]) -> Result<Duration, Denial> {
    let body: RotateBody = parse_json(body)?.unwrap_or_default();
    match body.grace.as_deref() {
        Some(grace) => parse_duration(grace).map_err(bad),
        None => Ok(Duration::ZERO),
    }
}

/// Reads `offset` and `limit` from a raw query string.
pub(crate) fn page(query: &str) -> Result<Page, String> {
    let mut page = Page::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "offset" => {
                page.offset = value
                    .parse()
                    .map_err(|_| format!("`offset` must be a whole number, not `{}`", truncate(value)))?;
            }
            "limit" => {
                let limit: u32 = value
                    .parse()
                    .map_err(|_| format!("`limit` must be a whole number, not `{}`", truncate(value)))?;
                page = Page::new(page.offset, limit);
            }
            _ => {}
        }
    }
    Ok(page)
}

/// User input echoed in an error message, capped.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_read_from_the_query_and_clamped() {
        assert_eq!(page("").unwrap(), Page::default());
        assert_eq!(page("offset=5&limit=2&x=y").unwrap(), Page::new(5, 2));
        assert_eq!(page("limit=5000").unwrap().limit, Page::MAX_LIMIT);
        assert!(page("limit=ten").unwrap_err().contains("`limit`"));
        assert!(page("offset=-1").is_err());
    }

    #[test]
    fn scope_lists_take_one_valid_name_per_element() {
        let ok = scopes(&["write".into(), "read".into()]).unwrap();
        assert_eq!(ok, Scopes::new(["read", "write"]));
        assert!(scopes(&["read,admin".into()]).is_err());
        assert!(scopes(&["re ad".into()]).is_err());
        assert!(scopes(&["".into()]).is_err());
    }

    #[test]
    fn metadata_is_a_small_object_without_nul() {
        assert_eq!(metadata(None).unwrap(), None);
        assert_eq!(metadata(Some(Value::Null)).unwrap(), None);
        let fits = serde_json::json!({ "blob": "x".repeat(MAX_METADATA - 12) });
        assert!(metadata(Some(fits)).is_ok());
        let big = serde_json::json!({ "blob": "x".repeat(MAX_METADATA) });
        assert!(
            matches!(metadata(Some(big)), Err(Denial::BadRequest { message }) if message.contains("4096"))
        );
        for nul in [
            serde_json::json!({ "a": "\0" }),
            serde_json::json!({ "\0": 1 }),
            serde_json::json!({ "a": [{ "b": ["c\0"] }] }),
        ] {
            assert!(metadata(Some(nul)).is_err());
        }
        assert!(metadata(Some(serde_json::json!([1]))).is_err());
    }

    #[test]
    fn an_absent_rotate_body_means_no_grace() {
        assert_eq!(rotate_grace(b"").unwrap(), Duration::ZERO);
        assert_eq!(
            rotate_grace(br#"{"grace":"24h"}"#).unwrap(),
            Duration::from_secs(86_400)
        );
        assert!(matches!(
            rotate_grace(br#"{"grace":"soon"}"#),
            Err(Denial::BadRequest { .. })
        ));
        assert!(matches!(
            rotate_grace(br#"{"grce":"1h"}"#),
            Err(Denial::BadRequest { .. })
        ));
    }
}
