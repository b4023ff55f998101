//! What the commands print: a human form, or JSON with the record's own field names
//! (`KeyRecord`'s serialisation, which leaves out the secret hash) plus `status`.

use chrono::{DateTime, Utc};
use keygate_core::key::ApiKey;
use keygate_core::manage::{CreatedKey, Rotated};
use keygate_core::record::{KeyRecord, KeyStatus};
use serde_json::Value;

use crate::Failure;

const SHOWN_ONCE: &str = "Store this key now: it is shown once and cannot be recovered.";

/// `keys create`.
pub(crate) fn created(created: &CreatedKey, status: KeyStatus, json: bool) -> Result<(), Failure> {
    let record = &created.record;
    if json {
        return print_json(&with_key(record_json(record, status)?, &created.key));
    }
    println!(
        "Created {} {:?} for {}",
        record.key_id,
        clean(&record.name),
        record.owner
    );
    println!("  scopes:  {}", scopes(record));
    println!("  expires: {}", time_or(record.expires_at, "never"));
    println!();
    println!("{}", created.key.expose_secret());
    println!();
    println!("{SHOWN_ONCE}");
    Ok(())
}

/// `keys list`.
pub(crate) fn list(records: &[KeyRecord], now: DateTime<Utc>, json: bool) -> Result<(), Failure> {
    if json {
        let values = records
            .iter()
            .map(|r| record_json(r, r.status(now)))
            .collect::<Result<Vec<_>, _>>()?;
        return print_json(&Value::Array(values));
    }
    if records.is_empty() {
        println!("No keys.");
        return Ok(());
    }
    let header = [
        "KEY ID",
        "NAME",
        "OWNER",
        "SCOPES",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ];
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|r| {
            [
                r.key_id.to_string(),
                clean(&r.name),
                clean(r.owner.as_str()),
                scopes(r),
                short_time(r.created_at),
                r.usage.last_used_at.map_or_else(|| "never".into(), short_time),
                r.expires_at.map_or_else(|| "never".into(), short_time),
                r.status(now).to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    print_row(&header.map(str::to_string), &widths);
    for row in &rows {
        print_row(row, &widths);
    }
    Ok(())
}

/// `keys show`.
pub(crate) fn show(record: &KeyRecord, status: KeyStatus, json: bool) -> Result<(), Failure> {
    if json {
        return print_json(&record_json(record, status)?);
    }
    let rates = record.rate_limits.as_ref().map_or_else(
        || "default".to_string(),
        |limits| {
            limits
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    let last_used = match (&record.usage.last_used_at, &record.usage.last_user_agent) {
        (Some(at), Some(agent)) => format!("{} ({})", time(*at), clean(agent)),
        (Some(at), None) => time(*at),
        (None, _) => "never".into(),
    };
    let fields = [
        ("key id", record.key_id.to_string()),
        ("name", clean(&record.name)),
        ("owner", clean(record.owner.as_str())),
        ("environment", record.environment.to_string()),
        ("scopes", scopes(record)),
        ("status", status.to_string()),
        ("created", time(record.created_at)),
        ("expires", time_or(record.expires_at, "never")),
        ("revoked", time_or(record.revoked_at, "no")),
        ("last used", last_used),
        ("requests", record.usage.request_count.to_string()),
        ("rate limits", rates),
        (
            "spend cap",
            record
                .spend_cap
                .map_or_else(|| "none".into(), |cap| format!("{cap} micro-cents per month")),
        ),
        ("metadata", metadata(&record.metadata)),
    ];
    for (label, value) in fields {
        println!("{:<12} {value}", format!("{label}:"));
    }
    Ok(())
}

/// `keys revoke`.
pub(crate) fn revoked(record: &KeyRecord, status: KeyStatus, json: bool) -> Result<(), Failure> {
    if json {
        return print_json(&record_json(record, status)?);
    }
    println!(
        "Revoked {} (since {})",
        record.key_id,
        time_or(record.revoked_at, "now")
    );
    Ok(())
}

/// `keys rotate`.
pub(crate) fn rotated(rotated: &Rotated, now: DateTime<Utc>, json: bool) -> Result<(), Failure> {
    let new = &rotated.new.record;
    let old = &rotated.old;
    if json {
        let value = serde_json::json!({
            "new": with_key(record_json(new, new.status(now))?, &rotated.new.key),
            "old": record_json(old, old.status(now))?,
        });
        return print_json(&value);
    }
    println!("Rotated {} -> {}", old.key_id, new.key_id);
    println!("  old key works until: {}", time_or(old.expires_at, "now"));
    println!("  new key expires:     {}", time_or(new.expires_at, "never"));
    println!();
    println!("{}", rotated.new.key.expose_secret());
    println!();
    println!("{SHOWN_ONCE}");
    Ok(())
}

fn record_json(record: &KeyRecord, status: KeyStatus) -> Result<Value, Failure> {
    let mut value =
        serde_json::to_value(record).map_err(|e| Failure(format!("cannot render the key record: {e}")))?;
    if let Value::Object(fields) = &mut value {
        fields.insert("status".into(), Value::String(status.to_string()));
    }
    Ok(value)
}

/// Adds the plaintext key: only for the one-time output of `create` and `rotate`.
fn with_key(mut value: Value, key: &ApiKey) -> Value {
    if let Value::Object(fields) = &mut value {
        fields.insert("key".into(), Value::String(key.expose_secret().to_owned()));
    }
    value
}

pub(crate) fn print_json(value: &Value) -> Result<(), Failure> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Failure(format!("cannot render JSON: {e}")))?;
    // Pretty JSON's own line breaks are not controls inside strings; only those are escaped.
    let lines: Vec<String> = text.lines().map(escape_controls).collect();
    println!("{}", lines.join("\n"));
    Ok(())
}

fn print_row(cells: &[String; 8], widths: &[usize; 8]) {
    let line: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect();
    println!("{}", line.join("  ").trim_end());
}

fn scopes(record: &KeyRecord) -> String {
    if record.scopes.is_empty() {
        "-".into()
    } else {
        record.scopes.to_string()
    }
}

/// Metadata as one line of JSON, for a terminal. serde_json escapes the C0 controls
/// (ESC among them) in strings but writes DEL and the C1 controls (U+0080 to U+009F,
/// where U+009B is a CSI on many terminals) as they are; those are escaped here too, so
/// metadata set through the API cannot drive the terminal of whoever runs `keys show`.
fn metadata(value: &Value) -> String {
    escape_controls(&value.to_string())
}

/// `json` with every control character left in it written as a `\uXXXX` escape: valid
/// JSON still, since a JSON text holds them only inside strings.
fn escape_controls(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Names and agents are user text: no control characters may break a line or a table.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn time_or(at: Option<DateTime<Utc>>, none: &str) -> String {
    at.map_or_else(|| none.to_string(), time)
}

fn short_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_reaches_the_terminal_with_no_control_character() {
        let value = serde_json::json!({
            "esc": "\u{1b}[31mred",
            "csi": "\u{9b}31m",
            "del": "a\u{7f}b",
            "line": "one\ntwo",
            "\u{9b}key": "fine",
        });
        let shown = metadata(&value);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        // Still JSON, and still the same value.
        assert_eq!(serde_json::from_str::<Value>(&shown).unwrap(), value);
    }
}
