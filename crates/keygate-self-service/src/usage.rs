//! `GET /usage?days=30`: the caller's owner's keys, each with its requests per UTC day,
//! this month's spend against its cap, its last use and user agent, and the flags of
//! unusual activity ([`UsageWatch`]): a day far above the key's median, and wrong
//! secrets presented for its id.

use chrono::NaiveDate;
use http::StatusCode;
use keygate_core::account::spend_subject;
use keygate_core::key::KeyId;
use keygate_core::record::{KeyRecord, Refused};
use keygate_core::spend::Month;
use keygate_core::store::Page;
use keygate_core::usage::{day_of, Spike, UsageWatch};
use keygate_core::verify::WrongSecrets;
use keygate_core::Denial;
use serde::Serialize;

use crate::body::bad;
use crate::{ApiResponse, Caller, SelfService};

/// Days a usage request may ask for: 1 to the stores' retention.
const MAX_DAYS: u32 = keygate_core::usage::RETENTION_DAYS;

#[derive(Serialize)]
struct UsageView {
    days: u32,
    from: NaiveDate,
    to: NaiveDate,
    month: String,
    account: AccountSpend,
    keys: Vec<KeyUsage>,
    /// Every flag raised, key by key: what a page shows first.
    flags: Vec<Flag>,
}

#[derive(Serialize)]
struct AccountSpend {
    spent: u64,
    spend_cap: Option<u64>,
}

#[derive(Serialize)]
struct KeyUsage {
    key_id: KeyId,
    name: String,
    status: keygate_core::record::KeyStatus,
    /// One entry per day, oldest first, 0 for a day without use.
    daily: Vec<Day>,
    total: u64,
    today: Spike,
    spent: u64,
    spend_cap: Option<u64>,
    last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    last_user_agent: Option<String>,
    wrong_secrets: Option<WrongSecrets>,
}

#[derive(Serialize, Default, Clone, Copy)]
struct Day {
    day: NaiveDate,
    requests: u64,
    /// Micro-cents charged that day.
    spend: u64,
    /// Requests refused that day after the key's secret was proven, by code.
    refused: Refused,
}

#[derive(Serialize)]
struct Flag {
    key_id: KeyId,
    /// `spike` or `wrong_secrets`.
    kind: &'static str,
    /// For a spike, requests today; for wrong secrets, how many.
    count: u64,
    /// For a spike, the median day; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    median: Option<u64>,
    /// For wrong secrets, the first and latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `days` from the raw query (`days=30`, 1 to 90, 30 when absent).
fn days(query: Option<&str>) -> Result<u32, Denial> {
    let mut days = 30;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        if let Some(value) = pair.strip_prefix("days=") {
            days = value
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=MAX_DAYS).contains(d))
                .ok_or_else(|| bad(format!("days must be a whole number from 1 to {MAX_DAYS}")))?;
        }
    }
    Ok(days)
}

impl SelfService {
    /// Sets what counts as unusual activity on the usage route.
    pub fn usage_watch(mut self, watch: UsageWatch) -> Self {
        self.watch = watch;
        self
    }

    /// `GET /usage?days=30`: for each of the caller's owner's keys, requests per UTC day
    /// over `days` (1 to 90), this month's spend and cap, the last use and user agent,
    /// and the flags of unusual activity; the account's spend. Accounts and keys holding
    /// the manage scope; 400 for a bad `days`.
    pub async fn usage(&self, caller: &Caller, query: Option<&str>) -> ApiResponse {
        let owner = match self.admit(caller) {
            Ok(manager) => manager.owner().clone(),
            Err(response) => return response,
        };
        let days = match days(query) {
            Ok(days) => days,
            Err(denial) => return self.deny(denial),
        };
        let keys = self.gate.keys();
        let now = self.gate.now();
        let today = day_of(now);
        let span = days.max(self.watch.baseline_days + 1);
        let since = today - chrono::Days::new(u64::from(span - 1));
        let mut records: Vec<KeyRecord> = Vec::new();
        loop {
            match keys
                .list(Some(&owner), Page::new(records.len() as u64, Page::MAX_LIMIT))
                .await
            {
                Ok(page) => {
                    let done = page.len() < Page::MAX_LIMIT as usize;
                    records.extend(page);
                    if done {
                        break;
                    }
                }
                Err(error) => return self.failed(error),
            }
        }
        let daily = match self.gate.keys().daily_usage(&owner, since).await {
            Ok(daily) => daily,
            Err(error) => return self.failed(error),
        };
        let month = Month::of(now);
        let mut view = UsageView {
            days,
            from: today - chrono::Days::new(u64::from(days - 1)),
            to: today,
            month: month.to_string(),
            account: AccountSpend {
                spent: self.gate.spent(&spend_subject(&owner), month).await.unwrap_or(0),
                spend_cap: keys
                    .owner_limits(&owner)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|l| l.spend_cap),
            },
            keys: Vec::with_capacity(records.len()),
            flags: Vec::new(),
        };
        for record in records {
            // Every day of the span, oldest first, 0 where nothing was recorded.
            let days_of_key: Vec<Day> = (0..span)
                .map(|back| {
                    let day = today - chrono::Days::new(u64::from(span - 1 - back));
                    daily
                        .iter()
                        .find(|d| d.key_id == record.key_id && d.day == day)
                        .map_or(
                            Day {
                                day,
                                ..Day::default()
                            },
                            |d| Day {
                                day,
                                requests: d.requests,
                                spend: d.spend,
                                refused: d.refused,
                            },
                        )
                })
                .collect();
            let per_day: Vec<u64> = days_of_key.iter().map(|d| d.requests).collect();
            let (baseline, today_n) = per_day.split_at(per_day.len() - 1);
            let baseline = &baseline[baseline.len().saturating_sub(self.watch.baseline_days as usize)..];
            let spike = self.watch.spike(today_n[0], baseline);
            let shown = &days_of_key[days_of_key.len() - days as usize..];
            let wrong = self.gate.wrong_secrets(&record.key_id);
            if spike.unusual {
                view.flags.push(Flag {
                    key_id: record.key_id.clone(),
                    kind: "spike",
                    count: spike.today,
                    median: Some(spike.median),
                    first_at: None,
                    last_at: None,
                });
            }
            if let Some(w) = wrong.filter(|w| w.count >= self.watch.wrong_secrets) {
                view.flags.push(Flag {
                    key_id: record.key_id.clone(),
                    kind: "wrong_secrets",
                    count: w.count,
                    median: None,
                    first_at: Some(w.first_at),
                    last_at: Some(w.last_at),
                });
            }
            view.keys.push(KeyUsage {
                status: keys.status(&record),
                daily: shown.to_vec(),
                total: shown.iter().map(|d| d.requests).sum(),
                today: spike,
                spent: self.gate.spent(&record.key_id, month).await.unwrap_or(0),
                spend_cap: record.spend_cap,
                last_used_at: record.usage.last_used_at,
                last_user_agent: record.usage.last_user_agent.clone(),
                wrong_secrets: wrong,
                name: record.name,
                key_id: record.key_id,
            });
        }
        for flag in &view.flags {
            metrics::counter!("keygate_unusual_activity_flags_total", "kind" => flag.kind).increment(1);
        }
        self.json(StatusCode::OK, &view)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, StatusCode};
    use keygate_core::clock::ManualClock;
    use keygate_core::hash::Argon2Hasher;
    use keygate_core::key::KeyFormat;
    use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};
    use serde_json::Value;

    use crate::{Account, Caller, SelfService};

    fn bearer(key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
        headers
    }

    async fn requests(gate: &Gate, key: &str, n: u64) {
        for _ in 0..n {
            assert!(gate.admit(&bearer(key), &RoutePolicy::new()).await.is_ok());
        }
    }

    /// A key with a random secret under `key_id`'s id: a wrong secret for it.
    fn forge(key_id: &str) -> String {
        let format = KeyFormat::default();
        let (_, other) = format.generate(keygate_core::key::Environment::Live);
        let secret = format.parse(other.expose_secret()).unwrap().secret().to_string();
        format
            .compose(key_id, &secret)
            .unwrap()
            .expose_secret()
            .to_string()
    }

    #[tokio::test]
    async fn a_day_far_above_a_keys_median_and_wrong_secrets_for_an_id_are_flagged() {
        let clock = ManualClock::new("2026-11-01T12:00:00Z".parse().unwrap());
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .clock(clock.clone())
            .build();
        let api = SelfService::new(gate.clone());
        let make = |name: &'static str| {
            let gate = gate.clone();
            async move { gate.keys().create(NewKey::new("acct_1", name)).await.unwrap() }
        };
        let (busy, steady, guessed) = (make("busy").await, make("steady").await, make("guessed").await);
        let (busy_key, steady_key) = (busy.key.expose_secret(), steady.key.expose_secret());
        // 30 ordinary days of about 100 requests each, for both keys.
        for day in 0..30u64 {
            requests(&gate, busy_key, 90 + day % 21).await;
            requests(&gate, steady_key, 90 + day % 21).await;
            gate.flush_usage().await;
            clock.advance(Duration::from_secs(86_400));
        }
        // Today: 2 000 for one, 150 for the other; 25 wrong secrets at the third's id.
        requests(&gate, busy_key, 2000).await;
        requests(&gate, steady_key, 150).await;
        gate.flush_usage().await;
        for _ in 0..25 {
            let forged = forge(guessed.record.key_id.as_str());
            assert!(gate.admit(&bearer(&forged), &RoutePolicy::new()).await.is_err());
        }

        let account = Caller::from(Account::new("acct_1"));
        let answer = api.usage(&account, Some("days=30")).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(answer.body()).unwrap();
        let key = |id: &str| {
            body["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["key_id"] == id)
                .unwrap()
                .clone()
        };
        let busy_view = key(busy.record.key_id.as_str());
        assert_eq!(busy_view["today"]["today"], 2000);
        let median = busy_view["today"]["median"].as_u64().unwrap();
        assert!((90..=110).contains(&median), "about 100 a day: {median}");
        assert_eq!(busy_view["today"]["unusual"], true);
        assert_eq!(busy_view["daily"].as_array().unwrap().len(), 30);
        assert_eq!(key(steady.record.key_id.as_str())["today"]["unusual"], false);
        let flags = body["flags"].as_array().unwrap();
        let kinds: Vec<(String, String)> = flags
            .iter()
            .map(|f| {
                (
                    f["key_id"].as_str().unwrap().to_string(),
                    f["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(
            kinds.contains(&(busy.record.key_id.to_string(), "spike".into())),
            "{kinds:?}"
        );
        assert!(
            !kinds.iter().any(|(id, _)| id == steady.record.key_id.as_str()),
            "{kinds:?}"
        );
        let wrong = flags.iter().find(|f| f["kind"] == "wrong_secrets").unwrap();
        assert_eq!(wrong["key_id"], guessed.record.key_id.as_str());
        assert_eq!(wrong["count"], 25);
        assert!(wrong["first_at"].is_string() && wrong["last_at"].is_string());
        assert_eq!(flags.len(), 2, "{flags:?}");
    }

    #[tokio::test]
    async fn days_must_be_between_one_and_the_retention() {
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .build();
        let api = SelfService::new(gate);
        let account = Caller::from(Account::new("acct_1"));
        for bad in ["days=0", "days=91", "days=x", "days=-1"] {
            assert_eq!(
                api.usage(&account, Some(bad)).await.status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        let ok = api.usage(&account, Some("days=7")).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(ok.body()).unwrap();
        assert_eq!(body["days"], 7);
        assert_eq!(body["keys"], serde_json::json!([]));
    }
}
