//! [`DefaultFormat`]: the documented error table, byte for byte.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{rfc3339, to_json, Denial, ErrorFormat};
use crate::account::Holder;
use crate::key::KeyId;
use crate::record::Scopes;

/// The documented format, byte for byte: the error table of `docs/ARCHITECTURE.md` and the README.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultFormat;

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    success: bool,
    error: Body<'a, D>,
}

#[derive(Serialize)]
struct Body<'a, D: Serialize> {
    code: &'a str,
    message: &'a str,
    details: D,
}

#[derive(Serialize)]
struct RateLimited {
    error: &'static str,
    status_code: u16,
    retry_after: u64,
    timestamp: String,
    /// `"account"` when the owner's window refused; absent for the key's own (the
    /// documented bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<Holder>,
}

/// The holder named in a body: only an account, so a key's own refusal keeps its
/// documented bytes.
pub(crate) fn account(holder: Holder) -> Option<Holder> {
    (holder == Holder::Account).then_some(Holder::Account)
}

impl ErrorFormat for DefaultFormat {
    fn body(&self, denial: &Denial, now: DateTime<Utc>) -> String {
        fn envelope<D: Serialize>(denial: &Denial, details: D) -> String {
            to_json(&Envelope {
                success: false,
                error: Body {
                    code: denial.code(),
                    message: denial.message(),
                    details,
                },
            })
        }
        #[derive(Serialize)]
        struct Empty {}
        match denial {
            Denial::MissingKey { header } => envelope_one(denial, "header", Some(header)),
            Denial::InvalidKey { key_id } => {
                envelope_one(denial, "key_id", key_id.as_ref().map(KeyId::as_str))
            }
            Denial::ExpiredKey { expired_at } => {
                #[derive(Serialize)]
                struct D {
                    expired_at: String,
                }
                envelope(
                    denial,
                    D {
                        expired_at: rfc3339(*expired_at),
                    },
                )
            }
            Denial::InsufficientScope { required } => {
                #[derive(Serialize)]
                struct D<'a> {
                    required: &'a Scopes,
                }
                envelope(denial, D { required })
            }
            Denial::QuotaExceeded { resets_at, holder } => {
                #[derive(Serialize)]
                struct D {
                    resets_at: String,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    limit: Option<Holder>,
                }
                envelope(
                    denial,
                    D {
                        resets_at: rfc3339(*resets_at),
                        limit: account(*holder),
                    },
                )
            }
            Denial::RateLimited { retry_after, holder } => to_json(&RateLimited {
                error: "Rate limit exceeded",
                status_code: 429,
                retry_after: *retry_after,
                timestamp: now.to_rfc3339_opts(SecondsFormat::Millis, true),
                limit: account(*holder),
            }),
            Denial::Unavailable { .. } => envelope(denial, Empty {}),
            Denial::BadRequest { .. } | Denial::NotFound { .. } => to_json(&Envelope {
                success: false,
                error: Body {
                    code: denial.code(),
                    message: &denial.detail(),
                    details: Empty {},
                },
            }),
        }
    }
}

/// The default envelope with one detail, a string or null, written directly: the
/// bodies of a missing, malformed or wrong key, which a flood of bad keys gets, so no
/// serialiser runs for them. Byte for byte what serde_json writes (tested).
fn envelope_one(denial: &Denial, name: &str, value: Option<&str>) -> String {
    let mut out = String::with_capacity(160);
    out.push_str(r#"{"success":false,"error":{"code":"#);
    push_json_str(&mut out, denial.code());
    out.push_str(r#","message":"#);
    push_json_str(&mut out, denial.message());
    out.push_str(r#","details":{"#);
    push_json_str(&mut out, name);
    out.push(':');
    match value {
        Some(value) => push_json_str(&mut out, value),
        None => out.push_str("null"),
    }
    out.push_str("}}}");
    out
}

/// `text` as a JSON string: as is when nothing in it needs escaping (the usual case),
/// else escaped by serde_json.
fn push_json_str(out: &mut String, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&to_json(&text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Renderer;
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
    use http::StatusCode;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn bodies_written_directly_are_what_serde_json_writes() {
        #[derive(Serialize)]
        struct D<'a> {
            key_id: Option<&'a str>,
        }
        let denial = Denial::InvalidKey { key_id: None };
        let mut texts: Vec<String> = (0u8..0x80).map(|b| format!("a{}b", b as char)).collect();
        texts.extend(["", "kg_live_a1b2c3d4", "é\u{2028}🔑", "\"\\/"].map(String::from));
        for text in &texts {
            let serialised = to_json(&Envelope {
                success: false,
                error: Body {
                    code: denial.code(),
                    message: denial.message(),
                    details: D { key_id: Some(text) },
                },
            });
            assert_eq!(
                envelope_one(&denial, "key_id", Some(text)),
                serialised,
                "{text:?}"
            );
        }
    }

    #[test]
    fn default_bodies_match_the_documented_table_byte_for_byte() {
        let now = at("2025-08-30T09:19:31.245Z");
        let cases = [
            (
                Denial::MissingKey {
                    header: "Authorization",
                },
                r#"{"success":false,"error":{"code":"MISSING_API_KEY","message":"API key is required","details":{"header":"Authorization"}}}"#,
            ),
            (
                Denial::InvalidKey {
                    key_id: Some("kova_a1b2c3d4".into()),
                },
                r#"{"success":false,"error":{"code":"INVALID_API_KEY","message":"The provided API key is invalid","details":{"key_id":"kova_a1b2c3d4"}}}"#,
            ),
            (
                Denial::InvalidKey { key_id: None },
                r#"{"success":false,"error":{"code":"INVALID_API_KEY","message":"The provided API key is invalid","details":{"key_id":null}}}"#,
            ),
            (
                Denial::ExpiredKey {
                    expired_at: at("2024-01-01T00:00:00Z"),
                },
                r#"{"success":false,"error":{"code":"EXPIRED_API_KEY","message":"The API key has expired","details":{"expired_at":"2024-01-01T00:00:00Z"}}}"#,
            ),
            (
                Denial::RateLimited {
                    retry_after: 60,
                    holder: Holder::Key,
                },
                r#"{"error":"Rate limit exceeded","status_code":429,"retry_after":60,"timestamp":"2025-08-30T09:19:31.245Z"}"#,
            ),
        ];
        for (denial, expected) in cases {
            assert_eq!(DefaultFormat.body(&denial, now), expected);
        }
        let forbidden = DefaultFormat.body(
            &Denial::InsufficientScope {
                required: Scopes::new(["write"]),
            },
            now,
        );
        assert!(forbidden
            .starts_with(r#"{"success":false,"error":{"code":"INSUFFICIENT_PERMISSIONS","message":""#));
        assert!(forbidden.ends_with(r#"","details":{"required":["write"]}}}"#));
        let quota = DefaultFormat.body(
            &Denial::QuotaExceeded {
                resets_at: at("2026-12-01T00:00:00Z"),
                holder: Holder::Key,
            },
            now,
        );
        assert!(quota.ends_with(r#"","details":{"resets_at":"2026-12-01T00:00:00Z"}}}"#));
        let unavailable = DefaultFormat.body(&Denial::Unavailable { retry_after: 1 }, now);
        assert!(unavailable.ends_with(r#"","details":{}}}"#));
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let r = Renderer::default();
        let now = Utc::now();
        let header = |d: Denial| {
            r.render(d, now, None)
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            header(Denial::MissingKey {
                header: "Authorization"
            })
            .unwrap(),
            r#"Bearer realm="api""#
        );
        assert_eq!(
            header(Denial::InvalidKey { key_id: None }).unwrap(),
            r#"Bearer realm="api", error="invalid_token""#
        );
        assert_eq!(
            header(Denial::InsufficientScope {
                required: Scopes::new(["read", "write"])
            })
            .unwrap(),
            r#"Bearer realm="api", error="insufficient_scope", scope="read write""#
        );
        assert_eq!(
            header(Denial::RateLimited {
                retry_after: 3,
                holder: Holder::Key,
            }),
            None
        );
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let rejection = Renderer::default().render(Denial::Unavailable { retry_after: 0 }, Utc::now(), None);
        assert_eq!(rejection.headers()[RETRY_AFTER], "1");
        assert_eq!(rejection.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
