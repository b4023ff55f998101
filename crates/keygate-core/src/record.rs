//! What a store keeps about a key: [`KeyRecord`] and the types it is made of.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Month;
use crate::hash::SecretHash;
pub use crate::invalid::InvalidValue;
use crate::key::{Environment, KeyId};

/// The account a key belongs to. A caller of the self-service API sees only the keys
/// of its own owner.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OwnerId(Arc<str>);

impl OwnerId {
    /// Wraps an owner (account) id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The owner id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for OwnerId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// A set of scopes (`read`, `write`, `admin`, or any string), kept sorted and unique.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Scopes(Arc<[String]>);

impl Scopes {
    /// The scope that grants every other, unless the gate is configured otherwise.
    pub const ADMIN: &'static str = "admin";

    /// Builds a set from any list of scope names; empty names are dropped.
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = scopes
            .into_iter()
            .map(Into::into)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        Self(v.into())
    }

    /// Whether the set holds `scope` itself.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    /// Whether this set grants every scope of `required`, allocating nothing. With
    /// `admin_grants_all`, `admin` grants everything.
    pub fn covers(&self, required: &Scopes, admin_grants_all: bool) -> bool {
        (admin_grants_all && self.contains(Self::ADMIN)) || required.iter().all(|s| self.contains(s))
    }

    /// The scopes of `required` that this set does not grant (none when it
    /// [`covers`](Self::covers) them).
    pub fn missing(&self, required: &Scopes, admin_grants_all: bool) -> Scopes {
        if admin_grants_all && self.contains(Self::ADMIN) {
            return Scopes::default();
        }
        Scopes(
            required
                .iter()
                .filter(|s| !self.contains(s))
                .map(str::to_string)
                .collect(),
        )
    }

    /// Iterates over the scope names.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(Scopes::new)
    }
}

/// Parses `read,write`: comma separated names of letters, digits and `_ - : . /`.
impl FromStr for Scopes {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = |c: char| c.is_ascii_alphanumeric() || "_-:./".contains(c);
        let names: Vec<&str> = s.split(',').map(str::trim).collect();
        if names.iter().any(|n| n.is_empty() || !n.chars().all(valid)) {
            return Err(InvalidValue::new(
                "scopes",
                s,
                "expected names like `read,write` (letters, digits, _ - : . /)",
            ));
        }
        Ok(Scopes::new(names))
    }
}

impl<S: Into<String>> FromIterator<S> for Scopes {
    fn from_iter<T: IntoIterator<Item = S>>(iter: T) -> Self {
        Scopes::new(iter)
    }
}

/// One rate-limit window: at most `limit` requests per `period` (`100/min`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per period.
    pub limit: u32,
    /// The window length.
    #[serde(with = "duration_secs")]
    pub period: Duration,
}

impl RateLimit {
    /// `limit` requests per `period`.
    pub const fn new(limit: u32, period: Duration) -> Self {
        Self { limit, period }
    }

    /// `limit` requests per second.
    pub const fn per_second(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` requests per minute.
    pub const fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` requests per hour.
    pub const fn per_hour(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(3600))
    }

    /// `limit` requests per day.
    pub const fn per_day(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(86_400))
    }

    /// Parses a list such as `100/min,1000/h`.
    pub fn parse_list(s: &str) -> Result<Vec<RateLimit>, InvalidValue> {
        s.split(',').map(|part| part.trim().parse()).collect()
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.period.as_secs() {
            1 => write!(f, "{}/s", self.limit),
            60 => write!(f, "{}/min", self.limit),
            3600 => write!(f, "{}/h", self.limit),
            86_400 => write!(f, "{}/day", self.limit),
            secs => write!(f, "{}/{}s", self.limit, secs),
        }
    }
}

/// Parses `100/min`, `1000/h`, `10/s`, `5000/day` or `100/30s`.
impl FromStr for RateLimit {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new("rate", s, "expected `<count>/<s|min|h|day>`, e.g. `100/min`");
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => parse_duration(other).map_err(|_| bad())?,
        };
        if limit == 0 || period.is_zero() {
            return Err(bad());
        }
        Ok(RateLimit { limit, period })
    }
}

/// Parses a duration such as `90d`, `24h`, `30m`, `45s` or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, InvalidValue> {
    let bad = || {
        InvalidValue::new(
            "duration",
            s,
            "expected a number and a unit: `90d`, `24h`, `30m`, `45s`",
        )
    };
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" | "min" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        "w" => n.checked_mul(7 * 86_400),
        _ => return Err(bad()),
    };
    // Beyond 1000 years is a typo, and chrono could not add it to a date.
    secs.filter(|&s| s <= 1000 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// Usage written behind by the gate: how often and how recently a key was used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Requests admitted with this key.
    pub request_count: u64,
    /// When the key was last admitted.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The `User-Agent` of that request.
    pub last_user_agent: Option<String>,
}

/// A batch entry of usage to add to a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDelta {
    /// The key used.
    pub key_id: KeyId,
    /// Requests to add to its count.
    pub requests: u64,
    /// The latest use in the batch; when `requests` is 0 (only refusals or charges),
    /// the latest of those, which must not move the key's last use.
    pub last_used_at: DateTime<Utc>,
    /// The user agent of that latest use.
    pub last_user_agent: Option<String>,
    /// Requests of this verified key refused after its secret was proven, by code.
    pub refused: Refused,
    /// Micro-cents charged.
    pub spend: u64,
}

/// Requests of a verified key refused, by code: what the daily usage keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// 401 `EXPIRED_API_KEY`.
    pub expired: u64,
    /// 403 `INSUFFICIENT_PERMISSIONS`.
    pub scope: u64,
    /// 402 `INSUFFICIENT_QUOTA`.
    pub quota: u64,
    /// 429 `RATE_LIMIT_EXCEEDED`.
    pub rate: u64,
}

impl Refused {
    /// Both counts added, saturating.
    pub fn plus(self, other: Refused) -> Refused {
        Refused {
            expired: self.expired.saturating_add(other.expired),
            scope: self.scope.saturating_add(other.scope),
            quota: self.quota.saturating_add(other.quota),
            rate: self.rate.saturating_add(other.rate),
        }
    }

    /// Every refusal.
    pub fn total(&self) -> u64 {
        self.expired
            .saturating_add(self.scope)
            .saturating_add(self.quota)
            .saturating_add(self.rate)
    }
}

/// Spend to add to a key's total for one month: what a meter writes behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendDelta {
    /// The key charged.
    pub key_id: KeyId,
    /// The UTC month the spend belongs to.
    pub month: Month,
    /// Micro-cents to add.
    pub micro_cents: u64,
}

/// Everything a store keeps about one key. Holds the hash of the secret, never the
/// secret itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public part of the key; unique.
    pub key_id: KeyId,
    /// The account the key belongs to.
    pub owner: OwnerId,
    /// A human name ("CI Pipeline").
    pub name: String,
    /// What the key may do.
    pub scopes: Scopes,
    /// Live or test.
    pub environment: Environment,
    /// The hash of the secret (an argon2id PHC string by default).
    #[serde(skip_serializing)]
    pub secret_hash: SecretHash,
    /// When the key was created.
    pub created_at: DateTime<Utc>,
    /// When the key stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Free-form JSON the application attaches to the key.
    pub metadata: serde_json::Value,
    /// Per-key rate limits; `None` uses the gate's defaults.
    pub rate_limits: Option<Vec<RateLimit>>,
    /// Monthly spend cap in micro-cents; `None` is uncapped.
    pub spend_cap: Option<u64>,
    /// Usage written behind by the gate.
    #[serde(flatten)]
    pub usage: Usage,
}

/// The state of a key at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        })
    }
}

impl KeyRecord {
    /// Revoked wins over expired; expiry is inclusive of its instant.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// What to create: everything of a [`KeyRecord`] that the caller chooses.
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    /// The owning account.
    pub owner: Option<OwnerId>,
    /// A human name.
    pub name: String,
    /// Granted scopes.
    pub scopes: Scopes,
    /// Live or test.
    pub environment: Environment,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Per-key rate limits.
    pub rate_limits: Option<Vec<RateLimit>>,
    /// Monthly spend cap in micro-cents.
    pub spend_cap: Option<u64>,
    /// Free-form JSON.
    pub metadata: Option<serde_json::Value>,
}

impl NewKey {
    /// A key for `owner` named `name`, with no scopes.
    pub fn new(owner: impl Into<OwnerId>, name: impl Into<String>) -> Self {
        Self {
            owner: Some(owner.into()),
            name: name.into(),
            ..Self::default()
        }
    }

    /// Sets the scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Scopes::new(scopes);
        self
    }

    /// Sets the environment.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets per-key rate limits.
    pub fn rate_limits(mut self, limits: impl Into<Vec<RateLimit>>) -> Self {
        self.rate_limits = Some(limits.into());
        self
    }

    /// Sets a monthly spend cap in micro-cents.
    pub fn spend_cap(mut self, micro_cents: u64) -> Self {
        self.spend_cap = Some(micro_cents);
        self
    }

    /// Sets the metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_the_cli_syntax() {
        assert_eq!(
            RateLimit::parse_list("100/min, 1000/h").unwrap(),
            vec![RateLimit::per_minute(100), RateLimit::per_hour(1000)]
        );
        assert_eq!(
            "5/30s".parse::<RateLimit>().unwrap(),
            RateLimit::new(5, Duration::from_secs(30))
        );
        for bad in ["", "100", "0/min", "x/min", "10/fortnight", "-1/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "d", "10", "10y", "99999999999999999999d", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_grants_every_scope_unless_turned_off() {
        let admin = Scopes::new(["admin"]);
        let write = Scopes::new(["write"]);
        assert!(admin.missing(&write, true).is_empty());
        assert_eq!(admin.missing(&write, false), write);
        assert_eq!(
            Scopes::new(["read"]).missing(&Scopes::new(["read", "write"]), true),
            write
        );
        assert!(admin.covers(&write, true));
        assert!(!admin.covers(&write, false));
        assert!(!Scopes::new(["read"]).covers(&Scopes::new(["read", "write"]), true));
        assert!(Scopes::new(["read", "write"]).covers(&Scopes::new(["write"]), false));
        assert!(Scopes::new(["read"]).covers(&Scopes::default(), false));
    }

    #[test]
    fn scope_lists_are_validated() {
        assert_eq!(
            "write, read".parse::<Scopes>().unwrap(),
            Scopes::new(["read", "write"])
        );
        for bad in ["", "read,,write", "re ad", "read;drop"] {
            assert!(bad.parse::<Scopes>().is_err(), "{bad}");
        }
    }
}
